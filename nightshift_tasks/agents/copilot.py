"""GitHub Copilot CLI (`copilot -p`): the prompt as an argument (on stdin when it is too
long for one), JSONL events back, and its usage in the --usage-output-file report we name.

Its history is not readable, so its usage is our own ledger's: tokens per day and this
month's premium requests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from nightshift_tasks.agents import base
from nightshift_tasks.agents.base import Invocation, Login, Reply, Usage, count, fits_argv
from nightshift_tasks.agents.readings import Reading, read_ledger
from nightshift_tasks.db import Conn

BINARY: str | None = "copilot"
TESTED: str | None = "1.0."
USAGE_FILE = True
FAILURE_HINTS: tuple[base.Hint, ...] = ()
# Environment variables copilot takes a token from, in its own order of precedence.
TOKEN_ENV = ("COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN")


def program(settings: Mapping[str, Any]) -> str:
    return base.binary(settings, "copilot")


def build_argv(settings: Mapping[str, Any], prompt: str, usage_file: str | None = None,
               prompt_file: str = "") -> list[str]:
    """Permission-bypassing flags only when the config opts in."""
    model = settings.get("model")
    flags = ["--allow-all-tools", "--allow-all-urls"] if settings["dangerously_skip_permissions"] else []
    report = ["--usage-output-file", usage_file] if usage_file else []
    return [program(settings), *(["-p", prompt] if fits_argv(prompt) else []), "--no-ask-user",
            "--silent", "--output-format", "json", "--no-auto-update",
            *(["--model", model] if model else []), *report, *flags, *(settings.get("extra_args") or [])]


def invocation(settings: Mapping[str, Any], prompt: str,
               usage_file: str | None = None) -> AbstractContextManager[Invocation]:
    stdin = None if fits_argv(prompt) else prompt.encode()
    return nullcontext(Invocation(build_argv(settings, prompt, usage_file), stdin))


def extra_env(usage_file: str | None) -> dict[str, str]:
    return {}


def _sum_key(data: Any, key: str) -> int:
    """Sum every value of `key` anywhere in a nested JSON document."""
    if isinstance(data, dict):
        return sum(_sum_key(v, key) if k != key else count(data, key) for k, v in data.items())
    if isinstance(data, list):
        return sum(_sum_key(v, key) for v in data)
    return 0


def parse_reply(stdout: str, report: str | None) -> Reply:
    """`copilot --output-format json` (JSONL events) and its --usage-output-file report."""
    events = list(base.json_lines(stdout))
    texts = [str((e.get("data") or {}).get("content", "")) for e in events
             if e.get("type") == "assistant.message" and (e.get("data") or {}).get("content")]
    errors = [str((e.get("data") or {}).get("message", "")) for e in events
              if e.get("type") == "session.error"]
    usage = Usage()
    if report:
        try:
            doc = json.loads(report)
        except json.JSONDecodeError:
            doc = {}
        metrics = doc.get("modelMetrics", {}) if isinstance(doc, dict) else {}
        inp, out = _sum_key(metrics, "inputTokens"), _sum_key(metrics, "outputTokens")
        usage = Usage(input_tokens=inp, output_tokens=out, tokens=inp + out,
                      cache_read_tokens=_sum_key(metrics, "cacheReadTokens"),
                      cache_write_tokens=_sum_key(metrics, "cacheWriteTokens"),
                      requests=int(doc.get("totalPremiumRequestCost") or 0)
                      if isinstance(doc, dict) else 0)
    if not events:
        texts = [stdout]  # plain text output
    return Reply(texts[-1] if texts else "", usage, errors[-1] if errors else None)


def _json_with_comments(path: Path) -> Any:
    """Copilot's config.json starts with `//` comment lines."""
    text = path.read_text(encoding="utf-8")
    return json.loads("\n".join(line for line in text.splitlines()
                                if not line.lstrip().startswith("//")))


def _stored_login(env: Mapping[str, str]) -> str | None:
    """Where a stored copilot (or gh) login was found, if any."""
    home = Path(env.get("COPILOT_HOME") or Path(env.get("HOME") or Path.home()) / ".copilot")
    try:
        config = _json_with_comments(home / "config.json")
    except (OSError, ValueError):
        config = None
    if isinstance(config, dict) and any(config.get(key) for key in (
            "loggedInUsers", "lastLoggedInUser", "logged_in_users", "last_logged_in_user")):
        return str(home / "config.json")
    gh_dir = env.get("GH_CONFIG_DIR") or str(
        Path(env.get("XDG_CONFIG_HOME") or Path(env.get("HOME") or Path.home()) / ".config") / "gh")
    try:
        hosts = yaml.safe_load((Path(gh_dir) / "hosts.yml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        hosts = None
    if isinstance(hosts, dict) and any(isinstance(h, dict) and (h.get("user") or h.get("users"))
                                       for h in hosts.values()):
        return f"{Path(gh_dir) / 'hosts.yml'} (gh auth login)"
    return None


def login_state(settings: Mapping[str, Any], env: Mapping[str, str]) -> Login | None:
    """Copilot has no offline status command: the environment and the files it reads."""
    named = next((name for name in TOKEN_ENV if env.get(name)), None)
    if named:
        if env[named].startswith("ghp_"):
            return "WARN", (f"${named} holds a classic personal access token (ghp_), which copilot "
                            "does not accept; use a fine-grained token with Copilot Requests")
        return "OK", f"token in ${named}"
    if env.get("COPILOT_PROVIDER_BASE_URL"):
        return "OK", "custom model provider in $COPILOT_PROVIDER_BASE_URL"
    stored = _stored_login(env)
    if stored:
        return "OK", f"login stored in {stored}"
    return "WARN", ("not logged in: no COPILOT_GITHUB_TOKEN, GH_TOKEN or GITHUB_TOKEN, no login in "
                    "~/.copilot/config.json, no gh login; run `copilot login`")


def read_usage(conn: Conn, settings: Mapping[str, Any], at: datetime) -> Reading:
    return read_ledger(conn, "copilot", at)
