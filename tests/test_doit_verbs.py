"""doit's own verbs on our tasks, through the real `doit` CLI (run from the checkout, where
pyproject.toml registers our forget and clean) and through `python -m nightshift_tasks`."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys

from tests.conftest import ROOT, Env


def ns(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    """The console entry point, with the test's config."""
    return subprocess.run([sys.executable, "-m", "nightshift_tasks", *args, f"config={env.config}"],
                          cwd=env.tmp, env=env.environ(), capture_output=True, text=True, timeout=120)


def tasks_called(env: Env) -> list[tuple[str, str]]:
    return [(c.project, c.task) for c in env.calls() if c.phase == "plan"]


def test_forget_a_project_makes_the_next_run_run_it_again(env: Env) -> None:
    env.projects(["alpha", "beta"], schedule={"max_tasks": 2})
    assert env.doit("run").returncode == 0
    assert len(tasks_called(env)) == 4
    forgot = env.doit("forget", "alpha", cwd=ROOT)
    assert forgot.returncode == 0, forgot.stderr
    assert forgot.stdout.splitlines() == [
        "forgetting alpha", "forgetting alpha:lint-fix", "forgetting alpha:docs-backfill",
        "nightshift: alpha: the next run runs lint-fix, docs-backfill again today"]
    again = env.doit("run")
    assert again.returncode == 0, again.stderr
    assert tasks_called(env)[4:] == [("alpha", "lint-fix"), ("alpha", "docs-backfill")]
    # The same through the console script, for one task of the other project.
    one = ns(env, "forget", "beta:docs-backfill")
    assert one.stdout.splitlines() == [
        "forgetting beta:docs-backfill", "nightshift: beta: the next run runs docs-backfill again today"]
    assert ns(env, "run").returncode == 0
    assert tasks_called(env)[6:] == [("beta", "docs-backfill")]
    assert ns(env, "run").returncode == 0  # done again: nothing more runs
    assert len(tasks_called(env)) == 7


def test_forget_of_a_project_that_did_nothing_today_says_so(env: Env) -> None:
    env.projects(["alpha"])
    forgot = ns(env, "forget", "alpha")
    assert forgot.returncode == 0
    assert forgot.stdout.splitlines()[-1] == "nightshift: alpha: nothing finished today"


def test_bare_forget_asks_for_a_name_without_a_traceback(env: Env) -> None:
    env.projects(["alpha"])
    for result in (env.doit("forget", cwd=ROOT), ns(env, "forget")):
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().endswith(
            "forget: name what to forget: `forget <project>` or `forget <project>:<task>` "
            "(`list` shows the names), or --all")


def make_leftover(env: Env, repo_name: str) -> tuple[str, str]:
    """A worktree as a run killed with -9 leaves it: named after a process that is gone,
    registered in the repository; and the lock file naming that process."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    worktree = env.home / "worktrees" / f"{repo_name}--lint-fix--{dead.pid}"
    worktree.parent.mkdir(parents=True)
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(worktree)],
                   cwd=env.tmp / "repos" / repo_name, check=True)
    (env.home / "run.lock").write_text(f"pid {dead.pid}, started 2026-11-28 02:00:00\n")
    return str(worktree), f"pid {dead.pid}, started 2026-11-28 02:00:00"


def registered(env: Env, repo_name: str) -> str:
    return subprocess.run(["git", "worktree", "list"], cwd=env.tmp / "repos" / repo_name,
                          capture_output=True, text=True, check=True).stdout


def test_clean_removes_leftover_worktrees_and_the_lock_file(env: Env) -> None:
    env.projects(["alpha"])
    worktree, holder = make_leftover(env, "alpha")
    lock = env.home / "run.lock"
    dry = env.doit("clean", "--dry-run", cwd=ROOT)
    assert dry.returncode == 0, dry.stderr
    lock_line = f"run lock file {lock} (last held by {holder})"
    assert dry.stdout.splitlines() == [f"nightshift: would remove worktree {worktree}",
                                       f"nightshift: would remove {lock_line}"]
    assert os.path.isdir(worktree) and lock.exists()
    cleaned = env.doit("clean", cwd=ROOT)
    assert cleaned.returncode == 0, cleaned.stderr
    assert cleaned.stdout.splitlines() == [f"nightshift: removed worktree {worktree}",
                                           f"nightshift: removed {lock_line}"]
    assert not os.path.exists(worktree) and not lock.exists()
    assert worktree not in registered(env, "alpha")
    again = ns(env, "clean")
    assert (again.returncode, again.stdout) == (0, "nightshift: nothing to clean\n")
    assert not lock.exists()


def test_clean_removes_nothing_while_a_run_holds_the_lock(env: Env) -> None:
    env.projects(["alpha"])
    worktree, _ = make_leftover(env, "alpha")
    lock = env.home / "run.lock"
    lock.write_text(f"pid {os.getpid()}, started 2026-11-28 02:00:00\nstuck after 3600s without progress\n")
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = ns(env, "clean")
    assert result.returncode == 1
    assert result.stdout == (f"nightshift: a run holds {lock} (pid {os.getpid()}, started 2026-11-28 "
                             "02:00:00): it is working; nothing removed\n")
    assert os.path.isdir(worktree) and worktree in registered(env, "alpha")


def test_clean_takes_no_task_names(env: Env) -> None:
    env.projects(["alpha"])
    result = ns(env, "clean", "alpha")
    assert result.returncode == 2
    assert "clean: takes no task names (alpha)" in result.stderr


def test_list_is_in_plan_order(env: Env) -> None:
    repos = [env.repo(n) for n in ("alpha", "zeta", "mid")]
    env.write_config({"projects": [{"path": str(repos[0])}, {"path": str(repos[1]), "priority": 5},
                                   {"path": str(repos[2]), "priority": 2}]})
    for result in (env.doit("list"), ns(env, "list")):
        assert result.returncode == 0, result.stderr
        assert [line.split()[0] for line in result.stdout.splitlines()] == ["zeta", "mid", "alpha"]


def test_info_describes_the_daily_guard(env: Env) -> None:
    (repo,) = env.projects(["alpha"], schedule={"max_tasks": 2})
    info = env.doit("info", "alpha")
    assert info.returncode == 1, info.stderr  # doit's info: 1 = the task would run
    assert (f"    - daily guard: lint-fix, docs-backfill finished today in {repo} (`forget` clears it) "
            "(args=[], kwargs={})") in info.stdout.splitlines()
    assert "<function" not in info.stdout
    task = env.doit("info", "alpha:docs-backfill")
    assert f"    - daily guard: docs-backfill finished today in {repo} (`forget` clears it) " \
           "(args=[], kwargs={})" in task.stdout.splitlines()


def test_run_s_runs_one_task_of_the_chain_as_the_readme_says(env: Env) -> None:
    assert "- `doit run -s <project>:<task>` runs that one task of the plan. Without `-s`, doit first" \
        in (ROOT / "README.md").read_text().splitlines()
    env.projects(["alpha"], schedule={"max_tasks": 2})
    single = env.doit("run", "-s", "alpha:docs-backfill")
    assert single.returncode == 0, single.stderr
    assert tasks_called(env) == [("alpha", "docs-backfill")]
    # Without -s doit runs the tasks before it first (README: "doit run -s <project>:<task>");
    # docs-backfill itself is done today.
    chained = env.doit("run", "alpha:docs-backfill")
    assert chained.returncode == 0, chained.stderr
    assert tasks_called(env)[1:] == [("alpha", "lint-fix")]
