"""Repeated runs on simulated days: the clock is moved, never slept on."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from nightshift_tasks import state
from nightshift_tasks.catalog import build_catalog, builtin_slugs
from nightshift_tasks.config import load_config
from nightshift_tasks.plan import build_plan
from tests.conftest import require_program

CONFIG = """
projects: [{path: repo}]
schedule: {max_tasks: 2}
budget: {weekly_tokens: 100000000}
providers:
  preference: [command]
  command: {enabled: true, argv: [/bin/true, "{prompt}"]}
tasks:
  enabled: [lint-fix, docs-backfill, dead-code, weekly-audit]
  priorities: {dead-code: 1}
  intervals: {lint-fix: 48h}
  custom:
    - {type: weekly-audit, name: Weekly Audit, description: Audit things., interval: 2d, cost_tier: low}
"""


def test_plan_follows_the_rules_across_days(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_program("git")
    (tmp_path / "repo").mkdir()
    subprocess.run(["git", "init", "-q"], cwd=tmp_path / "repo", check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q",
                    "--allow-empty", "-m", "init"], cwd=tmp_path / "repo", check=True)
    (tmp_path / "c.yaml").write_text(CONFIG)
    config = load_config(tmp_path / "c.yaml", builtin_slugs(), {})
    catalog = build_catalog(config.section("tasks")["custom"])
    conn = state.connect(tmp_path / "state.db")
    repo = str(tmp_path / "repo")
    start = datetime(2026, 11, 2, 2, 0).astimezone()
    picks = []
    for day in range(5):
        at = start + timedelta(days=day)
        monkeypatch.setattr(state, "now", lambda at=at: at)
        (project,) = build_plan(config, catalog, conn, at).projects
        picks.append(project.tasks)
        chain = state.open_chain(conn, repo, at.date().isoformat(), project.tasks, "command", f"r{day}")
        for slug in project.tasks:
            attempt = state.start_attempt(conn, chain, f"r{day}", repo, slug, "command", 1, "log")
            state.finish_attempt(conn, attempt, state.Outcome("completed", 1))
        # A second run the same day keeps today's chain, finished.
        (again,) = build_plan(config, catalog, conn, at + timedelta(hours=1)).projects
        assert again.finished_today and again.tasks == project.tasks
    assert picks == [
        ["dead-code", "lint-fix"],          # 4.0 (priority 1 + never run 3.0), then catalogue order
        ["docs-backfill", "weekly-audit"],  # the other two are cooling down
        ["lint-fix"],                       # its 48h override has passed; the rest cool down
        ["dead-code", "weekly-audit"],      # 72h default and 2d custom interval passed
        ["lint-fix"],
    ]
