"""`status`, `report` and `doctor`: what happened, and whether the next night will work.
They never take the run lock, so they work while a run is going."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tabulate import tabulate

from nightshift_tasks import agents, guard, runlock, shutdown, state, storage
from nightshift_tasks.config import Config, ConfigError, open_config, split_variables
from nightshift_tasks.paths import nightshift_home
from nightshift_tasks.schedule_cmd import next_run_note
from nightshift_tasks.schedule_files import backend_files
from nightshift_tasks.text import cells

EXIT_USAGE = 2
MIN_FREE_BYTES = 1 << 30
SOURCE_PROGRAMS = {  # task source -> the program it needs, and what is lost without it
    "github_issues": ("gh", "open GitHub issues labelled `nightshift` are not read; install gh "
                      "(https://cli.github.com) and run `gh auth login`"),
    "td": ("td", "td tasks are not read; install td"),
}


def reports_dir() -> Path:
    return nightshift_home() / "reports"


def show_status(config: Config, last: int | None) -> int:
    if last:
        runs = sorted(reports_dir().glob("run-*.json"))[-last:]
        rows = []
        for path in runs:
            record = json.loads(path.read_text(encoding="utf-8"))
            count = {k: sum(t["status"] == k for t in record["tasks"])
                     for k in ("completed", "failed", "skipped")}
            rows.append([record["start_time"], f"{record['duration_s']:.0f}s", *count.values(),
                         record["tokens_used"]])
        print(tabulate(rows, headers=["run started", "took", "completed", "failed", "skipped",
                                      "tokens"]) if rows else "no runs recorded yet")
        return 0
    conn = guard.connection(str(config.state_db()), config.db_lock_wait())
    today = state.now().date().isoformat()
    rows = [cells(r["project_path"], r["task"], r["status"], r["provider"], r["tokens"],
                  r["output_ref"] or r["error"] or "")
            for r in conn.execute("SELECT a.* FROM attempts a JOIN chains c ON c.id = a.chain_id "
                                  "WHERE c.day = ? ORDER BY a.id", (today,))]
    print(tabulate(rows, headers=["project", "task", "status", "provider", "tokens",
                                  "result or reason"]) if rows else f"nothing ran on {today}")
    print(f"\n{next_run_note(config)}")
    _, _, detail = lock_check()
    if detail != "free":
        print(f"\nrun lock: {detail}")
    return 0


def lock_check() -> tuple[str, str, str]:
    """Free, held by a working run, or held by a stuck one (which the next run breaks)."""
    lock = nightshift_home() / "run.lock"
    if runlock.acquire_probe(lock):
        return "OK", "run lock", "free"
    holder, reason = runlock.holder(lock), shutdown.stuck(lock)
    if reason:
        return ("WARN", "run lock", f"held by a stuck run ({holder}): {reason}; the next run "
                "stops it and takes over")
    return "OK", "run lock", f"held by a running run ({holder})"


def show_report(day: str | None) -> int:
    if day:
        path = reports_dir() / f"summary-{day}.md"
    else:
        runs = sorted(reports_dir().glob("run-*.md"))
        if not runs:
            print(f"no runs recorded yet (each run writes its report to {reports_dir()})")
            return 0
        path = runs[-1]
    if not path.is_file():
        print(f"error: no report at {path}", file=sys.stderr)
        return 1
    print(path.read_text(encoding="utf-8"), end="")
    return 0


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
    db = config.state_db()
    try:
        conn = state.connect(db, check=True)
        version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        found.append(("OK", "state db", f"{db} (schema {version})"))
    except Exception as exc:
        found.append(("FAIL", "state db", f"{db}: {exc}"))
    found += [("WARN", "corrupt state db", f"{old} was moved aside; salvage rows with `sqlite3 {old} "
               ".recover`, then delete it") for old in storage.quarantined(db)]
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


def main(command: str, argv: list[str]) -> int:
    variables, args = split_variables(argv)
    parser = argparse.ArgumentParser(prog=f"nightshift-tasks {command}")
    if command == "status":
        parser.add_argument("--last", type=int, metavar="N", help="the last N runs instead of today")
    if command == "report":
        parser.add_argument("--date", metavar="YYYY-MM-DD", help="that day's summary, not the last run")
    opts = parser.parse_args(args)
    if command == "report":
        return show_report(opts.date)
    try:
        config = open_config(variables.get("config"), Path(os.getcwd()))
    except ConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        if command == "doctor":
            print("[FAIL] config: see above")
            return 1
        return EXIT_USAGE
    if command == "doctor":
        return doctor(config)
    with storage.or_exit(config.state_db()):
        return show_status(config, opts.last)
