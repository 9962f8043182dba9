"""`status`, `report` and `doctor` (commands/status.py, report.py, doctor.py), as a user runs
them after a run."""

from __future__ import annotations

import subprocess
import sys
from datetime import date

from tests.conftest import Env


def command(env: Env, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nightshift_tasks", *args], cwd=env.tmp,
                          env=env.environ(**extra), capture_output=True, text=True, timeout=120)


def test_status_report_and_doctor(env: Env) -> None:
    env.projects(["alpha"])
    config = f"config={env.config}"
    assert "nothing ran on" in command(env, "status", config).stdout
    assert env.doit("run").returncode == 0
    status = command(env, "status", config).stdout
    assert "lint-fix" in status and "completed" in status and "command" in status
    last = command(env, "status", "--last", "5", config).stdout.splitlines()
    assert last[0].split()[:3] == ["run", "started", "took"] and len(last) == 3
    shown = command(env, "report")
    assert shown.returncode == 0 and shown.stdout.startswith("# Nightshift run ")
    day = command(env, "report", "--date", str(date.today()))
    assert day.stdout.startswith("# Nightshift summary ")
    missing = command(env, "report", "--date", "1999-01-01")
    assert missing.returncode == 1 and "no report at" in missing.stderr
    doctor = command(env, "doctor", config)
    lines = doctor.stdout.splitlines()
    assert lines[0] == f"[OK] config: {env.config}"
    assert "[OK] provider command: generic command" in lines
    assert "[OK] run lock: free" in lines
    assert doctor.returncode == 0


def test_doctor_fails_without_a_usable_provider_or_config(env: Env) -> None:
    env.projects(["alpha"])
    env.write_config({"providers": {"preference": ["codex"], "command": {"enabled": False}}})
    doctor = command(env, "doctor", f"config={env.config}", PATH="/usr/bin:/bin")
    assert doctor.returncode == 1
    assert "[WARN] provider codex: CLI not in PATH: codex" in doctor.stdout
    assert "[FAIL] providers: no enabled provider has its CLI installed" in doctor.stdout
    env.config.write_text("bogus: 1\n")
    broken = command(env, "doctor", f"config={env.config}")
    assert broken.returncode == 1 and "[FAIL] config" in broken.stdout


def test_report_fleet_reads_the_day_from_the_ledger(env: Env) -> None:
    """On one machine (SQLite) too: every task of the day, each with the host that ran it."""
    alpha, _ = env.projects(["alpha", "beta"])
    (alpha / ".agent-fail-lint-fix").write_text("")
    config = f"config={env.config}"
    assert command(env, "report", "--fleet", config).stdout == f"no machine ran a task on {date.today()}\n"
    assert env.doit("run", "-n", "2", NIGHTSHIFT_HOST_ID="night-1").returncode == 1
    shown = command(env, "report", "--fleet", config)
    assert (shown.returncode, shown.stderr) == (0, "")
    text = shown.stdout
    assert text.startswith(f"# Nightshift fleet day {date.today()}\n\n- Host: night-1\n")
    assert f"## Failed\n\n- {alpha}: lint-fix — on night-1 — " in text
    assert f"## Completed\n\n- {env.tmp / 'repos' / 'beta'}: lint-fix — on night-1 — " in text


def test_report_fleet_with_a_bad_config_says_so(env: Env) -> None:
    env.config.write_text("projects: 3\n")
    shown = command(env, "report", "--fleet", f"config={env.config}")
    assert shown.returncode == 2 and shown.stdout == ""
    assert shown.stderr == (f"config error: {env.config}: line 1, column 1: projects: is an "
                            "integer; expected array\n")
