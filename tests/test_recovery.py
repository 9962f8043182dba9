"""One run at a time, and crash safety with real processes: `kill -9` of doit's main
process at random points, then reruns, leave no orphan agent, no lost completed task and
no task completed twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from nightshift_tasks import runlock, state
from nightshift_tasks.process import alive
from nightshift_tasks.recovery import recover_orphans
from tests.conftest import DODO, Env


def running(env: Env) -> bool:
    """Whether the ledger shows a task running (polled: the signal that a run is working)."""
    try:
        conn = sqlite3.connect(env.home / "state.db")
        try:
            return conn.execute("SELECT COUNT(*) FROM attempts WHERE status = 'running'").fetchone()[0] > 0
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return False


def start_run(env: Env, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), "run", *args,
                             f"config={env.config}"], cwd=env.tmp, env=env.environ(**extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(condition: object, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def lock_free(env: Env) -> bool:
    return runlock.acquire_probe(env.home / "run.lock")


def agents_alive(env: Env) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if str(env.agent).encode() in cmdline and stat.split(")")[1].split()[0] != "Z":
            found.append(int(proc.name))
    return found


def gate(env: Env) -> Path:
    """The directory through which the test holds and releases the fake agent's calls."""
    path = env.tmp / "gate"
    path.mkdir(exist_ok=True)
    return path


def waiting(gate_dir: Path, task: str, phase: str) -> int:
    """How many agent calls of this task and phase wait at the gate."""
    return len(list(gate_dir.glob(f"waiting.*.{task}.{phase}")))


def test_two_overlapping_runs_one_does_the_work(env: Env) -> None:
    env.projects(["alpha", "beta"])
    held = gate(env)
    first = start_run(env, "-n", "2", AGENT_GATE=str(held))
    # Both workers' agents wait at the gate: the first run surely holds the lock meanwhile.
    assert wait_until(lambda: waiting(held, "lint-fix", "plan") == 2)
    second = env.doit("run", "-n", "2")
    assert second.returncode == 0
    assert second.stdout.startswith("nightshift: another run (pid ")
    assert "holds the lock; nothing to do" in second.stdout
    assert "project" not in second.stdout  # no summary: it did nothing
    listed = env.doit("list")
    assert listed.returncode == 0 and "alpha" in listed.stdout
    (held / "open").touch()
    out, _ = first.communicate(timeout=60)
    assert first.returncode == 0, out
    assert len(env.calls()) == 6  # each project's task ran once, by the first run


# Where each kill -9 lands: after opening these gates, when two calls wait at this one. Both
# workers are then busy, one project each; earlier kills left their tasks interrupted.
KILL_POINTS = [((), ("lint-fix", "plan")),  # nothing finished yet
               (("open.lint-fix",), ("docs-backfill", "plan")),  # lint-fix completed
               (("open.docs-backfill.plan",), ("docs-backfill", "implement"))]  # mid-task


def test_kill_9_at_known_points_then_reruns_lose_nothing_and_repeat_nothing(env: Env) -> None:
    env.projects(["alpha", "beta", "gamma"], schedule={"max_tasks": 2})
    held = gate(env)
    for opened, (task, phase) in KILL_POINTS:
        for name in opened:
            (held / name).touch()
        run = start_run(env, "-n", "2", AGENT_GATE=str(held))
        assert wait_until(lambda: waiting(held, task, phase) == 2), (opened, task, phase)  # noqa: B023
        assert running(env)
        run.send_signal(signal.SIGKILL)
        run.wait()
        # Workers die with their parent, take their agents down and release the run lock.
        assert wait_until(lambda: lock_free(env)), "workers outlived their parent"
        assert not agents_alive(env)
        for left in held.glob("waiting.*"):
            left.unlink()
    final = env.doit("run", "-n", "2")
    assert final.returncode == 0, final.stdout + final.stderr
    conn = sqlite3.connect(env.home / "state.db")
    rows = conn.execute("SELECT project_path, task, status, id FROM attempts ORDER BY id").fetchall()
    assert not [r for r in rows if r[2] == "running"]
    completed: dict[tuple[str, str], int] = {}
    for path, task, status, attempt in rows:
        key = (path, task)
        assert key not in completed, f"{key} ran again after completing"
        if status == "completed":
            completed[key] = attempt
    assert len(completed) == 6
    rerun = env.doit("run").stdout.splitlines()
    assert sum(line.startswith("-- ") for line in rerun) == 6  # all done today: nothing runs
    assert not agents_alive(env)


def test_recover_orphans_stops_a_surviving_agent_group(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    chain = state.open_chain(conn, "/p", "2026-11-28", ["lint-fix"], "command", "r")
    attempt = state.start_attempt(conn, chain, "r", "/p", "lint-fix", "command", 1, "log")
    dead = subprocess.Popen(["true"])
    dead.wait()
    agent = subprocess.Popen(["sleep", "60"], start_new_session=True)
    conn.execute("UPDATE attempts SET pid = ?, agent_pgid = ? WHERE id = ?", (dead.pid, agent.pid,
                                                                               attempt))
    assert recover_orphans(conn) == ["/p:lint-fix was left running by a crashed run; marked "
                                     "interrupted, it runs again"]
    assert agent.wait(timeout=10) == -signal.SIGTERM
    assert conn.execute("SELECT status FROM attempts").fetchone()[0] == "interrupted"
    assert recover_orphans(conn) == []


def test_recover_orphans_leaves_a_live_worker_and_needs_no_agent_group(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    chain = state.open_chain(conn, "/p", "2026-11-28", ["lint-fix", "docs-backfill"], "command", "r")
    state.start_attempt(conn, chain, "r", "/p", "lint-fix", "command", os.getpid(), "log")  # alive
    dead = subprocess.Popen(["true"])
    dead.wait()
    state.start_attempt(conn, chain, "r", "/p", "docs-backfill", "command", dead.pid, "log")  # no agent yet
    assert recover_orphans(conn) == ["/p:docs-backfill was left running by a crashed run; marked "
                                     "interrupted, it runs again"]
    assert dict(conn.execute("SELECT task, status FROM attempts").fetchall()) == {
        "lint-fix": "running", "docs-backfill": "interrupted"}


def test_recover_orphans_stops_an_agent_group_whose_leader_already_exited(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    chain = state.open_chain(conn, "/p", "2026-11-28", ["lint-fix"], "command", "r")
    attempt = state.start_attempt(conn, chain, "r", "/p", "lint-fix", "command", 1, "log")
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!"], start_new_session=True,
                              stdout=subprocess.PIPE, text=True)
    assert leader.stdout is not None
    member = int(leader.stdout.readline())
    leader.wait()  # only the group's `sleep` is left
    dead = subprocess.Popen(["true"])
    dead.wait()
    conn.execute("UPDATE attempts SET pid = ?, agent_pgid = ? WHERE id = ?", (dead.pid, leader.pid, attempt))
    assert alive(member) and alive(leader.pid, group=True)
    assert len(recover_orphans(conn)) == 1
    assert not alive(leader.pid, group=True)  # stop_pgid waited until the group was gone


HOLDER = """
import os, sys
from pathlib import Path
from nightshift_tasks import runlock
lock = Path(sys.argv[1])
print(runlock.held(), runlock.holder_pid(lock))
print(runlock.acquire(lock, 600))
print(runlock.held(), runlock.holder_pid(lock) == os.getpid(), runlock.stuck_after(lock),
      runlock.acquire_probe(lock), flush=True)
sys.stdin.read()  # holds the lock until the test closes our stdin
"""


def test_the_run_lock_says_who_holds_it_and_for_how_long_it_may_stall(env: Env) -> None:
    lock = env.home / "run.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env.environ())
    assert holder.stdin is not None and holder.stdout is not None
    lines = [holder.stdout.readline() for _ in range(3)]
    try:
        assert lines == ["False None\n", "None\n", "True True 600.0 False\n"]
        assert not lock_free(env)
        assert runlock.holder(lock).startswith(f"pid {holder.pid}, started ")
        assert runlock.acquire(lock, 600) == runlock.holder(lock)  # this process is turned away
        assert not runlock.held()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert lock_free(env)
