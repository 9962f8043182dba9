"""The agent CLIs nightshift can run, one module each (claude, codex, copilot, gemini,
opencode, command), all presenting the same small interface (base.Provider), in the way of
pre-commit's languages.

PROVIDERS is the registry: the rest of nightshift reaches a provider by its name only
through the functions here, so it never learns what any one provider does. A new provider
is a new module, a line here, and its section in schemas/config.schema.json.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from nightshift_tasks.agents import base, claude, codex, command, copilot, gemini, opencode
from nightshift_tasks.agents.base import (
    MAX_ARG_BYTES,
    OUTPUT_BOUND,
    Failure,
    Invocation,
    Login,
    PromptTooLong,
    Reply,
    Usage,
    augmented_path,
)

__all__ = ["MAX_ARG_BYTES", "OUTPUT_BOUND", "PROVIDERS", "Failure", "Invocation", "PromptTooLong",
           "Reply", "Usage", "agent_env", "augmented_path", "build_argv", "classify", "clis",
           "invocation", "login_state", "parse_reply", "program", "tested_version",
           "unavailable", "uses_usage_file"]

PROVIDERS: dict[str, base.Provider] = {
    "claude": claude,
    "codex": codex,
    "copilot": copilot,
    "gemini": gemini,
    "opencode": opencode,
    "command": command,
}


def agent_env(provider: str | None = None, env: Mapping[str, str] = os.environ,
              usage_file: str | None = None) -> dict[str, str]:
    """The environment of an agent call (of any program when `provider` is None); a command
    gets the path of its usage report file."""
    return base.call_env(PROVIDERS[provider].extra_env(usage_file) if provider else {}, env)


def program(provider: str, settings: Mapping[str, Any]) -> str:
    return PROVIDERS[provider].program(settings)


def unavailable(provider: str, settings: Mapping[str, Any]) -> str | None:
    """None when the provider's CLI can be run, else what is missing."""
    prog = program(provider, settings)
    if os.sep in prog:
        return None if os.access(prog, os.X_OK) else f"CLI not executable: {prog}"
    return None if shutil.which(prog, path=augmented_path()) else f"CLI not in PATH: {prog}"


def clis() -> list[str]:
    """The providers whose CLI is found by its name on the PATH, without any config."""
    return [name for name, module in PROVIDERS.items() if module.BINARY]


def tested_version(provider: str) -> str | None:
    """The version prefix nightshift was tested with; None for a generic command."""
    return PROVIDERS[provider].TESTED


def uses_usage_file(provider: str) -> bool:
    """Whether a call reports its usage in a file of ours, which the caller provides."""
    return PROVIDERS[provider].USAGE_FILE


def build_argv(provider: str, settings: Mapping[str, Any], prompt: str,
               usage_file: str | None = None, prompt_file: str = "") -> list[str]:
    """The full command line (raises PromptTooLong when the prompt cannot be one argument)."""
    return PROVIDERS[provider].build_argv(settings, prompt, usage_file, prompt_file)


def invocation(provider: str, settings: Mapping[str, Any], prompt: str,
               usage_file: str | None = None) -> AbstractContextManager[Invocation]:
    """argv and stdin of one call, and whatever the call needs while it runs."""
    return PROVIDERS[provider].invocation(settings, prompt, usage_file)


def parse_reply(provider: str, stdout: str, report: str | None = None) -> Reply:
    """The reply and usage of one call; `report` is the text of the provider's usage file
    (None when there is none, or the agent made it unreadable)."""
    return PROVIDERS[provider].parse_reply(stdout, report)


def classify(provider: str, output: str, status: int | None = None) -> Failure:
    """Transient (retry), quota or auth (fail over), or agent error (the task fails)."""
    return base.classify(output, status, PROVIDERS[provider].FAILURE_HINTS)


def login_state(provider: str, settings: Mapping[str, Any],
                env: Mapping[str, str] = os.environ) -> Login | None:
    """(level, detail) of the provider's login, told offline for `doctor`; None when there is
    nothing to tell. Secrets are never in it: only where a credential was found."""
    return PROVIDERS[provider].login_state(settings, env)

