"""The plan as `doit list` shows it: provider choice, skip reasons, max_projects, resume."""

from __future__ import annotations

from tests.conftest import Env


def test_no_provider_skips_every_project_with_the_reason(env: Env) -> None:
    env.projects(["alpha"])
    env.write_config({"providers": {"preference": ["codex", "command"],
                                    "command": {"enabled": False}}})
    listed = env.doit("list", PATH="/usr/bin:/bin")
    assert listed.returncode == 0
    assert "alpha   skipped: no provider: codex CLI not in PATH: codex; command not enabled" \
        in listed.stdout


def test_max_projects_counts_only_projects_with_tasks(env: Env) -> None:
    a, b, c = env.projects(["a", "b", "c"], schedule={"max_projects": 1})
    env.write_config({"projects": [{"path": str(env.tmp / "missing")}, {"path": str(a)},
                                   {"path": str(b)}, {"path": str(c)}]})
    listed = env.doit("list").stdout
    assert "a         lint-fix via command" in listed
    assert "b         skipped: schedule.max_projects (1) reached" in listed
    assert "missing   skipped: path does not exist" in listed
    result = env.doit("run", "-n", "3")
    assert result.returncode == 0
    assert {c.project for c in env.calls()} == {"a"}


def test_priority_orders_projects(env: Env) -> None:
    a, b = env.projects(["a", "b"])
    env.write_config({"projects": [{"path": str(a)}, {"path": str(b), "priority": 3}]})
    assert env.doit("run", "-n", "1").returncode == 0
    assert [c.project for c in env.calls()][::3] == ["b", "a"]


def test_project_task_list_overrides_enabled(env: Env) -> None:
    (a,) = env.projects(["a"], schedule={"max_tasks": 2})
    env.write_config({"projects": [{"path": str(a), "tasks": ["dead-code"]}]})
    assert "a   dead-code via command" in env.doit("list").stdout
