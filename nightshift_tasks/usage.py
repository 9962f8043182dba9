"""How much each provider has used today and this week, read from the providers' own files.

Histories reach gigabytes of JSONL, so every file is scanned once and then only from the
offset where the last scan stopped: per file, the size, mtime, inode and offset are cached
in the state DB with the per-day totals found so far. Corrupt lines and unreadable files
are skipped and counted, never fatal.

- claude: per day, `stats-cache.json` `dailyModelTokens` where it has that day, else
  `projects/**/*.jsonl` assistant lines with `message.usage` (input + cache creation + output).
- codex: `sessions/YYYY/MM/DD/*.jsonl` `token_count` events; per session last - first of
  `total_token_usage`, billable = (input - cached) + output + reasoning; the newest
  `rate_limits`.
- copilot and command: our own ledger (copilot: premium requests this month); a finished
  task whose usage is partly unknown (a command that did not report it) counts at least its
  reservation.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from nightshift_tasks import state
from nightshift_tasks.process import alive

CODEX_FIELDS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens")


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


def _scan(conn: sqlite3.Connection, path: Path, parse: Parse,
          fresh: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Bring one file's cached summary up to date, parsing only bytes not seen before.

    `parse(lines, summary)` folds complete lines into the summary and counts bad ones in
    summary["bad"]; `fresh()` is an empty summary. The cache stops at the last newline; a
    final line without one is folded into a copy only (see `_with_tail`).
    """
    st = path.stat()
    row = conn.execute("SELECT size, mtime_ns, inode, offset, summary FROM usage_files WHERE path = ?",
                       (str(path),)).fetchone()
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
            conn.execute("INSERT OR REPLACE INTO usage_files (path, size, mtime_ns, inode, offset, "
                         "summary) VALUES (?, ?, ?, ?, ?, ?)", (str(path), st.st_size, st.st_mtime_ns,
                                                                 st.st_ino, offset + end,
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


def _jsonl_files(root: Path) -> list[Path]:
    found = []
    for directory, _, files in os.walk(root):
        found += [Path(directory) / f for f in files if f.endswith(".jsonl")]
    return sorted(found)


def _scan_all(conn: sqlite3.Connection, files: list[Path], parse: Parse,
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


# ---- claude ---------------------------------------------------------------------------------


def _claude_lines(lines: list[bytes], summary: dict[str, Any]) -> None:
    """Claude Code writes one line per content block, each repeating its message's usage:
    count a message once (its lines are consecutive, so the last id seen is enough)."""
    days: dict[str, int] = summary["days"]
    bad = 0
    for line in lines:
        if b'"assistant"' not in line or b'"usage"' not in line:
            continue
        try:
            event = json.loads(line)
            message = event["message"]
            usage = message["usage"]
            day = local_day(event["timestamp"])
            tokens = (int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
                      + int(usage.get("cache_creation_input_tokens", 0)))
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
            bad += 1
            continue
        if day is None or event.get("type") != "assistant":
            bad += day is None
            continue
        key = f"{message.get('id')}:{event.get('requestId')}"
        if message.get("id") and key == summary.get("last"):
            continue
        summary["last"] = key
        days[day] = days.get(day, 0) + tokens
    summary["bad"] += bad


def read_claude(conn: sqlite3.Connection, data_path: Path) -> Reading:
    """Per day, `stats-cache.json` where it has that day, else the projects' JSONL.

    Claude Code rewrites the stats cache only now and then, so it often lacks today (and
    the days since it was last computed); those days come from the session logs.
    """
    reading = Reading()
    cached: dict[str, int] = {}
    try:
        doc = json.loads((data_path / "stats-cache.json").read_text(encoding="utf-8"))
        for entry in doc.get("dailyModelTokens", []):
            tokens = sum(int(v) for v in (entry.get("tokensByModel") or {}).values())
            cached[str(entry["date"])] = cached.get(str(entry["date"]), 0) + tokens
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        reading.skipped_files += 1
    files = _scan_all(conn, _jsonl_files(data_path / "projects"), _claude_lines,
                      lambda: {"days": {}, "bad": 0}, reading)
    logged: dict[str, int] = {}
    for _, summary in files:
        for day, tokens in summary["days"].items():
            logged[day] = logged.get(day, 0) + tokens
    reading.by_day = {**{d: n for d, n in logged.items() if d not in cached}, **cached}
    sources = ["stats-cache.json"] if cached else []
    sources += ["projects/*.jsonl"] if set(logged) - set(cached) else []
    reading.source = " + ".join(sources) or ("projects/*.jsonl" if files else "none")
    return reading


# ---- codex ----------------------------------------------------------------------------------


def _codex_lines(lines: list[bytes], summary: dict[str, Any]) -> None:
    bad = 0
    for line in lines:
        if b'"token_count"' not in line and b'"rate_limits"' not in line:
            continue
        try:
            payload = json.loads(line)["payload"]
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        if not isinstance(payload, dict) or payload.get("type") != "token_count":
            continue
        total = (payload.get("info") or {}).get("total_token_usage")
        if isinstance(total, dict):
            values = {k: int(total.get(k) or 0) for k in CODEX_FIELDS}
            summary["first"] = summary.get("first") or values
            summary["last"] = values
            summary["events"] = summary.get("events", 0) + 1
        limits = payload.get("rate_limits")
        if isinstance(limits, dict) and (limits.get("primary") or limits.get("secondary")):
            summary["rate_limits"] = limits
    summary["bad"] += bad


def codex_billable(summary: dict[str, Any]) -> int:
    """One session's billable tokens: last - first (the last alone if anything went down)."""
    first, last = summary.get("first"), summary.get("last")
    if not first or not last:
        return 0
    delta = {k: last[k] - first[k] for k in CODEX_FIELDS}
    if summary["events"] == 1 or min(delta.values()) < 0:  # one event, or counters went down
        delta = last
    return int(max(0, delta["input_tokens"] - delta["cached_input_tokens"]) + delta["output_tokens"]
               + delta["reasoning_output_tokens"])


def read_codex(conn: sqlite3.Connection, data_path: Path) -> Reading:
    reading = Reading(source="sessions/*.jsonl")
    files = _scan_all(conn, _jsonl_files(data_path / "sessions"), _codex_lines,
                      lambda: {"bad": 0}, reading)
    newest = 0.0
    for path, summary in files:
        parts = path.relative_to(data_path / "sessions").parts
        day = "-".join(parts[:3]) if len(parts) >= 4 else None
        if day:
            reading.by_day[day] = reading.by_day.get(day, 0) + codex_billable(summary)
        mtime = path.stat().st_mtime
        if summary.get("rate_limits") and mtime >= newest:
            newest, reading.rate_limits = mtime, summary["rate_limits"]
    if not files:
        reading.source = "none"
    return reading


# ---- our own ledger -------------------------------------------------------------------------


def read_ledger(conn: sqlite3.Connection, provider: str, at: datetime) -> Reading:
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
        "SELECT COALESCE(SUM(MAX(requests, 1)), 0) FROM calls WHERE provider = ? AND "
        "substr(started_at, 1, 7) = ?", (provider, month)).fetchone()[0])
    return reading


def _kept_reservations(conn: sqlite3.Connection, provider: str) -> list[tuple[str, int]]:
    """(day, tokens) a finished task's reservation holds beyond what was measured, when one
    of its calls' usage is unknown: such usage counts at the estimate, not as zero."""
    rows = conn.execute(
        "SELECT substr(r.created_at, 1, 10) AS day, r.estimate - SUM(c.tokens) AS kept, r.open, "
        "r.pid FROM reservations r JOIN calls c ON c.attempt_id = r.attempt_id AND c.provider = "
        "r.provider WHERE r.provider = ? GROUP BY r.attempt_id HAVING MIN(c.usage_known) = 0",
        (provider,))
    return [(row["day"], int(row["kept"])) for row in rows
            if row["kept"] > 0 and not (row["open"] and alive(row["pid"]))]


def read_usage(conn: sqlite3.Connection, provider: str, settings: dict[str, Any],
               at: datetime) -> Reading:
    if provider == "claude":
        return read_claude(conn, Path(settings["data_path"]))
    if provider == "codex":
        return read_codex(conn, Path(settings["data_path"]))
    return read_ledger(conn, provider, at)


def week_start(at: datetime, week_start_day: str) -> date:
    start = 0 if week_start_day == "monday" else 6
    return at.date() - timedelta(days=(at.weekday() - start) % 7)
