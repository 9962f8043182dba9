"""What every provider module shares: the interface it presents (Provider), the reply and
usage it returns, the environment of a call, and the failure patterns all CLIs share.

A provider module builds argv (and stdin) and reads output; spawning, timeouts and logs are
process.py's job.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from nightshift_tasks import usage_report
from nightshift_tasks.agents.readings import Reading
from nightshift_tasks.db import Conn
from nightshift_tasks.text import one_line

# Linux's MAX_ARG_STRLEN: the most bytes one argv element can hold, its final NUL included.
MAX_ARG_BYTES = 128 * 1024
# Where CLIs installed by npm, pipx, cargo or Homebrew live; cron's PATH lacks them.
EXTRA_PATH = ["~/.local/bin", "~/go/bin", "~/.cargo/bin", "~/.npm-global/bin", "/usr/local/bin",
              "/opt/homebrew/bin"]
STATUS_TIMEOUT_S = 30

TRANSIENT = re.compile(r"\b(429|529)\b|rate.?limit|too many requests|overloaded|temporarily "
                       r"unavailable|econnrefused|econnreset|etimedout|network error|fetch failed|"
                       r"stream disconnected|connection (refused|reset)", re.IGNORECASE)
QUOTA = re.compile(r"usage limit|quota|insufficient_quota|credit balance|billing|"
                   r"out of (credits|premium requests)", re.IGNORECASE)
RESET_IN = re.compile(r"(?:try again|retry|resets?)\s+in\s+(\d+)\s*(s|sec|seconds?|m|min|minutes?|h|"
                      r"hours?)\b", re.IGNORECASE)
AUTH = re.compile(r"no authentication information|not (logged in|authenticated)|authentication "
                  r"(failed|required)|could not be validated|bad credentials|invalid (api key|"
                  r"x-api-key|token)|unauthorized|please run /login|\b401\b", re.IGNORECASE)
# A CLI's own error line ("Error: ...", "fatal: ...", "TypeError: ..."); copilot prints it
# first and its advice after, so it is looked for in the whole output, not the last lines.
ERROR_LINE = re.compile(r"^\W*(error|fatal|panic)\b|^\w*(error|exception)\b\s*:", re.IGNORECASE)
OUTPUT_BOUND = 64 * 1024  # failures are classified from at most this much of each end
REASON_CHARS = 400


@dataclass(frozen=True)
class Usage:
    """Token counts as the CLI reported them, plus what counts against the budget."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    tokens: int = 0  # billable: each provider module says which counts it adds up
    cost_usd: float = 0.0
    requests: int = 0  # copilot premium requests


@dataclass(frozen=True)
class Reply:
    text: str
    usage: Usage
    error: str | None = None  # what the agent reported when it failed
    status: int | None = None  # the API's HTTP status for that error, when known
    usage_unknown: str | None = None  # why the usage is not known (a command's report)


@dataclass(frozen=True)
class Failure:
    kind: str  # transient | quota | auth | agent
    message: str
    reset_in: float | None = None  # seconds until a stated limit resets


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    stdin: bytes | None = None  # the prompt, for CLIs that read it there


class PromptTooLong(Exception):
    """The config passes the prompt as one argument, and it is too long to be one."""


# A provider-specific agent failure: the pattern that tells it, and the advice added to it.
Hint = tuple[re.Pattern[str], str]
Login = tuple[str, str]  # (level, detail) as `doctor` prints it


class Provider(Protocol):
    """The interface of each module in agents/: mypy checks every module in the registry
    (agents.PROVIDERS) against it. `settings` is the provider's section of the config."""

    BINARY: str | None  # the program looked for on the PATH; None when the config names it
    TESTED: str | None  # the version prefix nightshift was tested with, for `doctor`
    USAGE_FILE: bool  # whether a call reports its usage in a file of ours
    FAILURE_HINTS: tuple[Hint, ...]

    def program(self, settings: Mapping[str, Any]) -> str: ...

    def build_argv(self, settings: Mapping[str, Any], prompt: str, usage_file: str | None = None,
                   prompt_file: str = "") -> list[str]: ...

    def invocation(self, settings: Mapping[str, Any], prompt: str,
                   usage_file: str | None = None) -> AbstractContextManager[Invocation]: ...

    def extra_env(self, usage_file: str | None) -> dict[str, str]: ...

    def parse_reply(self, stdout: str, report: str | None) -> Reply: ...

    def login_state(self, settings: Mapping[str, Any], env: Mapping[str, str]) -> Login | None: ...

    def read_usage(self, conn: Conn, settings: Mapping[str, Any],
                   at: datetime) -> Reading: ...


def augmented_path(env: Mapping[str, str] = os.environ) -> str:
    parts = [p for p in env.get("PATH", "").split(os.pathsep) if p]
    extra = [os.path.expanduser(p) for p in EXTRA_PATH]
    if env.get("GOPATH"):
        extra.append(os.path.join(env["GOPATH"], "bin"))
    parts += [p for p in extra if p not in parts and os.path.isdir(p)]
    return os.pathsep.join(parts)


def call_env(extra: Mapping[str, str], env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment of an agent call: ours with the CLI paths, a provider's `extra`
    where the environment does not set them already, and no inherited usage file."""
    out = {k: v for k, v in env.items() if k != usage_report.USAGE_ENV}
    out["PATH"] = augmented_path(env)
    for key, value in extra.items():
        out.setdefault(key, value)
    return out


def binary(settings: Mapping[str, Any], default: str) -> str:
    """The CLI to run: the config's `binary` (~ expanded), else the default name."""
    return os.path.expanduser(settings.get("binary") or default)


def fits_argv(prompt: str) -> bool:
    return len(prompt.encode()) < MAX_ARG_BYTES


def status(argv: list[str], extra: Mapping[str, str]) -> subprocess.CompletedProcess[str] | None:
    """A CLI's own offline status command (`claude auth status`), or None if it did not answer."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=STATUS_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, env=call_env(extra), check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def count(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    return int(value) if isinstance(value, int | float) else 0


def json_object(text: str) -> dict[str, Any] | None:
    """A CLI's whole output as one JSON object, else None."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            yield event


def _bounded(text: str) -> str:
    if len(text) <= 2 * OUTPUT_BOUND:
        return text
    return f"{text[:OUTPUT_BOUND]}\n...\n{text[-OUTPUT_BOUND:]}"


def _line_at(text: str, match: re.Match[str] | None) -> str:
    if match is None:
        return ""
    return text[text.rfind("\n", 0, match.start()) + 1:].split("\n", 1)[0].strip()


def reason(text: str, match: re.Match[str] | None = None) -> str:
    """One line for a failure: the CLI's own error line (else its last line), plus the line
    that decided the classification when that is another one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "no output"
    own = next((line for line in lines if ERROR_LINE.search(line)), lines[-1])
    cause = _line_at(text, match)
    return one_line(own if not cause or cause in own else f"{own} ({cause})", REASON_CHARS)


def error_status(text: str) -> int | None:
    """The HTTP status in the last JSON error object (`{"error": {"code": 429, ...}}`) that
    starts a line of a CLI's output: the Gemini CLI reports its API errors so, on stderr."""
    decoder = json.JSONDecoder()
    for start in reversed([m.start() for m in re.finditer(r"^\{", text, re.MULTILINE)]):
        try:
            doc, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        error = doc.get("error") if isinstance(doc, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(code, int):
            return code
    return None


def classify(output: str, status: int | None, hints: tuple[Hint, ...]) -> Failure:
    """Transient (retry with backoff), quota or auth (fail over), or agent error (the task
    fails), judged from the whole (bounded) output: what a CLI prints first matters most.
    `status` is the API's HTTP status, else the one of a JSON error in the output. `hints`
    are the provider's own agent failures, each with its advice."""
    text = _bounded(output)
    status = status if status is not None else error_status(text)
    reset = RESET_IN.search(text)
    reset_in = None
    if reset:
        unit = reset.group(2)[0].lower()
        reset_in = int(reset.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit]
    quota, transient, auth = QUOTA.search(text), TRANSIENT.search(text), AUTH.search(text)
    if quota and status not in (429, 529):
        return Failure("quota", reason(text, quota), reset_in)
    if status in (429, 529) or transient:
        return Failure("transient", reason(text, transient), reset_in)
    if status in (401, 403) or auth:
        return Failure("auth", reason(text, auth))
    for pattern, advice in hints:
        found = pattern.search(text)
        if found:
            return Failure("agent", f"{reason(text, found)} ({advice})")
    return Failure("agent", reason(text))
