"""Signal/crash cycles on real `doit run -n K` processes, shared by tests/test_shutdown.py
and bench/crash_cycles.py.

Every process of a run carries a marker in its environment (doit, its workers, the agent
gates, the agents, their setsid() escapees), so "nothing of ours is left" is checked by
that marker, not by guessing from process names. The agent leaves a setsid() grandchild
behind on every call: the worst case for stopping an agent's descendants.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from nightshift_tasks import runlock
from nightshift_tasks.signals import EXIT_INTERRUPTED, SHUTDOWN_SECONDS
from tests.conftest import DODO, Env

MARK = "NIGHTSHIFT_TEST_MARK"
SLACK_SECONDS = 1.5  # scheduling noise on a loaded 2-core machine, on top of the bound

ESCAPING_AGENT = """#!/bin/sh
setsid sleep 300 &
exec {agent} "$@"
"""


def escaping_agent(env: Env) -> Path:
    """A wrapper around the fake agent that first starts a setsid() grandchild."""
    path = env.tmp / "escaping-agent"
    path.write_text(ESCAPING_AGENT.format(agent=env.agent))
    path.chmod(0o755)
    return path


def marked(token: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries this token."""
    needle = f"{MARK}={token}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0") and \
                    (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def children_of(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(proc.name))
            except (OSError, ValueError):
                continue
    return found


def forked_worker(pid: int) -> bool:
    """Whether doit's main process has forked a worker yet (a child running the same
    command line, unlike the git commands it runs while planning)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    for child in children_of(pid):
        try:
            if Path(f"/proc/{child}/cmdline").read_bytes() == cmdline:
                return True
        except OSError:
            continue
    return False


def agent_started(env: Env) -> bool:
    """The fake agent writes its prompt file as soon as it starts."""
    return any(env.tmp.glob(f"{env.record.name}.prompt.*"))


def wait_until(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.005)
    return bool(condition())  # type: ignore[operator]


@dataclass
class Outcome:
    sig: int
    moment: str
    rc: int | None
    seconds: float  # from the signal to the run's exit (or to its lock being free, for KILL)
    left: list[int]  # marked processes still alive afterwards
    lock_free: bool
    took_lock: bool

    def problems(self) -> list[str]:
        found = []
        if self.rc is None:
            found.append("did not exit")
        elif self.sig != signal.SIGKILL and self.rc != EXIT_INTERRUPTED and (
                self.took_lock or self.rc != -self.sig):
            # -sig is right only before nightshift's handlers exist: nothing started then.
            found.append(f"exit {self.rc}")
        if self.seconds > SHUTDOWN_SECONDS + SLACK_SECONDS:
            found.append(f"took {self.seconds:.1f}s")
        if self.left:
            found.append(f"left {len(self.left)} process(es)")
        if not self.lock_free:
            found.append("lock still held")
        return found


def signalled_run(env: Env, workers: int, sig: int, moment: str, rng: random.Random,
                  group: bool = False) -> Outcome:
    """Start `doit run -n workers`, send `sig` at `moment`, and see how it ends.

    moment: "boot" (0-300 ms after exec), "fork" (0-200 ms after the first worker is
    forked, the stretch that used to hang), "busy" (0-1.5 s after an agent started).
    """
    token = uuid.uuid4().hex
    run = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), "run", "-n",
                            str(workers), f"config={env.config}"], cwd=env.tmp,
                           env=env.environ(**{MARK: token}, AGENT_SLEEP="0.3"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    if moment == "fork":
        wait_until(lambda: forked_worker(run.pid) or run.poll() is not None, 60)
        time.sleep(rng.uniform(0, 0.2))
    elif moment == "busy":
        wait_until(lambda: agent_started(env) or run.poll() is not None, 60)
        time.sleep(rng.uniform(0, 1.5))
    else:
        time.sleep(rng.uniform(0, 0.3))
    if group:
        os.killpg(run.pid, sig)
    else:
        run.send_signal(sig)
    sent = time.monotonic()
    lock = env.home / "run.lock"
    try:
        rc: int | None = run.wait(timeout=SHUTDOWN_SECONDS + 30)
    except subprocess.TimeoutExpired:
        rc = None
    if sig == signal.SIGKILL:
        wait_until(lambda: runlock.acquire_probe(lock) and not marked(token),
                   SHUTDOWN_SECONDS + 30)
    seconds = time.monotonic() - sent
    left = marked(token)
    took = runlock.holder_pid(lock) == run.pid if lock.exists() else False
    outcome = Outcome(sig, moment, rc, seconds, left, runlock.acquire_probe(lock), took)
    if rc is None:
        run.kill()
        run.wait()
    return outcome


def ledger_problems(env: Env, tasks: int) -> list[str]:
    """After a clean rerun: every task completed exactly once, none left running."""
    conn = sqlite3.connect(env.home / "state.db")
    try:
        rows = conn.execute("SELECT project_path, task, status FROM attempts ORDER BY id").fetchall()
    finally:
        conn.close()
    problems = [f"{p}:{t} still running" for p, t, s in rows if s == "running"]
    completed = [(p, t) for p, t, s in rows if s == "completed"]
    problems += [f"{key} completed {completed.count(key)} times"
                 for key in sorted(set(completed)) if completed.count(key) > 1]
    if len(set(completed)) != tasks:
        problems.append(f"{len(set(completed))} of {tasks} tasks completed")
    return problems
