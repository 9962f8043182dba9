"""The morning report: what each run writes, and how long its logs are kept."""

from __future__ import annotations

import json
from datetime import date, timedelta

from nightshift_tasks.report import prune_logs
from tests.conftest import Env


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
