"""opencode (`opencode run --format json`): the prompt on stdin, JSON event lines back; the
model and its provider come from the user's own opencode config (or providers.opencode.model).

The prompt goes on stdin because opencode quotes a message argument that has spaces and
escapes its double quotes. `--title` is always given: without one, opencode first asks the
model for a session title, a request whose tokens it reports nowhere.

Usage per call: the `step_finish` lines' `part.tokens`. opencode counts input without cache
reads and output without reasoning; both are added back, so the ledger has the counts as the
API served them (as for codex). Billable = uncached input + cache writes + output, reasoning
included. Per day: the same step-finish parts in its SQLite database under
providers.opencode.data_path, opened read-only and read from where the last read stopped.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Mapping
from contextlib import AbstractContextManager, closing, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nightshift_tasks import state
from nightshift_tasks.agents import base
from nightshift_tasks.agents.base import Invocation, Login, Reply, Usage, count
from nightshift_tasks.agents.readings import Reading
from nightshift_tasks.db import Conn

BINARY: str | None = "opencode"
TESTED: str | None = "1.18."
USAGE_FILE = False
UNKNOWN = re.compile(r"Unexpected server error", re.IGNORECASE)
FAILURE_HINTS: tuple[base.Hint, ...] = ((UNKNOWN, (
    "opencode's log (~/.local/share/opencode/log/) has the cause; a model whose provider has no "
    "credentials fails this way: see `doctor`")),)
TITLE = "nightshift"
# `doctor` asks opencode itself, without its fetch of the model catalogue.
STATUS_ENV = {"OPENCODE_DISABLE_MODELS_FETCH": "true"}
# A part row this recent may still be written: it is counted, but read again next time.
SETTLE_MS = 60_000
WAL_HEADER_OFFSET, WAL_VERSION = 18, 2  # a database in WAL mode has 2 at byte 18


def program(settings: Mapping[str, Any]) -> str:
    return base.binary(settings, "opencode")


def build_argv(settings: Mapping[str, Any], prompt: str, usage_file: str | None = None,
               prompt_file: str = "") -> list[str]:
    """--auto (approve what opencode's config does not deny) only when the config opts in."""
    model = settings.get("model")
    flags = ["--auto"] if settings["dangerously_skip_permissions"] else []
    return [program(settings), "run", "--format", "json", "--title", TITLE,
            *(["-m", model] if model else []), *flags, *(settings.get("extra_args") or [])]


def invocation(settings: Mapping[str, Any], prompt: str,
               usage_file: str | None = None) -> AbstractContextManager[Invocation]:
    """The prompt on stdin: a file, so opencode sees its end at once."""
    return nullcontext(Invocation(build_argv(settings, prompt), prompt.encode()))


def extra_env(usage_file: str | None) -> dict[str, str]:
    return {}


def _flat(tokens: Any) -> dict[str, int]:
    """opencode's `tokens` with its `cache` counts beside the others (read, write); zeros for
    anything not shaped so."""
    tokens = tokens if isinstance(tokens, dict) else {}
    cache = tokens.get("cache")
    merged = {**tokens, **(cache if isinstance(cache, dict) else {})}
    return {key: count(merged, key) for key in ("input", "output", "reasoning", "read", "write")}


def _billable(flat: Mapping[str, int]) -> int:
    """Uncached input + cache writes + output + reasoning, in opencode's own counts."""
    return flat["input"] + flat["write"] + flat["output"] + flat["reasoning"]


def _failure(event: Mapping[str, Any]) -> tuple[str, int | None]:
    """An `error` line: its message, and the HTTP status that decides a retry. A 429 that
    opencode calls not retryable is no rate limit to wait out: its text decides."""
    error = event.get("error") or {}
    data = error.get("data") or {}
    message = f"{error.get('name') or 'error'}: {data.get('message') or 'opencode failed'}"
    code = data.get("statusCode")
    if not isinstance(code, int) or (code in (429, 529) and not data.get("isRetryable")):
        return message, None
    return f"{message} (HTTP {code})", code


def parse_reply(stdout: str, report: str | None) -> Reply:
    """`opencode run --format json`: the last text part, usage summed over step_finish lines."""
    texts: list[str] = []
    error: tuple[str, int | None] | None = None
    sums = dict.fromkeys(("input", "output", "reasoning", "read", "write"), 0)
    cost = 0.0
    for event in base.json_lines(stdout):
        part = event.get("part")
        part = part if isinstance(part, dict) else {}
        if event.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif event.get("type") == "step_finish":
            for key, value in _flat(part.get("tokens")).items():
                sums[key] += value
            cost += float(part.get("cost") or 0.0)
        elif event.get("type") == "error":
            error = _failure(event)
    usage = Usage(input_tokens=sums["input"] + sums["read"],
                  output_tokens=sums["output"] + sums["reasoning"], cache_read_tokens=sums["read"],
                  cache_write_tokens=sums["write"], reasoning_tokens=sums["reasoning"],
                  tokens=_billable(sums), cost_usd=cost)
    text = texts[-1] if texts else ""
    return Reply(text, usage, *error) if error else Reply(text, usage)


def _status_json(settings: Mapping[str, Any], *args: str) -> Any:
    done = base.status([program(settings), *args], STATUS_ENV)
    try:
        return json.loads(done.stdout) if done and done.returncode == 0 else None
    except json.JSONDecodeError:
        return None


def _credential(settings: Mapping[str, Any], env: Mapping[str, str], config: Mapping[str, Any],
                provider: str, model: str) -> str | None:
    """Where opencode finds credentials for `provider`, or None. Never the credential."""
    own = (config.get("provider") or {}).get(provider) or {}
    if (own.get("options") or {}).get("apiKey"):
        return "API key in opencode's config"
    named = next((name for name in own.get("env") or [] if env.get(name)), None)
    if named:
        return f"API key in ${named}"
    auth = Path(settings["data_path"]) / "auth.json"
    try:
        stored = json.loads(auth.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = {}
    if isinstance(stored, dict) and stored.get(provider):
        return f"login stored in {auth} (`opencode auth login`)"
    done = base.status([program(settings), "models", provider], STATUS_ENV)
    # opencode lists a catalogue provider's models only when it has credentials for it.
    listed = bool(done and done.returncode == 0 and model in done.stdout.split())
    return "credentials from the environment" if listed and not own else None


def login_state(settings: Mapping[str, Any], env: Mapping[str, str]) -> Login | None:
    """The model opencode will use (`opencode debug config`, offline), and whether it has
    credentials for that model's provider."""
    config = _status_json(settings, "debug", "config")
    if not isinstance(config, dict):
        return "WARN", "could not read opencode's config (`opencode debug config` gave no answer)"
    model = settings.get("model") or config.get("model")
    if not isinstance(model, str) or "/" not in model:
        return "WARN", ("no model chosen: set \"model\": \"provider/model\" in "
                        "~/.config/opencode/opencode.json or providers.opencode.model; opencode "
                        "would pick one itself")
    origin = "providers.opencode.model" if settings.get("model") else "opencode's config"
    provider = model.split("/", 1)[0]
    found = _credential(settings, env, config, provider, model)
    if found:
        return "OK", f"model {model} ({origin}); {found}"
    return "WARN", (f"model {model} ({origin}): opencode has no credentials for its provider "
                    f"`{provider}`: run `opencode auth login`, set its API key variable, or set "
                    f"provider.{provider}.options.apiKey in opencode's config")


def _open(db: Path, immutable: bool) -> sqlite3.Connection:
    """Read-only: `mode=ro` uses the -wal and -shm of a live database and creates none; with
    neither there, no connection has it open, and `immutable` reads it without making them."""
    flags = "mode=ro&immutable=1" if immutable else "mode=ro"
    conn = sqlite3.connect(f"file:{quote(str(db))}?{flags}", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def _is_wal(db: Path) -> bool:
    with db.open("rb") as fh:
        fh.seek(WAL_HEADER_OFFSET)
        return fh.read(1) == bytes([WAL_VERSION])


def _fold(rows: list[sqlite3.Row], summary: dict[str, Any]) -> None:
    days: dict[str, int] = summary["days"]
    for row in rows:
        try:
            part = json.loads(row["data"])
            if part["type"] != "step-finish":  # only mentions one
                continue
            tokens = _billable(_flat(part["tokens"]))
            day = datetime.fromtimestamp(row["time_created"] / 1000).date().isoformat()
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, OSError):
            summary["bad"] += 1
            continue
        days[day] = days.get(day, 0) + tokens


def _new_parts(db: Path, after: int) -> tuple[list[sqlite3.Row], int]:
    """The step-finish parts after rowid `after`, and the last rowid: from the live database,
    else (no -wal, so no writer) from the file as it is, read again should a writer appear."""
    query = ("SELECT rowid, time_created, time_updated, data FROM part WHERE rowid > ? AND "
             "instr(data, '\"type\":\"step-finish\"') ORDER BY rowid")
    live = [Path(f"{db}-wal"), Path(f"{db}-shm")]
    for _ in range(2):
        immutable = _is_wal(db) and not all(p.exists() for p in live)
        with closing(_open(db, immutable)) as conn:
            rows = conn.execute(query, (after,)).fetchall()
            last = int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM part").fetchone()[0])
        if not (immutable and live[0].exists()):
            break
    return rows, last


def read_history(conn: Conn, data_path: Path, at: datetime) -> Reading:
    """Per day, from opencode.db's step-finish parts. Those settled for SETTLE_MS are cached
    in our state DB with the rowid reached; newer ones are counted on a copy only."""
    db = data_path / "opencode.db"
    if not db.is_file():
        return Reading()
    reading = Reading(source="opencode.db")
    try:
        inode = os.stat(db).st_ino
        row = conn.execute("SELECT inode, offset, summary FROM usage_files WHERE path = ?",
                           (str(db),)).fetchone()
        cached = row is not None and row["inode"] == inode
        summary: dict[str, Any] = json.loads(row["summary"]) if cached else {"days": {}, "bad": 0}
        offset = int(row["offset"]) if cached else 0
        rows, last = _new_parts(db, offset)
        if last < offset:  # fewer rows than were read before: another database
            summary, offset = {"days": {}, "bad": 0}, 0
            rows, last = _new_parts(db, 0)
    except (OSError, ValueError, sqlite3.Error):
        reading.skipped_files += 1
        return reading
    settle = at.timestamp() * 1000 - SETTLE_MS
    recent = next((i for i, r in enumerate(rows) if r["time_updated"] > settle), len(rows))
    _fold(rows[:recent], summary)
    offset = rows[recent]["rowid"] - 1 if recent < len(rows) else last
    with state.write(conn):
        conn.execute("INSERT OR REPLACE INTO usage_files (path, size, mtime_ns, inode, offset, "
                     "summary) VALUES (?, 0, 0, ?, ?, ?)", (str(db), inode, offset,
                                                          json.dumps(summary)))
    _fold(rows[recent:], summary)
    reading.by_day, reading.skipped_lines = summary["days"], summary["bad"]
    return reading


def read_usage(conn: Conn, settings: Mapping[str, Any], at: datetime) -> Reading:
    return read_history(conn, Path(settings["data_path"]), at)
