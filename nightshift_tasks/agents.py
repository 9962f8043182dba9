"""Provider adapters: is the CLI there, how to call it, what it replied, what it used, and
what kind of failure a failed call was.

Spawning, timeouts and logs are process.py's job; an adapter builds argv (and stdin) and
reads output. Permission-bypassing flags are added only when the config opts in.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nightshift_tasks import usage_report
from nightshift_tasks.text import one_line

BINARIES = {"claude": "claude", "codex": "codex", "copilot": "copilot"}
# Providers that report their usage in a file of ours: copilot by --usage-output-file, a
# command by the usage protocol ($NIGHTSHIFT_USAGE_FILE, see usage_report.py).
USAGE_FILE_PROVIDERS = ("copilot", "command")
PROMPT_SLOT = "{prompt}"
PROMPT_FILE_SLOT = "{prompt_file}"
# Linux's MAX_ARG_STRLEN: the most bytes one argv element can hold, its final NUL included.
MAX_ARG_BYTES = 128 * 1024
# Where CLIs installed by npm, pipx, cargo or Homebrew live; cron's PATH lacks them.
EXTRA_PATH = ["~/.local/bin", "~/go/bin", "~/.cargo/bin", "~/.npm-global/bin", "/usr/local/bin",
              "/opt/homebrew/bin"]
# Claude Code retries a 429 for minutes on its own; we retry (and fail over) ourselves.
CLAUDE_ENV = {"CLAUDE_CODE_MAX_RETRIES": "1"}

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
SANDBOX = re.compile(r"sandbox.*(fail|error|not supported|unavailable|denied)|landlock|seccomp|"
                     r"bwrap", re.IGNORECASE)
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
    tokens: int = 0  # billable: claude input + cache writes + output; codex uncached input
    # + output + reasoning; copilot input + output; command input + cache writes + output +
    # reasoning
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


def augmented_path(env: Mapping[str, str] = os.environ) -> str:
    parts = [p for p in env.get("PATH", "").split(os.pathsep) if p]
    extra = [os.path.expanduser(p) for p in EXTRA_PATH]
    if env.get("GOPATH"):
        extra.append(os.path.join(env["GOPATH"], "bin"))
    parts += [p for p in extra if p not in parts and os.path.isdir(p)]
    return os.pathsep.join(parts)


def agent_env(provider: str = "command", env: Mapping[str, str] = os.environ,
              usage_file: str | None = None) -> dict[str, str]:
    """The environment of an agent call; a command gets the path of its usage report file."""
    out = {k: v for k, v in env.items() if k != usage_report.USAGE_ENV}
    out["PATH"] = augmented_path(env)
    if provider == "claude":
        out.update({k: v for k, v in CLAUDE_ENV.items() if k not in env})
    if provider == "command" and usage_file:
        out[usage_report.USAGE_ENV] = usage_file
    return out


def program(provider: str, settings: Mapping[str, Any]) -> str:
    if provider == "command":
        return str(settings["argv"][0])
    return os.path.expanduser(settings.get("binary") or BINARIES[provider])


def unavailable(provider: str, settings: Mapping[str, Any]) -> str | None:
    """None when the provider's CLI can be run, else what is missing."""
    prog = program(provider, settings)
    if os.sep in prog:
        return None if os.access(prog, os.X_OK) else f"CLI not executable: {prog}"
    return None if shutil.which(prog, path=augmented_path()) else f"CLI not in PATH: {prog}"


class PromptTooLong(Exception):
    """The config passes the prompt as one argument, and it is too long to be one."""


@dataclass(frozen=True)
class Invocation:
    argv: list[str]
    stdin: bytes | None = None  # the prompt, for CLIs that read it there


def fits_argv(prompt: str) -> bool:
    return len(prompt.encode()) < MAX_ARG_BYTES


def build_argv(provider: str, settings: Mapping[str, Any], prompt: str,
               usage_file: str | None = None, prompt_file: str = "") -> list[str]:
    """The full command line. Claude and Codex read the prompt on stdin, so its size is not
    bound by the OS's limit on one argument; Copilot does too when it is over that limit."""
    if provider == "command":
        argv = settings["argv"]
        if PROMPT_SLOT in argv and not fits_argv(prompt):
            raise PromptTooLong(
                f"the prompt is {len(prompt.encode()):,} bytes, more than one command-line "
                f"argument may hold ({MAX_ARG_BYTES - 1:,} bytes); providers.command.argv passes "
                f"it as \"{PROMPT_SLOT}\": "
                f"use \"{PROMPT_FILE_SLOT}\" (the path of a file holding the prompt) instead, or "
                "neither, to get the prompt on stdin")
        slots = {PROMPT_SLOT: prompt, PROMPT_FILE_SLOT: prompt_file}
        return [slots.get(arg, arg) for arg in argv]
    prog = program(provider, settings)
    extra = list(settings.get("extra_args") or [])
    model = settings.get("model")
    if provider == "claude":
        flags = ["--dangerously-skip-permissions"] if settings["dangerously_skip_permissions"] else []
        return [prog, "-p", "--output-format", "json", *(["--model", model] if model else []),
                *flags, *extra]
    if provider == "codex":
        bypass = settings["dangerously_bypass_approvals_and_sandbox"]
        flags = ["--dangerously-bypass-approvals-and-sandbox"] if bypass else [
            "--sandbox", "workspace-write"]
        return [prog, "exec", "--json", *(["-m", model] if model else []), *flags, *extra, "-"]
    flags = ["--allow-all-tools", "--allow-all-urls"] if settings["dangerously_skip_permissions"] else []
    report = ["--usage-output-file", usage_file] if usage_file else []
    return [prog, *(["-p", prompt] if fits_argv(prompt) else []), "--no-ask-user", "--silent",
            "--output-format", "json", "--no-auto-update", *(["--model", model] if model else []),
            *report, *flags, *extra]


def prompt_stdin(provider: str, settings: Mapping[str, Any], prompt: str) -> bytes | None:
    """The prompt for the CLI's stdin, or None when it goes into argv. A command whose argv
    has neither placeholder gets it on stdin."""
    if provider == "command":
        return None if {PROMPT_SLOT, PROMPT_FILE_SLOT} & set(settings["argv"]) else prompt.encode()
    return None if provider == "copilot" and fits_argv(prompt) else prompt.encode()


@contextlib.contextmanager
def invocation(provider: str, settings: Mapping[str, Any], prompt: str,
               usage_file: str | None = None) -> Iterator[Invocation]:
    """argv and stdin of one call. A "{prompt_file}" in a command's argv becomes a private
    (0600) temporary file holding the prompt, removed when the call is over."""
    stdin = prompt_stdin(provider, settings, prompt)
    if provider != "command" or PROMPT_FILE_SLOT not in settings["argv"]:
        yield Invocation(build_argv(provider, settings, prompt, usage_file), stdin)
        return
    fd, path = tempfile.mkstemp(prefix="nightshift-prompt-", suffix=".md")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(prompt)
        yield Invocation(build_argv(provider, settings, prompt, usage_file, path), stdin)
    finally:
        os.unlink(path)


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    return int(value) if isinstance(value, int | float) else 0


def _json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            yield event


def parse_claude(stdout: str) -> Reply:
    """`claude -p --output-format json`: one result object."""
    try:
        doc = json.loads(stdout)
    except json.JSONDecodeError:
        return Reply(stdout, Usage())
    if not isinstance(doc, dict):
        return Reply(stdout, Usage())
    u = doc.get("usage") or {}
    usage = Usage(input_tokens=_int(u, "input_tokens"), output_tokens=_int(u, "output_tokens"),
                  cache_read_tokens=_int(u, "cache_read_input_tokens"),
                  cache_write_tokens=_int(u, "cache_creation_input_tokens"),
                  tokens=_int(u, "input_tokens") + _int(u, "cache_creation_input_tokens")
                  + _int(u, "output_tokens"),
                  cost_usd=float(doc.get("total_cost_usd") or 0.0))
    text = str(doc.get("result", ""))
    if doc.get("is_error"):
        status = doc.get("api_error_status")
        return Reply(text, usage, text or "agent reported an error",
                     status if isinstance(status, int) else None)
    return Reply(text, usage)


def parse_codex(stdout: str) -> Reply:
    """`codex exec --json`: the last agent_message, usage summed over turn.completed events."""
    texts: list[str] = []
    error = None
    fields = dict.fromkeys(("input_tokens", "cached_input_tokens", "cache_write_input_tokens",
                            "output_tokens", "reasoning_output_tokens"), 0)
    for event in _json_lines(stdout):
        item = event.get("item") or {}
        if event.get("type") == "item.completed" and item.get("type") == "agent_message":
            texts.append(str(item.get("text", "")))
        elif event.get("type") == "turn.completed":
            for key in fields:
                fields[key] += _int(event.get("usage") or {}, key)
        elif event.get("type") in ("turn.failed", "error"):
            error = str((event.get("error") or {}).get("message") or event.get("message")
                        or "turn failed")
    usage = Usage(input_tokens=fields["input_tokens"], output_tokens=fields["output_tokens"],
                  cache_read_tokens=fields["cached_input_tokens"],
                  cache_write_tokens=fields["cache_write_input_tokens"],
                  reasoning_tokens=fields["reasoning_output_tokens"],
                  tokens=max(0, fields["input_tokens"] - fields["cached_input_tokens"])
                  + fields["output_tokens"] + fields["reasoning_output_tokens"])
    return Reply(texts[-1] if texts else "", usage, error)


def _sum_key(data: Any, key: str) -> int:
    """Sum every value of `key` anywhere in a nested JSON document."""
    if isinstance(data, dict):
        return sum(_sum_key(v, key) if k != key else _int(data, key) for k, v in data.items())
    if isinstance(data, list):
        return sum(_sum_key(v, key) for v in data)
    return 0


def parse_copilot(stdout: str, usage_report: str | None) -> Reply:
    """`copilot --output-format json` (JSONL events) and its --usage-output-file report."""
    events = list(_json_lines(stdout))
    texts = [str((e.get("data") or {}).get("content", "")) for e in events
             if e.get("type") == "assistant.message" and (e.get("data") or {}).get("content")]
    errors = [str((e.get("data") or {}).get("message", "")) for e in events
              if e.get("type") == "session.error"]
    usage = Usage()
    if usage_report:
        try:
            report = json.loads(usage_report)
        except json.JSONDecodeError:
            report = {}
        metrics = report.get("modelMetrics", {}) if isinstance(report, dict) else {}
        inp, out = _sum_key(metrics, "inputTokens"), _sum_key(metrics, "outputTokens")
        usage = Usage(input_tokens=inp, output_tokens=out, tokens=inp + out,
                      cache_read_tokens=_sum_key(metrics, "cacheReadTokens"),
                      cache_write_tokens=_sum_key(metrics, "cacheWriteTokens"),
                      requests=int(report.get("totalPremiumRequestCost") or 0)
                      if isinstance(report, dict) else 0)
    if not events:
        texts = [stdout]  # plain text output
    return Reply(texts[-1] if texts else "", usage, errors[-1] if errors else None)


def parse_command(stdout: str, report_text: str | None) -> Reply:
    """Any program: its stdout is the reply, its usage what it reported by the protocol."""
    report = usage_report.parse(stdout, report_text)
    if report.problem:
        return Reply(report.text, Usage(), usage_unknown=report.problem)
    counts = {k: int(report.fields[k]) for k in usage_report.TOKEN_FIELDS}
    tokens = (counts["input_tokens"] + counts["cache_write_tokens"] + counts["output_tokens"]
              + counts["reasoning_tokens"])
    return Reply(report.text, Usage(**counts, tokens=tokens, cost_usd=report.fields["cost_usd"]))


def parse_reply(provider: str, stdout: str, report: str | None = None) -> Reply:
    """The reply and usage of one call; `report` is the text of the provider's usage file
    (None when there is none, or the agent made it unreadable)."""
    if provider == "claude":
        return parse_claude(stdout)
    if provider == "codex":
        return parse_codex(stdout)
    if provider == "copilot":
        return parse_copilot(stdout, report)
    return parse_command(stdout, report)


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


def classify(provider: str, output: str, status: int | None = None) -> Failure:
    """Transient (retry with backoff), quota or auth (fail over), or agent error (the task
    fails), judged from the whole (bounded) output: what a CLI prints first matters most."""
    text = _bounded(output)
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
    sandbox = SANDBOX.search(text) if provider == "codex" else None
    if sandbox:
        return Failure("agent", f"{reason(text, sandbox)} (codex could not start its sandbox on "
                       "this machine; if the machine is isolated otherwise, set "
                       "providers.codex.dangerously_bypass_approvals_and_sandbox: true)")
    return Failure("agent", reason(text))
