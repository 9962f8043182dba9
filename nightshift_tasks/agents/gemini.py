"""Gemini CLI (`gemini -p`): the prompt on stdin, one JSON result object back; its usage
read from its own session files, under providers.gemini.data_path and under the home of
ours it runs in.

Why a home of ours ($GEMINI_CLI_HOME): the CLI retries a 429 ten times over about 3.5
minutes, and the only way to lower that is `general.maxAttempts` in a settings file. The
system settings paths are ignored unless root owns them, and the user's own settings.json
is never edited, so each call runs with GEMINI_CLI_HOME=<nightshift home>/gemini, whose
`.gemini/settings.json` is the user's settings plus maxAttempts 1. Every other entry of the
user's gemini directory (a stored Google login, .env, GEMINI.md, extensions) is linked in,
so the user's login and keys work as before; its sessions, projects.json and history are
ours. The workspace is trusted by --skip-trust for the call only.

Usage: `tmp/<project>/chats/session-*.jsonl` lines of type "gemini", per local day
(input - cached) + output + thoughts; the reply's `stats.models.*.tokens` for each call.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from nightshift_tasks.agents import base
from nightshift_tasks.agents.base import Invocation, Login, Reply, Usage, count
from nightshift_tasks.agents.readings import Reading, fold_days, jsonl_files, scan_all
from nightshift_tasks.db import Conn
from nightshift_tasks.paths import nightshift_home

BINARY: str | None = "gemini"
TESTED: str | None = "0.61."
USAGE_FILE = False
FAILURE_HINTS: tuple[base.Hint, ...] = ()
HOME_ENV = "GEMINI_CLI_HOME"
# Environment variables the CLI takes an API key from.
KEY_ENV = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
# Entries of the CLI's directory that are ours in our home, not links to the user's.
OWN = {"settings.json", "tmp", "history", "projects.json"}


def program(settings: Mapping[str, Any]) -> str:
    return base.binary(settings, "gemini")


def build_argv(settings: Mapping[str, Any], prompt: str, usage_file: str | None = None,
               prompt_file: str = "") -> list[str]:
    """The model is always passed, so the CLI sends no routing request; `-p ""` with the
    prompt on stdin runs it headless. Approving every tool only when the config opts in."""
    flags = ["--approval-mode", "yolo"] if settings["dangerously_skip_permissions"] else []
    return [program(settings), "-p", "", "--output-format", "json", "-m", settings["model"],
            "--skip-trust", *flags, *(settings.get("extra_args") or [])]


def cli_home() -> Path:
    """The GEMINI_CLI_HOME of every call; the CLI's files are in its `.gemini`."""
    return nightshift_home() / "gemini"


def _user_settings(data_path: Path) -> dict[str, Any]:
    """The user's settings.json (the CLI allows `//` comment lines), else nothing."""
    try:
        text = (data_path / "settings.json").read_text(encoding="utf-8")
        doc = json.loads("\n".join(line for line in text.splitlines()
                                   if not line.lstrip().startswith("//")))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def prepare_home(data_path: Path) -> Path:
    """Our home's `.gemini`: the user's settings with one attempt per call (written whole,
    then renamed, as calls may run at once), and links to the user's other entries."""
    own = cli_home() / ".gemini"
    own.mkdir(parents=True, exist_ok=True)
    doc = _user_settings(data_path)
    general = doc.get("general")
    doc["general"] = {**(general if isinstance(general, dict) else {}), "maxAttempts": 1}
    fd, tmp = tempfile.mkstemp(dir=own, prefix=".settings-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
    os.replace(tmp, own / "settings.json")
    with contextlib.suppress(OSError):
        for entry in os.scandir(data_path):
            if entry.name not in OWN and not os.path.lexists(own / entry.name):
                with contextlib.suppress(FileExistsError):  # another call linked it meanwhile
                    os.symlink(entry.path, own / entry.name)
    return own


@contextlib.contextmanager
def invocation(settings: Mapping[str, Any], prompt: str,
               usage_file: str | None = None) -> Iterator[Invocation]:
    """The prompt goes on stdin (the CLI reads up to 8 MiB there), after our home is ready."""
    prepare_home(Path(settings["data_path"]))
    yield Invocation(build_argv(settings, prompt), prompt.encode())


def extra_env(usage_file: str | None) -> dict[str, str]:
    return {HOME_ENV: str(cli_home())}


def parse_reply(stdout: str, report: str | None) -> Reply:
    """`gemini --output-format json`: one object, its usage summed over stats.models."""
    doc = base.json_object(stdout)
    if doc is None:
        return Reply(stdout, Usage())
    models = (doc.get("stats") or {}).get("models") or {}
    tokens = [m.get("tokens") or {} for m in models.values() if isinstance(m, dict)]
    fields = {key: sum(count(t, key) for t in tokens if isinstance(t, dict))
              for key in ("prompt", "input", "cached", "candidates", "thoughts")}
    usage = Usage(input_tokens=fields["prompt"], output_tokens=fields["candidates"],
                  cache_read_tokens=fields["cached"], reasoning_tokens=fields["thoughts"],
                  tokens=fields["input"] + fields["candidates"] + fields["thoughts"])
    return Reply(str(doc.get("response") or ""), usage)


def login_state(settings: Mapping[str, Any], env: Mapping[str, str]) -> Login | None:
    """An API key in the environment or in the CLI's .env, Vertex AI, or a stored Google
    login; all told offline, from names and files only."""
    named = next((name for name in KEY_ENV if env.get(name)), None)
    if named:
        return "OK", f"API key in ${named}"
    if env.get("GOOGLE_GENAI_USE_VERTEXAI") == "true":
        return "OK", "Vertex AI ($GOOGLE_GENAI_USE_VERTEXAI)"
    data_path = Path(settings["data_path"])
    try:
        dotenv = (data_path / ".env").read_text(encoding="utf-8")
    except OSError:
        dotenv = ""
    if any(line.strip().startswith(f"{name}=") for line in dotenv.splitlines() for name in KEY_ENV):
        return "OK", f"API key in {data_path / '.env'}"
    if (data_path / "oauth_creds.json").is_file():
        return "OK", f"Google login stored in {data_path / 'oauth_creds.json'}"
    return "WARN", ("no Gemini API key: set GEMINI_API_KEY (https://aistudio.google.com/apikey), "
                    "or log in with Google by running `gemini`")


def _reply(event: dict[str, Any]) -> tuple[str | None, int]:
    """A line of type "gemini" carries one reply's tokens, its input with the cached ones."""
    tokens = event["tokens"]
    return event.get("id"), (max(0, int(tokens.get("input", 0)) - int(tokens.get("cached", 0)))
                             + int(tokens.get("output", 0)) + int(tokens.get("thoughts", 0)))


def _lines(lines: list[bytes], summary: dict[str, Any]) -> None:
    fold_days(lines, summary, "gemini", (b'"gemini"', b'"tokens"'), _reply)


def read_history(conn: Conn, roots: list[Path]) -> Reading:
    """Per local day, from the session files under each of `roots` (gemini directories)."""
    reading = Reading(source="tmp/*/chats/*.jsonl")
    files = [f for root in roots for f in jsonl_files(root / "tmp")]
    for _, summary in scan_all(conn, files, _lines, lambda: {"days": {}, "bad": 0}, reading):
        for day, tokens in summary["days"].items():
            reading.by_day[day] = reading.by_day.get(day, 0) + tokens
    if not files:
        reading.source = "none"
    return reading


def read_usage(conn: Conn, settings: Mapping[str, Any], at: datetime) -> Reading:
    """The user's own sessions and those of our calls, which live in our home."""
    return read_history(conn, [Path(settings["data_path"]), cli_home() / ".gemini"])
