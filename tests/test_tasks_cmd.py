"""`python -m nightshift_tasks tasks ...` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import Env


def tasks(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nightshift_tasks", "tasks", *args], cwd=env.tmp,
                          env=env.environ(), capture_output=True, text=True, timeout=60)


def test_list_filters_and_counts(env: Env) -> None:
    out = tasks(env, "list", "--category", "emergency").stdout
    assert out.splitlines()[2].split()[:2] == ["runbook-gen", "Runbook"]
    assert out.rstrip().endswith("3 task(s)")
    assert tasks(env, "list", "--cost", "low").stdout.rstrip().endswith("5 task(s)")
    data = json.loads(tasks(env, "list", "--json").stdout)
    assert len(data) == 59 and data[0]["slug"] == "lint-fix" and data[0]["max_tokens"] == 50_000


def test_list_includes_custom_tasks_from_the_config(env: Env) -> None:
    env.projects(["a"])
    env.write_config({"tasks": {"custom": [{"type": "mine", "name": "Mine", "description": "d",
                                            "category": "map"}]}})
    out = tasks(env, "list", "--category", "map", f"config={env.config}").stdout
    assert "mine                   Mine" in out and "custom" in out
    assert out.rstrip().endswith("8 task(s)")


def test_show_prints_metadata_and_each_phase_prompt_with_project_context(env: Env) -> None:
    (a,) = env.projects(["a"])
    (a / "CLAUDE.md").write_text("## Style\n- Keep functions short.\n")
    out = tasks(env, "show", "lint-fix", "--project", str(a)).stdout
    assert out.startswith("Linter Fixes [lint-fix]\ncategory pr, cost Low (10-50k), risk low, "
                          "interval 1d, on by default\n")
    for phase in ("plan", "implement", "review"):
        assert f"===== {phase} prompt =====\n# nightshift: {phase} phase" in out
    assert out.count("- Convention: Keep functions short.") == 3
    only = tasks(env, "show", "lint-fix", "--prompt-only", "--project", str(a)).stdout
    assert only.startswith("===== plan prompt =====")


def test_errors_exit_2(env: Env) -> None:
    unknown = tasks(env, "show", "lint-fx")
    assert (unknown.returncode, unknown.stderr.strip()) == (
        2, "error: tasks show: unknown task 'lint-fx'; did you mean 'lint-fix'?")
    env.config.write_text("tasks: {bogus: 1}\n")
    bad = tasks(env, "list", f"config={env.config}")
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"config error: {env.config}: line 1, column 9: tasks.bogus: unknown key")
    usage = tasks(env, "list", "--category", "nope")
    assert usage.returncode == 2 and "invalid choice: 'nope'" in usage.stderr


def test_filters_and_custom_task_values_ignore_case(env: Env) -> None:
    env.projects(["a"])
    env.write_config({"tasks": {"custom": [{"type": "mine", "name": "Mine", "description": "d",
                                            "category": "PR", "cost_tier": "Very-High",
                                            "risk_level": "High"}]}})
    out = tasks(env, "list", "--category", "PR", "--cost", "veryhigh", f"config={env.config}")
    assert out.returncode == 0, out.stderr
    assert [line.split()[0] for line in out.stdout.splitlines()[2:-2]] == ["mine"]
    assert tasks(env, "list", "--category", "pr", "--cost", "very-high", f"config={env.config}").stdout \
        == out.stdout
    (mine,) = [t for t in json.loads(tasks(env, "list", "--json", f"config={env.config}").stdout)
               if t["slug"] == "mine"]
    assert (mine["category"], mine["cost"], mine["risk"]) == ("pr", "very-high", "high")
