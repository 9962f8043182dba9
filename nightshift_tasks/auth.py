"""Whether an agent CLI is logged in, told offline for `doctor`.

An unattended run cannot log in, so a missing login is found the evening before, not at
02:00 as a failed call. Only offline signals are used: each CLI's own local status command
where it has one (`claude auth status`, `codex login status`), else the environment and the
files the CLI reads. Secrets are never printed: only where a credential was found.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from nightshift_tasks import agents

# Environment variables each CLI takes a credential from, in its own order of precedence.
CLAUDE_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
CODEX_ENV = ("CODEX_API_KEY", "OPENAI_API_KEY")
COPILOT_ENV = ("COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN")
STATUS_TIMEOUT_S = 30


def _status(argv: list[str], provider: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=STATUS_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, env=agents.agent_env(provider), check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _claude(prog: str) -> tuple[str, str]:
    done = _status([prog, "auth", "status"], "claude")
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


def _codex(prog: str, env: Mapping[str, str]) -> tuple[str, str]:
    done = _status([prog, "login", "status"], "codex")
    if done and done.returncode == 0:
        return "OK", "logged in (`codex login status`)"
    named = next((name for name in CODEX_ENV if env.get(name)), None)
    if named:
        return "OK", f"API key in ${named}"
    return "WARN", ("not logged in (`codex login status`): run `codex login`, or set "
                    "CODEX_API_KEY")


def _json_with_comments(path: Path) -> Any:
    """Copilot's config.json starts with `//` comment lines."""
    text = path.read_text(encoding="utf-8")
    return json.loads("\n".join(line for line in text.splitlines()
                                if not line.lstrip().startswith("//")))


def _copilot_login(env: Mapping[str, str]) -> str | None:
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


def _copilot(env: Mapping[str, str]) -> tuple[str, str]:
    named = next((name for name in COPILOT_ENV if env.get(name)), None)
    if named:
        if env[named].startswith("ghp_"):
            return "WARN", (f"${named} holds a classic personal access token (ghp_), which copilot "
                            "does not accept; use a fine-grained token with Copilot Requests")
        return "OK", f"token in ${named}"
    if env.get("COPILOT_PROVIDER_BASE_URL"):
        return "OK", "custom model provider in $COPILOT_PROVIDER_BASE_URL"
    stored = _copilot_login(env)
    if stored:
        return "OK", f"login stored in {stored}"
    return "WARN", ("not logged in: no COPILOT_GITHUB_TOKEN, GH_TOKEN or GITHUB_TOKEN, no login in "
                    "~/.copilot/config.json, no gh login; run `copilot login`")


def login_state(provider: str, settings: Mapping[str, Any],
                env: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """(level, detail) of the provider's login; None for a generic command (nothing to tell)."""
    prog = agents.program(provider, settings)
    if provider == "claude":
        return _claude(prog)
    if provider == "codex":
        return _codex(prog, env)
    if provider == "copilot":
        return _copilot(env)
    return None
