"""What a provider has used: the Reading the budget works from, the incremental scan shared
by the readers of providers' own history files, and our own ledger for providers that keep
none we can read.

Histories reach gigabytes of JSONL, so every file is scanned once and then only from the
offset where the last scan stopped: per file, the size, mtime, inode and offset are cached
in the state DB with the per-day totals found so far. Corrupt lines and unreadable files
are skipped and counted, never fatal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from nightshift_tasks import fleet, state
from nightshift_tasks.db import Conn


@dataclass
class Reading:
    """Usage of one provider: tokens per local day, where they were found, what was skipped."""

    by_day: dict[str, int] = field(default_factory=dict)
    source: str = "none"
    skipped_lines: int = 0
    skipped_files: int = 0
    rate_limits: dict[str, Any] = field(default_factory=dict)  # codex primary / secondary
    requests_this_month: int = 0  # copilot

    def since(self, first: date, last: date) -> int:
        return sum(n for d, n in self.by_day.items() if first.isoformat() <= d <= last.isoformat())


def local_day(timestamp: str) -> str | None:
    """ISO timestamp (UTC `Z` or with offset) -> the machine's local date."""
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        return moment.astimezone().date().isoformat() if moment.tzinfo else moment.date().isoformat()
    except (ValueError, OverflowError):
        return None


# ---- the per-file incremental scan ---------------------------------------------------------


Parse = Callable[[list[bytes], dict[str, Any]], None]


def _scan(conn: Conn, path: Path, parse: Parse,
          fresh: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Bring one file's cached summary up to date, parsing only bytes not seen before.

    `parse(lines, summary)` folds complete lines into the summary and counts bad ones in
    summary["bad"]; `fresh()` is an empty summary. The cache stops at the last newline; a
    final line without one is folded into a copy only (see `_with_tail`).
    """
    st = path.stat()
    row = conn.execute('SELECT size, mtime_ns, inode, "offset", summary FROM usage_files '
                       "WHERE path = ?", (str(path),)).fetchone()
    unchanged = row is not None and (row["size"], row["mtime_ns"], row["inode"]) == (
        st.st_size, st.st_mtime_ns, st.st_ino)
    grown = row is not None and row["inode"] == st.st_ino and st.st_size >= row["offset"]
    summary: dict[str, Any] = json.loads(row["summary"]) if grown else fresh()
    offset: int = row["offset"] if grown else 0
    data = b""
    if st.st_size > offset:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    end = data.rfind(b"\n") + 1
    if not unchanged:
        if end:
            parse(data[:end].split(b"\n"), summary)
        with state.write(conn):
            conn.execute('INSERT INTO usage_files (path, size, mtime_ns, inode, "offset", summary) '
                         "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET size = "
                         'excluded.size, mtime_ns = excluded.mtime_ns, inode = excluded.inode, '
                         '"offset" = excluded."offset", summary = excluded.summary',
                         (str(path), st.st_size, st.st_mtime_ns, st.st_ino, offset + end,
                          json.dumps(summary)))
    return _with_tail(summary, data[end:], parse)


def _with_tail(summary: dict[str, Any], tail: bytes, parse: Parse) -> dict[str, Any]:
    """The summary plus a final line that has no newline (yet), if that line parses.

    The tail is never cached: it is parsed again on top of the cached summary each time,
    so a line that is later extended or terminated is still counted exactly once. A tail
    that does not parse is a line still being written, not a bad line.
    """
    if not tail.strip():
        return summary
    with_tail: dict[str, Any] = json.loads(json.dumps(summary))
    parse([tail], with_tail)
    return with_tail if with_tail["bad"] == summary["bad"] else summary


def fold_days(lines: list[bytes], summary: dict[str, Any], kind: str, needles: tuple[bytes, ...],
              read: Callable[[dict[str, Any]], tuple[str | None, int]]) -> None:
    """Fold the JSONL lines of type `kind` (those holding all `needles`) into summary["days"],
    tokens per local day of their `timestamp`. `read(event)` gives a line's message key and
    tokens, or raises on a bad line; consecutive lines with one key are one message, counted
    once."""
    days: dict[str, int] = summary["days"]
    bad = 0
    for line in lines:
        if not all(needle in line for needle in needles):
            continue
        try:
            event = json.loads(line)
            day = local_day(event["timestamp"])
            key, tokens = read(event)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
            bad += 1
            continue
        if day is None or event.get("type") != kind:
            bad += day is None
            continue
        if key and key == summary.get("last"):
            continue
        summary["last"] = key
        days[day] = days.get(day, 0) + tokens
    summary["bad"] += bad


def jsonl_files(root: Path) -> list[Path]:
    found = []
    for directory, _, files in os.walk(root):
        found += [Path(directory) / f for f in files if f.endswith(".jsonl")]
    return sorted(found)


def scan_all(conn: Conn, files: list[Path], parse: Parse,
             fresh: Callable[[], dict[str, Any]], reading: Reading) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in files:
        try:
            summary = _scan(conn, path, parse, fresh)
        except (OSError, ValueError):
            reading.skipped_files += 1
            continue
        reading.skipped_lines += summary["bad"]
        out.append((path, summary))
    return out


# ---- our own ledger -------------------------------------------------------------------------


def read_ledger(conn: Conn, provider: str, at: datetime) -> Reading:
    """Measured usage of our own calls, per local day; copilot also counts this month's
    premium requests (UTC month, as Copilot bills)."""
    reading = Reading(source="nightshift ledger")
    for row in conn.execute("SELECT substr(started_at, 1, 10) AS day, SUM(tokens) AS tokens "
                            "FROM calls WHERE provider = ? GROUP BY day", (provider,)):
        reading.by_day[row["day"]] = int(row["tokens"])
    for day, kept in _kept_reservations(conn, provider):
        reading.by_day[day] = reading.by_day.get(day, 0) + kept
    month = at.strftime("%Y-%m")
    reading.requests_this_month = int(conn.execute(
        "SELECT COALESCE(SUM(CASE WHEN requests > 1 THEN requests ELSE 1 END), 0) FROM calls "
        "WHERE provider = ? AND substr(started_at, 1, 7) = ?", (provider, month)).fetchone()[0])
    return reading


def _kept_reservations(conn: Conn, provider: str) -> list[tuple[str, int]]:
    """(day, tokens) a finished task's reservation holds beyond what was measured, when one
    of its calls' usage is unknown: such usage counts at the estimate, not as zero."""
    rows = conn.execute(
        "SELECT substr(r.created_at, 1, 10) AS day, r.estimate - SUM(c.tokens) AS kept, r.open, "
        "r.host, r.pid FROM reservations r JOIN calls c ON c.attempt_id = r.attempt_id AND c.provider = "
        "r.provider WHERE r.provider = ? GROUP BY r.attempt_id, r.provider HAVING MIN(c.usage_known) = 0",
        (provider,))
    holds = fleet.liveness(conn)
    return [(row["day"], int(row["kept"])) for row in rows
            if row["kept"] > 0 and not (row["open"] and holds(row["host"], row["pid"]))]
