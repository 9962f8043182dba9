"""A signal at any moment ends a run within the bound, exit 130, leaving no process and a
free lock; a stuck run's lock is reported and broken."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from nightshift_tasks import runlock
from nightshift_tasks.process import alive
from nightshift_tasks.signals import stat_fields
from tests.conftest import DODO, Env, summary_table
from tests.crashes import MARK, escaping_agent, ledger_problems, marked, signalled_run
from tests.test_process import STUBBORN
from tests.test_summary import ledger, wait_for

TASKS = ["lint-fix", "docs-backfill", "dead-code"]


def escape(env: Env) -> None:
    env.write_config({"providers": {"command": {"enabled": True, "timeout": "1m", "argv": [
        str(escaping_agent(env)), "{prompt}"]}}})


def test_sigterm_while_doit_forks_its_workers_ends_the_run(env: Env) -> None:
    """Today's hang: TERM to doit's main process in the first moments of `run -n 4`."""
    env.projects(["alpha", "beta", "gamma", "delta"], schedule={"max_tasks": len(TASKS)})
    escape(env)
    rng = random.Random(11)
    outcomes = [signalled_run(env, 4, signal.SIGTERM, "fork", rng) for _ in range(5)]
    assert [o.problems() for o in outcomes] == [[]] * 5, outcomes
    final = env.doit("run", "-n", "4")
    assert final.returncode == 0, final.stdout + final.stderr
    assert ledger_problems(env, 4 * len(TASKS)) == []


def test_an_agents_setsid_grandchild_does_not_outlive_the_run(env: Env) -> None:
    """A grandchild that calls setsid() leaves the agent's group; the worker, a subreaper,
    adopts it when its parent exits and stops it after the call."""
    env.projects(["alpha", "beta"], schedule={"max_tasks": 1})
    escape(env)
    token = uuid.uuid4().hex
    done = env.doit("run", "-n", "2", **{MARK: token})
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(env.calls()) == 6
    assert marked(token) == []


def hold_lock(env: Env, pid: int | None, idle: float) -> subprocess.Popen[str]:
    """A real process holding the run lock, as a hung run would; the file names `pid` (the
    holder itself when None) and its heartbeat is `idle` seconds old."""
    lock = env.home / "run.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    code = ("import fcntl, sys, time\nf = open(sys.argv[1], 'a')\nfcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\ntime.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    lock.write_text(f"pid {pid or holder.pid}, started 2026-01-01 00:00:00\n"
                    "stuck after 60s without progress\n")
    then = time.time() - idle
    os.utime(lock, (then, then))
    return holder


def test_a_run_without_progress_past_its_bound_is_reported_then_broken(env: Env) -> None:
    env.projects(["alpha"], schedule={"max_tasks": 1})
    holder = hold_lock(env, None, idle=150)
    try:
        doctor = subprocess.run([sys.executable, "-m", "nightshift_tasks", "doctor",
                                 f"config={env.config}"], env=env.environ(), cwd=env.tmp,
                                capture_output=True, text=True, timeout=120, check=False)
        assert re.fullmatch(rf"\[WARN\] run lock: held by a stuck run \(pid {holder.pid}, "
                            r"started 2026-01-01 00:00:00\): it has shown no progress for "
                            r"2m[34]\ds \(its bound: 1m00s\); the next run stops it and takes "
                            r"over", doctor.stdout.splitlines()[-2]), doctor.stdout
        status = subprocess.run([sys.executable, "-m", "nightshift_tasks", "status",
                                 f"config={env.config}"], env=env.environ(), cwd=env.tmp,
                                capture_output=True, text=True, timeout=120, check=False)
        assert status.stdout.splitlines()[-1].startswith("run lock: held by a stuck run (pid ")
        run = env.doit("run")
        assert re.match(rf"nightshift: the run holding the lock \(pid {holder.pid}, started "
                        r"2026-01-01 00:00:00\) is stuck: it has shown no progress for "
                        r"2m[34]\ds \(its bound: 1m00s\); stopping it and taking over\n",
                        run.stdout), run.stdout
        assert holder.wait(timeout=5) == -signal.SIGTERM
        assert run.returncode == 0, run.stdout + run.stderr
        assert len(env.calls()) == 3
        assert runlock.acquire_probe(env.home / "run.lock")
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_kept_by_leftovers_of_a_dead_run_is_broken(env: Env) -> None:
    """Its main process is gone but something it started still holds the lock: the
    heartbeat is fresh, yet the run is over."""
    env.projects(["alpha"], schedule={"max_tasks": 1})
    dead = subprocess.Popen(["true"])
    dead.wait()
    holder = hold_lock(env, dead.pid, idle=0)
    try:
        run = env.doit("run")
        assert run.stdout.startswith(f"nightshift: the run holding the lock (pid {dead.pid}, "
                                     f"started 2026-01-01 00:00:00) is stuck: its main process "
                                     f"{dead.pid} is gone, but processes it started still hold "
                                     "the lock; stopping it and taking over\n"), run.stdout
        assert holder.wait(timeout=5) == -signal.SIGTERM
        assert run.returncode == 0 and len(env.calls()) == 3
    finally:
        holder.kill()
        holder.wait()


def test_agent_calls_are_the_runs_heartbeat(tmp_path: Path) -> None:
    """A worker touches the lock it inherited at each agent call, so a long task still
    shows progress; a process that holds no lock touches nothing."""
    lock = tmp_path / "run.lock"
    script = ("import os, sys, time\nfrom pathlib import Path\n"
              "from nightshift_tasks import runlock\nfrom nightshift_tasks.process import run_process\n"
              "lock = Path(sys.argv[1])\nassert runlock.acquire(lock, 60) is None\n"
              "os.utime(lock, (time.time() - 500, time.time() - 500))\n"
              "run_process(['true'], '.', 10, os.environ)\n"
              "print(round(time.time() - lock.stat().st_mtime))\n")
    out = subprocess.run([sys.executable, "-c", script, str(lock)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
                         timeout=60, check=False)
    assert out.stdout == "0\n", out.stderr


def stop_signal_masks(pgid: int) -> dict[tuple[int, int], bool]:
    """Every thread (pid, tid) of every process in group `pgid`: whether it blocks all of
    SIGINT, SIGTERM and SIGALRM (read from SigBlk, a hex mask with bit signal - 1)."""
    wanted = sum(1 << (sig - 1) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM))
    masks = {}
    for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
        stat = stat_fields(pid)
        if stat is None or stat[2] != str(pgid):
            continue
        for tid in os.listdir(f"/proc/{pid}/task"):
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            (mask,) = re.findall(r"^SigBlk:\s*([0-9a-f]+)$", status, re.M)
            masks[pid, int(tid)] = int(mask, 16) & wanted == wanted
    return masks


def test_ctrl_c_twice_stops_the_run_its_agents_group_included_with_exit_130(env: Env) -> None:
    """Ctrl-C reaches doit's whole foreground group (main process and workers); the agent
    leaves a grandchild that ignores TERM. A second Ctrl-C during the 5 s grace must not cut
    the worker's TERM -> KILL teardown short."""
    env.projects(["alpha"])
    stubborn, termed, pidfile = env.tmp / "stubborn.py", env.tmp / "termed", env.tmp / "grandchild"
    stubborn.write_text(STUBBORN)
    agent = env.tmp / "stubborn-agent"
    agent.write_text(f'#!/bin/sh\n"{sys.executable}" "{stubborn}" "{termed}" "{pidfile}" &\nexec sleep 300\n')
    agent.chmod(0o755)
    env.write_config({"providers": {"command": {"enabled": True, "timeout": "1m",
                                                "argv": [str(agent), "{prompt}"]}}})
    run = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), "run", "-n", "2",
                            f"config={env.config}"],
                           cwd=env.tmp, env=env.environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    wait_for(pidfile.exists)
    # Every thread but the main ones blocks the stop signals, so Ctrl-C reaches the thread
    # that can act on it. (A doit worker's queue-feeder thread used to take it at random.)
    masks = stop_signal_masks(run.pid)
    # doit's main process and two workers; a queue feeder in the main and the busy worker.
    assert sorted((pid == tid, blocks) for (pid, tid), blocks in masks.items()) == [
        (False, True)] * 2 + [(True, False)] * 3
    os.killpg(run.pid, signal.SIGINT)
    wait_for(termed.exists)  # the teardown is under way: the grace has begun
    os.killpg(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, out + err
    assert len(termed.read_text().splitlines()) == 1
    grandchild = int(pidfile.read_text())
    wait_for(lambda: not alive(grandchild), timeout=10)  # a KILL lands a moment after it is sent
    # The worker recorded its own interruption: the end of the run found nothing left over.
    assert (ledger(env)["alpha:lint-fix"]["status"], ledger(env)["alpha:lint-fix"]["error"]) == (
        "interrupted", "interrupted")
    assert summary_table(out)["alpha"]["interrupted"] == "1"
