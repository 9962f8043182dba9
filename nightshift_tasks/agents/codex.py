"""OpenAI Codex CLI (`codex exec --json`): the prompt on stdin, JSONL events back; its usage
read from its own session files under providers.codex.data_path.

Usage: `sessions/YYYY/MM/DD/*.jsonl` `token_count` events; per session last - first of
`total_token_usage`, billable = (input - cached) + output (the Responses API's output already
holds the reasoning tokens, which are shown apart); the newest
`rate_limits`, which the budget prefers to its own arithmetic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

from nightshift_tasks.agents import base
from nightshift_tasks.agents.base import Invocation, Login, Reply, Usage, count
from nightshift_tasks.agents.readings import Reading, jsonl_files, scan_all
from nightshift_tasks.db import Conn

BINARY: str | None = "codex"
TESTED: str | None = "0.171."
USAGE_FILE = False
SANDBOX = re.compile(r"sandbox.*(fail|error|not supported|unavailable|denied)|landlock|seccomp|"
                     r"bwrap", re.IGNORECASE)
FAILURE_HINTS: tuple[base.Hint, ...] = ((SANDBOX, (
    "codex could not start its sandbox on this machine; if the machine is isolated otherwise, set "
    "providers.codex.dangerously_bypass_approvals_and_sandbox: true")),)
# Environment variables codex takes an API key from, in its own order of precedence.
KEY_ENV = ("CODEX_API_KEY", "OPENAI_API_KEY")
FIELDS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens")


def program(settings: Mapping[str, Any]) -> str:
    return base.binary(settings, "codex")


def build_argv(settings: Mapping[str, Any], prompt: str, usage_file: str | None = None,
               prompt_file: str = "") -> list[str]:
    """The sandbox stays on unless the config opts out of it; `-` reads the prompt on stdin."""
    model = settings.get("model")
    bypass = settings["dangerously_bypass_approvals_and_sandbox"]
    flags = ["--dangerously-bypass-approvals-and-sandbox"] if bypass else ["--sandbox", "workspace-write"]
    return [program(settings), "exec", "--json", *(["-m", model] if model else []), *flags,
            *(settings.get("extra_args") or []), "-"]


def invocation(settings: Mapping[str, Any], prompt: str,
               usage_file: str | None = None) -> AbstractContextManager[Invocation]:
    return nullcontext(Invocation(build_argv(settings, prompt), prompt.encode()))


def extra_env(usage_file: str | None) -> dict[str, str]:
    return {}


def parse_reply(stdout: str, report: str | None) -> Reply:
    """`codex exec --json`: the last agent_message, usage summed over turn.completed events."""
    texts: list[str] = []
    error = None
    fields = dict.fromkeys(("input_tokens", "cached_input_tokens", "cache_write_input_tokens",
                            "output_tokens", "reasoning_output_tokens"), 0)
    for event in base.json_lines(stdout):
        item = event.get("item") or {}
        if event.get("type") == "item.completed" and item.get("type") == "agent_message":
            texts.append(str(item.get("text", "")))
        elif event.get("type") == "turn.completed":
            for key in fields:
                fields[key] += count(event.get("usage") or {}, key)
        elif event.get("type") in ("turn.failed", "error"):
            error = str((event.get("error") or {}).get("message") or event.get("message")
                        or "turn failed")
    usage = Usage(input_tokens=fields["input_tokens"], output_tokens=fields["output_tokens"],
                  cache_read_tokens=fields["cached_input_tokens"],
                  cache_write_tokens=fields["cache_write_input_tokens"],
                  reasoning_tokens=fields["reasoning_output_tokens"],
                  tokens=max(0, fields["input_tokens"] - fields["cached_input_tokens"])
                  + fields["output_tokens"])
    return Reply(texts[-1] if texts else "", usage, error)


def login_state(settings: Mapping[str, Any], env: Mapping[str, str]) -> Login | None:
    """`codex login status`, offline, else an API key in the environment."""
    done = base.status([program(settings), "login", "status"], {})
    if done and done.returncode == 0:
        return "OK", "logged in (`codex login status`)"
    named = next((name for name in KEY_ENV if env.get(name)), None)
    if named:
        return "OK", f"API key in ${named}"
    return "WARN", ("not logged in (`codex login status`): run `codex login`, or set "
                    "CODEX_API_KEY")


def _lines(lines: list[bytes], summary: dict[str, Any]) -> None:
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
            values = {k: int(total.get(k) or 0) for k in FIELDS}
            summary["first"] = summary.get("first") or values
            summary["last"] = values
            summary["events"] = summary.get("events", 0) + 1
        limits = payload.get("rate_limits")
        if isinstance(limits, dict) and (limits.get("primary") or limits.get("secondary")):
            summary["rate_limits"] = limits
    summary["bad"] += bad


def billable(summary: dict[str, Any]) -> int:
    """One session's billable tokens: last - first (the last alone if anything went down)."""
    first, last = summary.get("first"), summary.get("last")
    if not first or not last:
        return 0
    delta = {k: last[k] - first[k] for k in FIELDS}
    if summary["events"] == 1 or min(delta.values()) < 0:  # one event, or counters went down
        delta = last
    return int(max(0, delta["input_tokens"] - delta["cached_input_tokens"]) + delta["output_tokens"])


def read_history(conn: Conn, data_path: Path) -> Reading:
    reading = Reading(source="sessions/*.jsonl")
    files = scan_all(conn, jsonl_files(data_path / "sessions"), _lines, lambda: {"bad": 0}, reading)
    newest = 0.0
    for path, summary in files:
        parts = path.relative_to(data_path / "sessions").parts
        day = "-".join(parts[:3]) if len(parts) >= 4 else None
        if day:
            reading.by_day[day] = reading.by_day.get(day, 0) + billable(summary)
        mtime = path.stat().st_mtime
        if summary.get("rate_limits") and mtime >= newest:
            newest, reading.rate_limits = mtime, summary["rate_limits"]
    if not files:
        reading.source = "none"
    return reading


def read_usage(conn: Conn, settings: Mapping[str, Any], at: datetime) -> Reading:
    return read_history(conn, Path(settings["data_path"]))
