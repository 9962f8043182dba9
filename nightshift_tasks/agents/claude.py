"""Claude Code (`claude -p`): the prompt on stdin, one JSON result object back; its usage
read from its own files under providers.claude.data_path.

Usage, per day: `stats-cache.json` `dailyModelTokens` where it has that day, else
`projects/**/*.jsonl` assistant lines with `message.usage` (input + cache creation + output).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

from nightshift_tasks.agents import base
from nightshift_tasks.agents.base import Invocation, Login, Reply, Usage, count
from nightshift_tasks.agents.readings import Reading, fold_days, jsonl_files, scan_all
from nightshift_tasks.db import Conn

BINARY: str | None = "claude"
TESTED: str | None = "2.1."
USAGE_FILE = False
FAILURE_HINTS: tuple[base.Hint, ...] = ()
# Claude Code retries a 429 for minutes on its own; we retry (and fail over) ourselves.
ENV = {"CLAUDE_CODE_MAX_RETRIES": "1"}


def program(settings: Mapping[str, Any]) -> str:
    return base.binary(settings, "claude")


def build_argv(settings: Mapping[str, Any], prompt: str, usage_file: str | None = None,
               prompt_file: str = "") -> list[str]:
    """Permission-bypassing flags only when the config opts in."""
    model = settings.get("model")
    flags = ["--dangerously-skip-permissions"] if settings["dangerously_skip_permissions"] else []
    return [program(settings), "-p", "--output-format", "json", *(["--model", model] if model else []),
            *flags, *(settings.get("extra_args") or [])]


def invocation(settings: Mapping[str, Any], prompt: str,
               usage_file: str | None = None) -> AbstractContextManager[Invocation]:
    """The prompt goes on stdin, so its size is not bound by the limit on one argument."""
    return nullcontext(Invocation(build_argv(settings, prompt), prompt.encode()))


def extra_env(usage_file: str | None) -> dict[str, str]:
    return dict(ENV)


def parse_reply(stdout: str, report: str | None) -> Reply:
    """`claude -p --output-format json`: one result object."""
    doc = base.json_object(stdout)
    if doc is None:
        return Reply(stdout, Usage())
    u = doc.get("usage") or {}
    usage = Usage(input_tokens=count(u, "input_tokens"), output_tokens=count(u, "output_tokens"),
                  cache_read_tokens=count(u, "cache_read_input_tokens"),
                  cache_write_tokens=count(u, "cache_creation_input_tokens"),
                  tokens=count(u, "input_tokens") + count(u, "cache_creation_input_tokens")
                  + count(u, "output_tokens"),
                  cost_usd=float(doc.get("total_cost_usd") or 0.0))
    text = str(doc.get("result", ""))
    if doc.get("is_error"):
        status = doc.get("api_error_status")
        return Reply(text, usage, text or "agent reported an error",
                     status if isinstance(status, int) else None)
    return Reply(text, usage)


def login_state(settings: Mapping[str, Any], env: Mapping[str, str]) -> Login | None:
    """`claude auth status`, offline."""
    done = base.status([program(settings), "auth", "status"], ENV)
    try:
        doc = json.loads(done.stdout) if done else None
    except json.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        return "WARN", "could not tell whether claude is logged in (`claude auth status` gave no answer)"
    if doc.get("loggedIn"):
        source = doc.get("apiKeySource") or doc.get("authMethod") or "stored login"
        return "OK", f"logged in ({source})"
    return "WARN", ("not logged in (`claude auth status`): run `claude` and /login, or set "
                    "ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN (`claude setup-token`)")


def _message(event: dict[str, Any]) -> tuple[str | None, int]:
    """Claude Code writes one line per content block, each repeating its message's usage:
    the message and its request are the key, so a message counts once."""
    message = event["message"]
    usage = message["usage"]
    tokens = (int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))
              + int(usage.get("cache_creation_input_tokens", 0)))
    return (f"{message['id']}:{event.get('requestId')}" if message.get("id") else None), tokens


def _lines(lines: list[bytes], summary: dict[str, Any]) -> None:
    fold_days(lines, summary, "assistant", (b'"assistant"', b'"usage"'), _message)


def read_history(conn: Conn, data_path: Path) -> Reading:
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
    files = scan_all(conn, jsonl_files(data_path / "projects"), _lines,
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


def read_usage(conn: Conn, settings: Mapping[str, Any], at: datetime) -> Reading:
    return read_history(conn, Path(settings["data_path"]))
