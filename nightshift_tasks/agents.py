"""Provider adapters: is the CLI there, how to call it, and where its reply text is.

Spawning, timeouts and logs are process.py's job; an adapter only builds argv and reads
stdout. Permission-bypassing flags are added only when the config opts in.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from typing import Any

BINARIES = {"claude": "claude", "codex": "codex", "copilot": "copilot"}
PROMPT_SLOT = "{prompt}"
# Where CLIs installed by npm, pipx, cargo or Homebrew live; cron's PATH lacks them.
EXTRA_PATH = ["~/.local/bin", "~/go/bin", "~/.cargo/bin", "~/.npm-global/bin", "/usr/local/bin",
              "/opt/homebrew/bin"]


def augmented_path(env: Mapping[str, str] = os.environ) -> str:
    parts = [p for p in env.get("PATH", "").split(os.pathsep) if p]
    extra = [os.path.expanduser(p) for p in EXTRA_PATH]
    if env.get("GOPATH"):
        extra.append(os.path.join(env["GOPATH"], "bin"))
    parts += [p for p in extra if p not in parts and os.path.isdir(p)]
    return os.pathsep.join(parts)


def agent_env(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    out = dict(env)
    out["PATH"] = augmented_path(env)
    return out


def program(provider: str, settings: Mapping[str, Any]) -> str:
    if provider == "command":
        return str(settings["argv"][0])
    return BINARIES[provider]


def unavailable(provider: str, settings: Mapping[str, Any]) -> str | None:
    """None when the provider's CLI can be run, else what is missing."""
    prog = program(provider, settings)
    if os.sep in prog:
        return None if os.access(prog, os.X_OK) else f"CLI not executable: {prog}"
    return None if shutil.which(prog, path=augmented_path()) else f"CLI not in PATH: {prog}"


def build_argv(provider: str, settings: Mapping[str, Any], prompt: str) -> list[str]:
    """The full command line; the prompt is always exactly one argv element."""
    if provider == "command":
        return [prompt if arg == PROMPT_SLOT else arg for arg in settings["argv"]]
    prog = BINARIES[provider]
    if provider == "claude":
        flags = ["--dangerously-skip-permissions"] if settings["dangerously_skip_permissions"] else []
        return [prog, "-p", "--output-format", "json", *flags, prompt]
    if provider == "codex":
        bypass = settings["dangerously_bypass_approvals_and_sandbox"]
        flags = ["--dangerously-bypass-approvals-and-sandbox"] if bypass else [
            "--sandbox", "workspace-write"]
        return [prog, "exec", "--json", *flags, prompt]
    flags = ["--allow-all-tools", "--allow-all-urls"] if settings["dangerously_skip_permissions"] else []
    return [prog, "-p", prompt, "--no-ask-user", "--silent", *flags]


def reply_text(provider: str, stdout: str) -> tuple[str, str | None]:
    """(reply text, agent-reported error or None) from a successful call's stdout."""
    if provider == "claude":
        try:
            doc = json.loads(stdout)
        except json.JSONDecodeError:
            return stdout, None
        if isinstance(doc, dict):
            text = str(doc.get("result", ""))
            return text, (text or "agent reported an error") if doc.get("is_error") else None
        return stdout, None
    if provider == "codex":
        texts, error = [], None
        for line in stdout.splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(event, dict):
                continue
            item = event.get("item") or {}
            if event.get("type") == "item.completed" and item.get("type") == "agent_message":
                texts.append(str(item.get("text", "")))
            if event.get("type") == "turn.failed":
                error = str((event.get("error") or {}).get("message", "turn failed"))
        return "\n".join(texts), error
    return stdout, None
