"""`nightshift-tasks doctor`: whether the next unattended run will work, checked offline.
Exit 1 when something it depends on is missing (FAIL), 0 otherwise (WARNs included)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from nightshift_tasks import agents, state, storage
from nightshift_tasks.commands.shared import lock_check
from nightshift_tasks.config import Config, ConfigError, open_config, split_variables
from nightshift_tasks.paths import nightshift_home
from nightshift_tasks.schedule_files import backend_files

MIN_FREE_BYTES = 1 << 30
SOURCE_PROGRAMS = {  # task source -> the program it needs, and what is lost without it
    "github_issues": ("gh", "open GitHub issues labelled `nightshift` are not read; install gh "
                      "(https://cli.github.com) and run `gh auth login`"),
    "td": ("td", "td tasks are not read; install td"),
}


def _version(prog: str) -> str:
    try:
        out = subprocess.run([prog, "--version"], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL, env=agents.agent_env(), check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout.strip() or out.stderr.strip()).splitlines()[0] if out.stdout or out.stderr else ""


def doctor_checks(config: Config) -> list[tuple[str, str, str]]:
    """(level, check, detail) for each thing the next unattended run depends on."""
    found: list[tuple[str, str, str]] = [("OK", "config", str(config.path))]
    db, shown = config.state_location(), storage.shown(config.state_location())
    try:
        conn = state.connect(db, check=True)
        version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        found.append(("OK", "state db", f"{shown} (schema {version})"))
    except Exception as exc:
        found.append(("FAIL", "state db", f"{shown}: {exc}"))
    found += [("WARN", "corrupt state db", f"{old} was moved aside; salvage rows with `sqlite3 {old} "
               ".recover`, then delete it") for old in storage.quarantined(config.state_db())]
    home = nightshift_home()
    if home.is_dir() and home.stat().st_mode & 0o077:
        found.append(("WARN", "home permissions", f"{home} is readable by others; chmod 700 {home}"))
    providers = config.section("providers")
    installed = usable = 0
    for name in providers["preference"]:
        settings = providers[name]
        if not settings.get("enabled"):
            continue
        missing = agents.unavailable(name, settings)
        if missing:
            found.append(("WARN", f"provider {name}", missing))
            continue
        installed += 1
        tested = agents.tested_version(name)
        seen = _version(agents.program(name, settings)) if tested else "generic command"
        ok = not tested or tested in seen
        found.append(("OK" if ok else "WARN", f"provider {name}",
                      seen + ("" if ok else f" (tested with {tested}x)")))
        login = agents.login_state(name, settings)
        if login:
            found.append((login[0], f"login {name}", login[1]))
        usable += not login or login[0] == "OK"
    if not installed:
        found.append(("FAIL", "providers", "no enabled provider has its CLI installed"))
    elif not usable:
        found.append(("FAIL", "providers", "no enabled provider is logged in"))
    found += source_checks(config)
    found.append(cron_check(config))
    found.append(lock_check())
    disk = shutil.disk_usage(nightshift_home() if nightshift_home().exists() else Path.home())
    found.append(("OK" if disk.free >= MIN_FREE_BYTES else "WARN", "free disk",
                  f"{disk.free / (1 << 30):.1f} GiB"))
    return found


def source_checks(config: Config) -> list[tuple[str, str, str]]:
    """Each enabled task source whose program is missing: what is lost, and what to do."""
    found = []
    for entry in config.section("integrations")["task_sources"]:
        kind = next(iter(entry))
        enabled = entry.get("github_issues") or entry.get("td", {}).get("enabled")
        if kind not in SOURCE_PROGRAMS or not enabled:
            continue
        program, lost = SOURCE_PROGRAMS[kind]
        path = shutil.which(program, path=agents.agent_env()["PATH"])
        found.append(("OK", f"task source {kind}", path) if path else (
            "WARN", f"task source {kind}", f"`{program}` is not installed (not on PATH): {lost}, or "
            f"remove `{kind}` from integrations.task_sources"))
    return found


def cron_check(config: Config) -> tuple[str, str, str]:
    """The schedule as `cron status` sees it (the systemd or launchd files when they are there):
    installed, and running with this shell's config and home."""
    backend = [f"--{b}" for b in ("systemd", "launchd") if any(p.is_file() for p in backend_files(b, None))]
    out = subprocess.run([sys.executable, "-m", "nightshift_tasks", "cron", "status", *backend[:1],
                          f"config={config.path}"], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL, check=False)
    detail = (out.stdout.strip() or out.stderr.strip() or "no answer").splitlines()[-1]
    return ("OK" if out.returncode == 0 else "WARN", "cron entry", detail)


def doctor(config: Config) -> int:
    checks = doctor_checks(config)
    for level, name, detail in checks:
        print(f"[{level}] {name}: {detail}")
    return 1 if any(level == "FAIL" for level, _, _ in checks) else 0


def main(argv: list[str]) -> int:
    variables, args = split_variables(argv)
    argparse.ArgumentParser(prog="nightshift-tasks doctor").parse_args(args)
    try:
        config = open_config(variables.get("config"), Path(os.getcwd()))
    except ConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        print("[FAIL] config: see above")
        return 1
    return doctor(config)
