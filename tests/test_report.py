"""The morning report, status, report and doctor, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta

from nightshift_tasks.report import prune_logs
from tests.conftest import Env


def command(env: Env, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nightshift_tasks", *args], cwd=env.tmp,
                          env=env.environ(**extra), capture_output=True, text=True, timeout=120)


def test_each_run_writes_json_and_markdown_and_the_day_summary_accumulates(env: Env) -> None:
    alpha, _ = env.projects(["alpha", "beta"])
    (alpha / ".agent-fail-lint-fix").write_text("")
    env.write_config({"projects": [{"path": str(alpha)}, {"path": str(env.tmp / "repos/beta")},
                                   {"path": str(env.tmp / "gone")}]})
    first = env.doit("run", "-n", "2")
    assert first.returncode == 1
    reports = env.home / "reports"
    (record_file,) = reports.glob("run-*.json")
    record = json.loads(record_file.read_text())
    by_project = {t["project"]: t for t in record["tasks"]}
    assert by_project["alpha"]["status"] == "failed"
    assert by_project["alpha"]["reason"].startswith("planning failed: plan: exit 3")
    assert by_project["beta"]["status"] == "completed" and by_project["beta"]["log"]
    assert by_project["gone"]["status"] == "skipped"
    markdown = record_file.with_suffix(".md").read_text()
    assert "## Failed\n\n- alpha: lint-fix — " in markdown and "## Completed\n\n- beta: lint-fix" in markdown
    assert f"report: {record_file.with_suffix('.md')}" in first.stdout
    (alpha / ".agent-fail-lint-fix").unlink()
    env.doit("run", "-a", "alpha")
    summary = (reports / f"summary-{date.today()}.md").read_text()
    assert summary.startswith(f"# Nightshift summary {date.today()}\n")
    assert summary.count("## Nightshift run ") == 2
    assert len(list(reports.glob("run-*.md"))) == 2


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


def test_old_logs_are_pruned(tmp_path: object) -> None:
    from pathlib import Path

    logs = Path(str(tmp_path)) / "logs"
    today = date(2026, 11, 28)
    for days in (0, 7, 8, 30):
        (logs / str(today - timedelta(days=days))).mkdir(parents=True)
    (logs / "cron.log").write_text("kept\n")
    removed = prune_logs(logs, 7, today)
    assert [p.name for p in removed] == ["2026-10-29", "2026-11-20"]
    assert sorted(p.name for p in logs.iterdir()) == ["2026-11-21", "2026-11-28", "cron.log"]
    assert prune_logs(logs, 0, today) == []
