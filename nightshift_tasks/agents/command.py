"""Any program as the agent (providers.command.argv): the prompt where argv's placeholders
say, else on stdin; its stdout is the reply, and its usage what it reported by the usage
protocol (usage_report.py), counted in our own ledger.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from nightshift_tasks import usage_report
from nightshift_tasks.agents import base
from nightshift_tasks.agents.base import (
    MAX_ARG_BYTES,
    Invocation,
    Login,
    PromptTooLong,
    Reply,
    Usage,
    fits_argv,
)
from nightshift_tasks.agents.readings import Reading, read_ledger
from nightshift_tasks.db import Conn

BINARY: str | None = None  # argv[0] of the config
TESTED: str | None = None  # a generic command has no version to check
USAGE_FILE = True  # $NIGHTSHIFT_USAGE_FILE
FAILURE_HINTS: tuple[base.Hint, ...] = ()
PROMPT_SLOT = "{prompt}"
PROMPT_FILE_SLOT = "{prompt_file}"


def program(settings: Mapping[str, Any]) -> str:
    return str(settings["argv"][0])


def build_argv(settings: Mapping[str, Any], prompt: str, usage_file: str | None = None,
               prompt_file: str = "") -> list[str]:
    """argv with its placeholders filled in."""
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


@contextlib.contextmanager
def invocation(settings: Mapping[str, Any], prompt: str,
               usage_file: str | None = None) -> Iterator[Invocation]:
    """argv and stdin of one call: an argv with neither placeholder gets the prompt on
    stdin. A "{prompt_file}" becomes a private (0600) temporary file holding the prompt,
    removed when the call is over."""
    stdin = None if {PROMPT_SLOT, PROMPT_FILE_SLOT} & set(settings["argv"]) else prompt.encode()
    if PROMPT_FILE_SLOT not in settings["argv"]:
        yield Invocation(build_argv(settings, prompt, usage_file), stdin)
        return
    fd, path = tempfile.mkstemp(prefix="nightshift-prompt-", suffix=".md")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(prompt)
        yield Invocation(build_argv(settings, prompt, usage_file, path), stdin)
    finally:
        os.unlink(path)


def extra_env(usage_file: str | None) -> dict[str, str]:
    """The path of the file the command may write its usage report to."""
    return {usage_report.USAGE_ENV: usage_file} if usage_file else {}


def parse_reply(stdout: str, report: str | None) -> Reply:
    """Its stdout is the reply, its usage what it reported by the protocol."""
    found = usage_report.parse(stdout, report)
    if found.problem:
        return Reply(found.text, Usage(), usage_unknown=found.problem)
    counts = {k: int(found.fields[k]) for k in usage_report.TOKEN_FIELDS}
    tokens = (counts["input_tokens"] + counts["cache_write_tokens"] + counts["output_tokens"]
              + counts["reasoning_tokens"])
    return Reply(found.text, Usage(**counts, tokens=tokens, cost_usd=found.fields["cost_usd"]))


def login_state(settings: Mapping[str, Any], env: Mapping[str, str]) -> Login | None:
    """Nothing to tell about a generic command."""
    return None


def read_usage(conn: Conn, settings: Mapping[str, Any], at: datetime) -> Reading:
    return read_ledger(conn, "command", at)
