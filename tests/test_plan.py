"""The plan as `doit list` shows it: provider choice, skip reasons, max_projects, resume."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nightshift_tasks import state
from nightshift_tasks.catalog import build_catalog
from nightshift_tasks.config import open_config
from nightshift_tasks.db import Conn
from nightshift_tasks.plan import build_plan
from nightshift_tasks.plan_data import Options, Plan, Pool
from tests.conftest import LAUGHS, Env, summary_rows


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


def test_info_explains_every_pick_and_skip(env: Env) -> None:
    (a,) = env.projects(["a"])
    env.write_config({"tasks": {"enabled": ["lint-fix", "dead-code", "bug-finder", "td-review"],
                                "disabled": ["bug-finder"], "priorities": {"dead-code": 2}},
                      "budget": {"weekly_tokens": 1_400_000}})
    (a / "CLAUDE.md").write_text("## Tasks\n- lint-fix please\n## Conventions\n- tabs, not spaces\n")
    info = env.doit("info", "a")
    lines = info.stdout.splitlines()
    assert f"{a} (provider command, allowance 140,000 tokens)" in lines
    assert "  picked     lint-fix               score 5.0 = priority 0.0 + staleness 3.0 + context 2.0" \
        in lines
    assert ("  not picked dead-code              score 5.0 = priority 2.0 + staleness 3.0; over budget: "
            "needs ~150,000 tokens (medium tier max), allowance 140,000 (command)") in lines
    assert "  not picked bug-finder             score 3.0 = priority 0.0 + staleness 3.0; disabled " \
           "(tasks.disabled)" in lines
    assert any(line.startswith("  not picked docs-backfill") and line.endswith("not in the enabled list")
               for line in lines)
    assert sum(line.startswith(("  picked ", "  not picked ")) for line in lines) == 59


def test_prompt_carries_issue_text_and_project_conventions(env: Env) -> None:
    (a,) = env.projects(["a"])
    subprocess.run(["git", "remote", "add", "origin", "https://github.com/me/a"], cwd=a, check=True)
    (a / "AGENTS.md").write_text("## Forbidden\n- Never edit generated/\n")
    bin_dir = env.tmp / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    issues = [{"number": 7, "title": "Docs for cli.py", "body": "docs-backfill: cover the flags",
               "labels": [{"name": "nightshift"}], "state": "OPEN"}]
    gh.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(issues)}\nEOF\n")
    gh.chmod(0o755)
    env.write_config({"integrations": {"task_sources": [{"github_issues": True}]}})
    path = f"{bin_dir}:{os.environ['PATH']}"
    assert "a   docs-backfill via command" in env.doit("list", "sources=1", PATH=path).stdout
    assert env.doit("run", PATH=path).returncode == 0
    prompt = Path(f"{env.record}.prompt.docs-backfill.plan").read_text()
    assert "- GitHub issue #7: Docs for cli.py\ndocs-backfill: cover the flags" in prompt
    assert "- Forbidden: Never edit generated/" in prompt


def test_missing_gh_is_a_warning_not_a_crash(env: Env) -> None:
    env.projects(["a"])
    env.write_config({"integrations": {"task_sources": [{"github_issues": True}]}})
    listed = env.doit("list", "sources=1", PATH="/usr/bin:/bin")
    assert listed.returncode == 0
    assert ("nightshift: warning: a: task source github_issues: `gh` is not installed (not on PATH; "
            "`nightshift-tasks doctor` explains); skipped") in listed.stderr


def test_task_var_forces_one_task_past_filters_and_the_guard(env: Env) -> None:
    env.projects(["a"])
    assert env.doit("run").returncode == 0
    forced = env.doit("run", "task=td-review")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert [(c.task, c.phase) for c in env.calls()[3:]] == [
        ("td-review", p) for p in ("plan", "implement", "review")]
    again = env.doit("run")
    assert again.returncode == 0 and len(env.calls()) == 6


def test_task_var_passes_the_filters_but_not_the_budget_and_list_says_so(env: Env) -> None:
    """bug-finder is not enabled (a filter task= passes) and its high tier's 500,000 tokens are
    over the allowance of 100,000 (the budget, which task= does not pass)."""
    env.projects(["a", "b"], budget={"weekly_tokens": 700_000, "max_percent": 100,
                                     "reserve_percent": 0})
    why = ("skipped: task=bug-finder needs ~500,000 tokens (high tier max), over the allowance "
           "of 100,000 (command); ignore_budget=1 runs it anyway")
    listed = env.doit("list", "task=bug-finder").stdout
    assert f"a   {why}" in listed and f"b   {why}" in listed
    ran = env.doit("run", "task=bug-finder")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert not env.record.exists()
    (report,) = (env.home / "reports").glob("run-*.json")
    assert [(t["project"], t["status"], t["reason"]) for t in json.loads(report.read_text())[
        "tasks"]] == [(p, "skipped", why.removeprefix("skipped: ")) for p in ("a", "b")]
    assert "a   bug-finder via command" in env.doit("list", "task=bug-finder", "ignore_budget=1").stdout
    forced = env.doit("run", "task=bug-finder", "ignore_budget=1")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert [(c.project, c.task) for c in env.calls()][::3] == [("a", "bug-finder"), ("b", "bug-finder")]


def test_bad_run_variables_are_argument_errors(env: Env) -> None:
    env.projects(["a"])
    unknown = env.doit("list", "task=lint-fx")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == ("argument error: task=lint-fx: unknown task; did you mean "
                                      "'lint-fix'? `python -m nightshift_tasks tasks list` shows every task")
    both = env.doit("run", "task=lint-fix", "random_task=1")
    assert (both.returncode, both.stderr.strip()) == (
        2, "argument error: task= and random_task=1 both given; use one of them")
    flag = env.doit("run", "random_task=maybe")
    assert flag.stderr.strip() == ("argument error: random_task=maybe: not a yes/no value; use "
                                   "random_task=1 or random_task=0")
    assert not env.record.exists()


def test_random_task_and_ignore_budget(env: Env) -> None:
    env.projects(["a"], budget={"weekly_tokens": 70_000})
    assert "skipped: no task can run: 3 over budget" in env.doit("list").stdout
    assert "a   lint-fix via command" in env.doit("list", "ignore_budget=1").stdout
    listed = env.doit("list", "ignore_budget=1", "random_task=1").stdout
    assert any(f"a   {slug} via command" in listed for slug in ("lint-fix", "docs-backfill", "dead-code"))


def test_custom_tasks_are_planned_run_and_explained(env: Env) -> None:
    env.projects(["a"])
    env.write_config({"tasks": {"enabled": ["changelog-check"], "custom": [{
        "type": "changelog-check", "name": "Changelog Check", "description": "Check CHANGELOG.md.",
        "cost_tier": "low"}]}})
    assert "a   changelog-check via command" in env.doit("list").stdout
    assert "picked     changelog-check" in env.doit("info", "a").stdout
    assert env.doit("run").returncode == 0
    assert {c.task for c in env.calls()} == {"changelog-check"}


def test_project_own_config_overrides_allowed_keys(env: Env) -> None:
    (a,) = env.projects(["a"])
    (a / "nightshift.yaml").write_text("tasks:\n  enabled: [dead-code]\nschedule:\n  cron: '0 3 * * *'\n")
    listed = env.doit("list")
    assert "a   dead-code via command" in listed.stdout
    assert f"{a / 'nightshift.yaml'}: schedule.cron is global; the per-project value is ignored" \
        in listed.stderr


ALLOWED_HERE = ("budget.max_percent, budget.reserve_percent, logging.level, providers.claude.enabled, "
                "providers.codex.enabled, schedule.cron, schedule.interval, tasks.disabled, tasks.enabled, "
                "tasks.priorities")


@pytest.mark.parametrize(("content", "problems"), [
    (b"tasks: {enabled: [dead-cod]}\nschedule: {max_tasks: 3}\nbudget: {mode: weekly}\n", [
        f"line 3, column 10: budget.mode: cannot be set per project; allowed here: {ALLOWED_HERE}",
        f"line 2, column 12: schedule.max_tasks: cannot be set per project; allowed here: {ALLOWED_HERE}",
        "line 1, column 19: tasks.enabled[0]: unknown task 'dead-cod'; did you mean 'dead-code'? see "
        "nightshift_tasks/catalog.yaml for every task"]),
    (b"schedule: &a {cron: '0 3 * * *', again: *a}\n", [
        "line 1, column 41: alias *a is inside its own anchor, so it would never end; aliases may only "
        "repeat finished values"]),
    ("tasks: {enabled: [dead-code]}\n".encode("utf-16"), ["file is UTF-16; save it as UTF-8"]),
    (LAUGHS.encode(), ["line 5, column 4: expands to more than 50,000 values through aliases; a config "
                       "needs far fewer"]),
], ids=["invalid-keys", "self-alias", "utf-16", "billion-laughs"])
def test_a_hostile_project_config_skips_that_project_only(env: Env, content: bytes,
                                                          problems: list[str]) -> None:
    a, _ = env.projects(["a", "b"])
    own = a / "nightshift.yaml"
    own.write_bytes(content)
    result = env.doit("run")
    assert "Traceback" not in result.stderr
    assert result.returncode == 0
    assert {(c.project, c.task) for c in env.calls()} == {("b", "lint-fix")}
    assert [line for line in result.stderr.splitlines() if line.startswith("nightshift: warning: a: ")] \
        == [f"nightshift: warning: a: config error: {own}: {line}" for line in problems]
    more = f" (+{len(problems) - 1} more, listed as warnings)" if len(problems) > 1 else ""
    reason = f"skipped: invalid config: nightshift.yaml: {problems[0]}{more}"
    assert summary_rows(result.stdout)["a"][:6] == ["-", "0", "0", "0", "0", "0"]
    shown = " ".join(summary_rows(result.stdout)["a"][7:])  # cut to fit 80 columns
    assert shown.endswith("…") and reason.startswith(shown[:-1])
    assert f"a   {reason}" in env.doit("list").stdout


def test_list_asks_no_source_and_a_run_asks_only_the_projects_that_run(env: Env) -> None:
    """`gh issue list` is one call per project: `doit list` makes none unless sources=1 asks,
    and a run asks only the projects it will run (here max_projects leaves out b and c)."""
    repos = env.projects(["a", "b", "c"], schedule={"max_projects": 1},
                         integrations={"task_sources": [{"github_issues": True}]})
    for repo in repos:
        subprocess.run(["git", "remote", "add", "origin", f"https://github.com/me/{repo.name}"],
                       cwd=repo, check=True)
    bin_dir, asked = env.tmp / "bin", env.tmp / "gh-asked"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(f"#!/bin/sh\nbasename \"$PWD\" >> {asked}\necho '[]'\n")
    (bin_dir / "gh").chmod(0o755)
    path = f"{bin_dir}:{os.environ['PATH']}"
    listed = env.doit("list", PATH=path)
    assert listed.returncode == 0 and not asked.exists()
    assert "b   skipped: schedule.max_projects (1) reached" in listed.stdout
    assert env.doit("list", "sources=1", PATH=path).returncode == 0
    assert asked.read_text() == "a\n"
    ran = env.doit("run", PATH=path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert asked.read_text() == "a\na\n"


def test_the_plan_reads_the_ledger_in_as_many_queries_for_many_projects_as_for_few(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTSHIFT_HOME", str(env.home))
    repos = env.projects([f"p{i}" for i in range(8)])
    catalog = build_catalog([])

    def queries(count: int) -> int:
        env.write_config({"projects": [{"path": str(r)} for r in repos[:count]]})
        config = open_config(str(env.config), env.tmp)
        conn = state.connect(config.state_db())
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        plan = build_plan(config, catalog, conn, state.now())
        assert [p.name for p in plan.projects if p.tasks] == [r.name for r in repos[:count]]
        return len(statements)

    assert queries(8) == queries(1)


def test_random_task_draws_among_the_eligible_tasks(env: Env) -> None:
    """Twenty projects each draw one of three eligible tasks: without the draw every one
    would get the top-ranked task (all three would pick one task with odds 3 * 3**-20)."""
    env.projects([f"p{i:02d}" for i in range(20)])
    env.write_config({"tasks": {"enabled": ["lint-fix", "docs-backfill", "dead-code", "bug-finder"],
                                "disabled": ["bug-finder"]}})
    ranked = env.doit("list").stdout.splitlines()
    assert {line.split()[1] for line in ranked} == {"lint-fix"}
    drawn = env.doit("list", "random_task=1").stdout.splitlines()
    assert len(drawn) == 20
    picks = {line.split()[1] for line in drawn}
    assert picks <= {"lint-fix", "docs-backfill", "dead-code"} and len(picks) > 1, drawn


def with_copilot(env: Env, preference: list[str]) -> None:
    """copilot beside the command agent, in `preference` order: a stand-in binary, which
    planning only looks for."""
    copilot = env.tmp / "copilot"
    copilot.write_text("#!/bin/sh\n")
    copilot.chmod(0o755)
    env.write_config({"providers": {"preference": preference,
                                    "command": {"enabled": True, "argv": [str(env.agent), "{prompt}"]},
                                    "copilot": {"enabled": True, "binary": str(copilot)}}})


def ledger(env: Env, monkeypatch: pytest.MonkeyPatch) -> Conn:
    """env's ledger, as plan_in_process will read it."""
    monkeypatch.setenv("NIGHTSHIFT_HOME", str(env.home))
    return state.connect(open_config(str(env.config), env.tmp).state_db())


def test_info_shows_the_allowance_equation_of_every_candidate_provider(env: Env) -> None:
    (a,) = env.projects(["a"], budget={"weekly_tokens": 1_400_000, "per_provider": {"copilot": 700_000}})
    with_copilot(env, ["command", "copilot"])
    lines = env.doit("info", "a").stdout.splitlines()
    start = lines.index(f"{a} (provider command, allowance 140,000 tokens)")
    assert lines[start + 1:start + 3] == [
        "budget command: 200,000 daily x (1 - 0.0% used) x 75% - 10,000 reserve = 140,000",
        "budget copilot: 100,000 daily x (1 - 0.0% used) x 75% - 5,000 reserve = 70,000"]


def test_a_projects_own_budget_percentages_set_its_allowance(env: Env) -> None:
    _, b = env.projects(["a", "b"], budget={"weekly_tokens": 1_400_000})
    (b / "nightshift.yaml").write_text("budget:\n  max_percent: 10\n  reserve_percent: 2\n")
    listed = env.doit("list").stdout
    assert "a   lint-fix via command" in listed
    assert "b   skipped: no task can run: 3 over budget (allowance 16,000 (command))" in listed
    lines = env.doit("info", "b").stdout.splitlines()
    start = lines.index(f"{b} (provider -, allowance 16,000 tokens)")
    assert lines[start + 1] == \
        "budget command: 200,000 daily x (1 - 0.0% used) x 10% - 4,000 reserve = 16,000"
    assert env.doit("run").returncode == 0
    assert {c.project for c in env.calls()} == {"a"}


def plan_in_process(env: Env, monkeypatch: pytest.MonkeyPatch, at: datetime | None = None,
                    options: Options | None = None) -> Plan:
    """The plan build_plan makes from env's config, without a doit subprocess."""
    monkeypatch.setenv("NIGHTSHIFT_HOME", str(env.home))
    config = open_config(str(env.config), env.tmp)
    catalog = build_catalog(config.section("tasks")["custom"])
    return build_plan(config, catalog, state.connect(config.state_db()), at or state.now(), options)


def test_a_closed_window_skips_every_usable_project_with_when_it_opens(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.projects(["a"], schedule={"window": {"start": "22:00", "end": "06:00", "timezone": "UTC"}})
    noon = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    (closed,) = plan_in_process(env, monkeypatch, noon).projects
    assert (closed.provider, closed.tasks, closed.skip_reason) == (
        None, [], "outside the time window 22:00-06:00 (UTC); it opens 2026-11-28 22:00 UTC")
    (ignored,) = plan_in_process(env, monkeypatch, noon, Options(ignore_window=True)).projects
    assert (ignored.provider, ignored.tasks, ignored.skip_reason) == ("command", ["lint-fix"], None)


def test_a_directory_without_a_repository_or_commits_is_skipped_with_its_path(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    (a,) = env.projects(["a"])
    plain, empty = env.tmp / "plain", env.tmp / "empty"
    plain.mkdir()
    empty.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=empty, check=True)
    env.write_config({"projects": [{"path": str(plain)}, {"path": str(empty)}, {"path": str(a)}]})
    assert [(p.name, p.tasks, p.skip_reason) for p in plan_in_process(env, monkeypatch).projects] == [
        ("plain", [], f"not a git repository: {plain}"),
        ("empty", [], f"git repository has no commits: {empty}"),
        ("a", ["lint-fix"], None)]


def test_todays_chain_keeps_its_provider_with_the_others_as_fail_over_and_their_pools(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain planned by an earlier run today is resumed on its own provider, and still
    carries every candidate's allowance (unless the budget is ignored)."""
    (a,) = env.projects(["a"], budget={"weekly_tokens": 1_400_000, "per_provider": {"copilot": 700_000}})
    with_copilot(env, ["copilot", "command"])
    conn = ledger(env, monkeypatch)
    state.open_chain(conn, str(a), state.now().date().isoformat(), ["lint-fix", "dead-code"],
                     "command", "r1")
    (resumed,) = plan_in_process(env, monkeypatch).projects
    assert (resumed.provider, resumed.tasks, resumed.fallbacks, resumed.allowance) == (
        "command", ["lint-fix", "dead-code"], ["copilot"], 140_000)
    assert resumed.pools == {
        "command": Pool(140_000, {"lint-fix": 50_000, "dead-code": 150_000}),
        "copilot": Pool(70_000, {"lint-fix": 50_000, "dead-code": 150_000})}
    assert list(resumed.equations) == ["command", "copilot"]
    (ignored,) = plan_in_process(env, monkeypatch, options=Options(ignore_budget=True)).projects
    assert (ignored.provider, ignored.fallbacks, ignored.allowance, ignored.pools, ignored.equations) == (
        "command", ["copilot"], None, {}, {})


def test_a_resumed_chain_still_carries_its_tasks_requests(env: Env,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (a,) = env.projects(["a"], integrations={"task_sources": [{"file": "TODO.md"}]})
    (a / "TODO.md").write_text("docs-backfill: cover the flags\n")
    conn = ledger(env, monkeypatch)
    state.open_chain(conn, str(a), state.now().date().isoformat(), ["docs-backfill"], "command", "r1")
    (resumed,) = plan_in_process(env, monkeypatch).projects
    assert (resumed.tasks, resumed.done, resumed.sources) == (
        ["docs-backfill"], [], {"docs-backfill": ["TODO.md:1: docs-backfill: cover the flags"]})


def test_an_exhausted_provider_is_passed_over_for_the_next_one(env: Env,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """copilot's 7 tokens a week are 1 a day, and 75% of 1 less its reserve is 0 tokens."""
    env.projects(["a"], budget={"weekly_tokens": 1_400_000, "per_provider": {"copilot": 7}})
    with_copilot(env, ["copilot", "command"])
    (a,) = plan_in_process(env, monkeypatch).projects
    assert (a.provider, a.tasks, a.fallbacks, a.allowance, list(a.pools)) == (
        "command", ["lint-fix"], [], 140_000, ["command"])
    env.write_config({"budget": {"weekly_tokens": 14}})  # 2 a day: an allowance of 1 token is some
    (poor,) = plan_in_process(env, monkeypatch).projects
    assert (poor.provider, poor.tasks, poor.skip_reason) == (
        None, [], "no task can run: 3 over budget (allowance 1 (command))")
    env.write_config({"budget": {"weekly_tokens": 7}})
    (none,) = plan_in_process(env, monkeypatch).projects
    assert (none.provider, none.tasks, none.skip_reason) == (
        None, [], "no provider: copilot budget exhausted (0% used); command budget exhausted (0% used)")


def test_one_problem_in_a_projects_own_config_is_the_whole_reason(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    (a,) = env.projects(["a"])
    (a / "nightshift.yaml").write_text("schedule: {max_tasks: 3}\n")
    (skipped,) = plan_in_process(env, monkeypatch).projects
    problem = ("line 1, column 12: schedule.max_tasks: cannot be set per project; allowed here: "
               f"{ALLOWED_HERE}")
    assert (skipped.provider, skipped.tasks, skipped.skip_reason, skipped.warnings) == (
        None, [], f"invalid config: nightshift.yaml: {problem}",
        (f"config error: {a / 'nightshift.yaml'}: {problem}",))


def test_a_finished_chain_asks_no_task_source_and_an_unfinished_one_does(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sources are asked only for work still to run (`gh` is not installed here, so asking
    shows as its warning)."""
    done, todo = env.projects(["done", "todo"], integrations={"task_sources": [{"github_issues": True}]})
    monkeypatch.setenv("NIGHTSHIFT_HOME", str(env.home))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    conn = state.connect(open_config(str(env.config), env.tmp).state_db())
    today = state.now().date().isoformat()
    chain = state.open_chain(conn, str(done), today, ["lint-fix"], "command", "r1")
    attempt = state.start_attempt(conn, chain, "r1", str(done), "lint-fix", "command", 1, "log")
    state.finish_attempt(conn, attempt, state.Outcome("completed", 1))
    state.open_chain(conn, str(todo), today, ["lint-fix"], "command", "r1")
    plans = {p.name: p for p in plan_in_process(env, monkeypatch).projects}
    finished, resumed = plans["done"], plans["todo"]
    assert (finished.finished_today, finished.warnings) == (True, ())
    assert (resumed.finished_today, resumed.warnings) == (False, (
        "task source github_issues: `gh` is not installed (not on PATH; `nightshift-tasks doctor` "
        "explains); skipped",))


def test_a_project_finished_today_does_not_count_towards_max_projects(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    done, other = env.projects(["done", "other"], schedule={"max_projects": 1})
    conn = ledger(env, monkeypatch)
    chain = state.open_chain(conn, str(done), state.now().date().isoformat(), ["lint-fix"], "command", "r1")
    attempt = state.start_attempt(conn, chain, "r1", str(done), "lint-fix", "command", 1, "log")
    state.finish_attempt(conn, attempt, state.Outcome("completed", 1))
    env.write_config({"projects": [{"path": str(done), "priority": 3}, {"path": str(other)}]})
    assert [(p.name, p.tasks, p.finished_today, p.skip_reason)
            for p in plan_in_process(env, monkeypatch).projects] == [
        ("done", ["lint-fix"], True, None), ("other", ["lint-fix"], False, None)]


def test_two_problems_in_a_projects_own_config_say_one_more(env: Env,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (a,) = env.projects(["a"])
    (a / "nightshift.yaml").write_text("schedule: {max_tasks: 3}\nbudget: {mode: weekly}\n")
    (skipped,) = plan_in_process(env, monkeypatch).projects
    assert skipped.skip_reason == (
        "invalid config: nightshift.yaml: line 2, column 10: budget.mode: cannot be set per project; "
        f"allowed here: {ALLOWED_HERE} (+1 more, listed as warnings)")
    assert len(skipped.warnings) == 2


def test_fail_over_is_every_other_usable_provider_in_preference_order(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planned fresh, the first usable provider runs and the rest are its fail-over; resuming
    today's chain on the middle one, the others on both sides of it are."""
    (a,) = env.projects(["a"])
    providers: dict[str, object] = {"preference": ["codex", "command", "copilot"],
                                    "command": {"enabled": True, "argv": [str(env.agent), "{prompt}"]}}
    for name in ("codex", "copilot"):
        cli = env.tmp / name
        cli.write_text("#!/bin/sh\n")
        cli.chmod(0o755)
        providers[name] = {"enabled": True, "binary": str(cli)}
    env.write_config({"providers": providers})
    (fresh,) = plan_in_process(env, monkeypatch).projects
    assert (fresh.provider, fresh.fallbacks, list(fresh.pools)) == (
        "codex", ["command", "copilot"], ["codex", "command", "copilot"])
    conn = state.connect(open_config(str(env.config), env.tmp).state_db())
    state.open_chain(conn, str(a), state.now().date().isoformat(), ["lint-fix"], "command", "r1")
    (resumed,) = plan_in_process(env, monkeypatch).projects
    assert (resumed.provider, resumed.fallbacks, list(resumed.pools)) == (
        "command", ["codex", "copilot"], ["command", "codex", "copilot"])


@pytest.mark.parametrize(("slug", "daily"), [("lint-fix", 50_000), ("dead-code", 150_000)])
def test_a_forced_task_that_needs_exactly_the_allowance_is_planned(
        env: Env, monkeypatch: pytest.MonkeyPatch, slug: str, daily: int) -> None:
    """A week of 7 x `daily`, all of it allowed, is the task's tier max (low, medium): its
    own estimate, not that of a task before it in the catalogue (bug-finder, high)."""
    env.projects(["a"], budget={"weekly_tokens": 7 * daily, "max_percent": 100, "reserve_percent": 0})
    (a,) = plan_in_process(env, monkeypatch, options=Options(force_task=slug)).projects
    assert (a.provider, a.tasks, a.allowance, a.skip_reason) == ("command", [slug], daily, None)


def test_selection_uses_the_estimate_learned_from_the_providers_runs(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """dead-code's medium tier max (150,000) is over the allowance of 140,000; a measured run
    of 100,000 tokens on the provider (of another project, a day earlier) makes it fit."""
    env.projects(["a"], tasks={"enabled": ["dead-code"]}, budget={"weekly_tokens": 1_400_000})
    (before,) = plan_in_process(env, monkeypatch).projects
    assert (before.tasks, before.skip_reason) == (
        [], "no task can run: 1 over budget (allowance 140,000 (command))")
    conn = state.connect(open_config(str(env.config), env.tmp).state_db())
    other = str(env.tmp / "other")
    chain = state.open_chain(conn, other, state.now().date().isoformat(), ["dead-code"], "command", "r0")
    attempt = state.start_attempt(conn, chain, "r0", other, "dead-code", "command", 1, "log")
    state.record_call(conn, attempt, "plan", "command", state.now(), 0, "ok", None, {"tokens": 100_000})
    state.finish_attempt(conn, attempt, state.Outcome("completed", 1))
    (after,) = plan_in_process(env, monkeypatch, state.now() + timedelta(days=1)).projects
    assert (after.provider, after.tasks, after.pools) == (
        "command", ["dead-code"], {"command": Pool(140_000, {"dead-code": 100_000})})


def test_a_disabled_or_missing_provider_is_passed_over(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    env.projects(["a"])
    env.write_config({"providers": {"preference": ["copilot", "claude", "command"],
                                    "copilot": {"enabled": False},
                                    "claude": {"enabled": True, "binary": str(env.tmp / "no-claude")}}})
    (a,) = plan_in_process(env, monkeypatch).projects
    assert (a.provider, a.tasks, a.fallbacks) == ("command", ["lint-fix"], [])


def test_todays_chain_keeps_an_exhausted_provider_as_fail_over_with_an_empty_pool(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Today's chain is kept as planned: the budget is not asked again here, the run's
    reservation against the pool is (copilot's 7 tokens a week leave it 0 today)."""
    (a,) = env.projects(["a"], budget={"weekly_tokens": 1_400_000, "per_provider": {"copilot": 7}})
    with_copilot(env, ["command", "copilot"])
    conn = ledger(env, monkeypatch)
    state.open_chain(conn, str(a), state.now().date().isoformat(), ["lint-fix"], "command", "r1")
    (resumed,) = plan_in_process(env, monkeypatch).projects
    assert (resumed.provider, resumed.fallbacks, resumed.pools) == (
        "command", ["copilot"], {"command": Pool(140_000, {"lint-fix": 50_000}),
                                 "copilot": Pool(0, {"lint-fix": 50_000})})


def test_todays_chain_moves_on_when_the_config_has_dropped_its_provider(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain failed over to copilot earlier today, and copilot was disabled since: the
    rest of the chain runs on the next usable provider, or the project is skipped."""
    (a,) = env.projects(["a"])
    conn = ledger(env, monkeypatch)
    state.open_chain(conn, str(a), state.now().date().isoformat(), ["lint-fix"], "copilot", "r1")
    env.write_config({"providers": {"preference": ["copilot", "command"],
                                    "copilot": {"enabled": False}}})
    (resumed,) = plan_in_process(env, monkeypatch).projects
    assert (resumed.provider, resumed.tasks, resumed.fallbacks, resumed.skip_reason) == (
        "command", ["lint-fix"], [], None)
    env.write_config({"providers": {"preference": ["copilot", "command"],
                                    "copilot": {"enabled": False}, "command": {"enabled": False}}})
    (skipped,) = plan_in_process(env, monkeypatch).projects
    assert (skipped.provider, skipped.tasks, skipped.skip_reason) == (
        None, [], "no provider: copilot not enabled; command not enabled")
