"""The doit graph end to end: the real `doit` CLI as a subprocess, real git repos, real
SQLite, and the fake agent CLI from conftest."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import DODO, Call, Env, max_overlap, summary_rows


def chains(calls: list[Call]) -> dict[str, tuple[float, float]]:
    spans: dict[str, list[float]] = defaultdict(list)
    for c in calls:
        spans[c.project] += [c.start, c.end]
    return {p: (min(v), max(v)) for p, v in spans.items()}


@pytest.mark.parametrize("k", [1, 2, 4])
def test_runs_exactly_k_projects_at_once(env: Env, k: int) -> None:
    names = [f"p{i}" for i in range(k + 2 if k > 1 else 3)]
    env.projects(names, schedule={"max_tasks": 2})
    # The first K calls wait for each other (a barrier, not a sleep), so K at once surely
    # happens; each call's start and end are taken inside the agent process, so its span lies
    # within the process's life and the spans can overlap more only if more ran at once.
    result = env.doit("run", "-n", str(k), AGENT_HOLD=str(k), AGENT_SLEEP="0")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = env.calls()
    assert len(calls) == len(names) * 2 * 3
    # Agent calls busy at one instant, and whole project chains (depth first) both equal K.
    assert max_overlap([(c.start, c.end) for c in calls]) == k
    assert max_overlap(list(chains(calls).values())) == k


def test_tasks_of_a_project_run_in_order_without_overlap(env: Env) -> None:
    env.projects(["alpha", "beta", "gamma"], schedule={"max_tasks": 3})
    result = env.doit("run", "-n", "3")
    assert result.returncode == 0, result.stderr
    for project in ("alpha", "beta", "gamma"):
        mine = [c for c in env.calls() if c.project == project]
        assert [(c.task, c.phase) for c in mine] == [
            (t, p) for t in ("lint-fix", "docs-backfill", "dead-code")
            for p in ("plan", "implement", "review")]
        assert max_overlap([(c.start, c.end) for c in mine]) == 1


def test_second_run_same_day_skips_and_a_forces(env: Env) -> None:
    env.projects(["alpha", "beta"])
    first = env.doit("run", "-n", "2")
    assert first.returncode == 0, first.stderr
    assert len(env.calls()) == 6
    second = env.doit("run", "-n", "2")
    assert second.returncode == 0
    assert len(env.calls()) == 6
    assert "-- alpha:lint-fix" in second.stdout and "-- beta:lint-fix" in second.stdout
    listed = env.doit("list", "--status")
    assert "U alpha   lint-fix via command (done today; `doit run -a alpha` forces it)" in listed.stdout
    forced = env.doit("run", "-a", "alpha")
    assert forced.returncode == 0, forced.stderr
    assert [c.project for c in env.calls()[6:]] == ["alpha"] * 3


def test_a_failure_does_not_stop_its_chain_or_other_projects(env: Env) -> None:
    alpha, _ = env.projects(["alpha", "beta"], schedule={"max_tasks": 2})
    (alpha / ".agent-fail-lint-fix").write_text("")
    result = env.doit("run", "-n", "1")
    assert result.returncode == 1
    done = {(c.project, c.task) for c in env.calls()}
    assert done == {("alpha", "docs-backfill"), ("beta", "lint-fix"), ("beta", "docs-backfill")}
    assert "alpha:lint-fix: failed: planning failed: plan: exit 3: fake agent: lint-fix is broken" \
        in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    rows = dict(sqlite3.connect(env.home / "state.db").execute(
        "SELECT project_path || ':' || task, status FROM attempts"))
    assert rows == {f"{alpha}:lint-fix": "failed", f"{alpha}:docs-backfill": "completed",
                    f"{env.tmp}/repos/beta:lint-fix": "completed",
                    f"{env.tmp}/repos/beta:docs-backfill": "completed"}
    # A failed task starts no cooldown; the project still counts as processed today.
    again = env.doit("run")
    assert again.returncode == 0 and len(env.calls()) == 9


def test_three_rejected_reviews_abandon_the_task(env: Env) -> None:
    (alpha,) = env.projects(["alpha"])
    (alpha / ".agent-reject").write_text("")
    result = env.doit("run")
    assert result.returncode == 1
    assert [c.phase for c in env.calls()] == ["plan"] + ["implement", "review"] * 3
    assert "abandoned" in result.stdout


def test_summary_table_lists_every_project_with_totals(env: Env) -> None:
    alpha, beta = env.projects(["alpha", "beta"])
    env.write_config({"projects": [{"path": str(alpha)}, {"path": str(beta)},
                                   {"path": str(env.tmp / "gone")}]})
    result = env.doit("run", "-n", "2")
    by_name = summary_rows(result.stdout)
    assert by_name["alpha"][:6] == ["command", "1", "0", "0", "0", "0"]
    assert by_name["gone"][:6] == ["-", "0", "0", "0", "0", "0"]
    assert by_name["TOTAL"][:5] == ["2", "0", "0", "0", "0"]
    assert "path does not exist" in result.stdout


def test_timeout_kills_the_agent_and_its_grandchild(env: Env) -> None:
    (alpha,) = env.projects(["alpha"])
    env.write_config({"providers": {"command": {"enabled": True, "timeout": "1s",
                                                "argv": [str(env.agent), "{prompt}"]}}})
    (alpha / ".agent-hang").write_text("")
    result = env.doit("run")
    assert result.returncode == 1
    assert "timed out after 1s" in result.stdout
    grandchild = int(Path(f"{env.record}.grandchild").read_text())
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_agent_runs_in_the_project_dir_in_its_own_session_with_stdin_closed(env: Env) -> None:
    (_alpha,) = env.projects(["alpha"])
    probe = env.tmp / "probe.sh"
    probe.write_text('#!/bin/sh\nls -l /proc/self/fd/0 > "$RECORD.stdin"\nexec '
                     f'{env.agent} "$@"\n')
    probe.chmod(0o755)
    env.write_config({"providers": {"command": {"enabled": True, "argv": [str(probe), "{prompt}"]}}})
    assert env.doit("run").returncode == 0
    calls = env.calls()
    assert {c.project for c in calls} == {"alpha"}
    assert all(c.session != os.getsid(0) for c in calls)
    assert len({c.session for c in calls}) == 3  # a new session per call
    assert Path(f"{env.record}.stdin").read_text().rstrip().endswith("/dev/null")


def test_list_shows_the_plan_and_status(env: Env) -> None:
    env.projects(["alpha", "beta"], schedule={"max_tasks": 2})
    listed = env.doit("list")
    assert listed.returncode == 0, listed.stderr
    assert "alpha   lint-fix, docs-backfill via command" in listed.stdout
    status = env.doit("list", "--all", "--status")
    assert "R alpha   " in status.stdout and "R alpha:lint-fix" in status.stdout
    assert not env.record.exists()


def _chain_finished(env: Env, project: str) -> bool:
    conn = sqlite3.connect(env.home / "state.db")
    try:
        row = conn.execute("SELECT finished_at FROM chains WHERE project_path LIKE ?",
                           (f"%/{project}",)).fetchone()
    except sqlite3.OperationalError:  # not created yet
        return False
    finally:
        conn.close()
    return row is not None and row[0] is not None


def test_interrupted_chain_resumes_without_rerunning_completed_tasks(env: Env) -> None:
    alpha, _ = env.projects(["alpha", "beta"], schedule={"max_tasks": 2})
    (alpha / ".agent-hang").write_text("")
    proc = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), "run", "-n", "2",
                             f"config={env.config}"], cwd=env.tmp, env=env.environ(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child = Path(f"{env.record}.child")
    deadline = time.monotonic() + 30
    while not child.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for a file the agent writes, not a timing guess
    assert child.exists()
    while not _chain_finished(env, "beta") and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the ledger for beta's chain to be committed
    listed = env.doit("list", "--status")  # doit's sqlite3 dep file is not locked by the run
    assert listed.returncode == 0 and "R alpha" in listed.stdout and "U beta" in listed.stdout
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert "interrupted" in out
    for pid_file in (child, Path(f"{env.record}.grandchild")):
        assert not _alive(int(pid_file.read_text()))
    rows = dict(sqlite3.connect(env.home / "state.db").execute(
        "SELECT task, status FROM attempts WHERE project_path = ? ORDER BY id", (str(alpha),)))
    assert rows == {"lint-fix": "interrupted", "docs-backfill": "planned"}
    (alpha / ".agent-hang").unlink()
    before = len(env.calls())
    resumed = env.doit("run", "-n", "2")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    again = [(c.project, c.task) for c in env.calls()[before:]]
    assert sorted(set(again)) == [("alpha", "docs-backfill"), ("alpha", "lint-fix")]


def test_python_m_runs_from_any_directory(env: Env, tmp_path: Path) -> None:
    env.projects(["alpha"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-m", "nightshift_tasks", "run", "-n", "2",
                             f"config={env.config}"], cwd=elsewhere, env=env.environ(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert len(env.calls()) == 3
    assert (env.home / "doit.sqlite").exists()
    assert not list(elsewhere.iterdir())


def test_process_mode_does_not_need_fork(env: Env) -> None:
    """Under the spawn start method (macOS; forkserver from Python 3.14) tasks still run."""
    env.projects(["alpha", "beta"])
    wrapper = env.tmp / "spawn_main.py"
    wrapper.write_text("import multiprocessing, sys\n"
                       "from nightshift_tasks.cli import main\n"
                       "if __name__ == '__main__':\n"
                       "    multiprocessing.set_start_method('spawn')\n"
                       "    sys.exit(main())\n")
    result = subprocess.run([sys.executable, str(wrapper), "run", "-n", "2", f"config={env.config}"],
                            cwd=env.tmp, env=env.environ(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted({c.project for c in env.calls()}) == ["alpha", "beta"]
    assert len(env.calls()) == 6
