"""Where one task's time goes under `run -n K`, measured inside doit's workers.

bench/parallel.py says how far the makespan is from its lower bound, and how much of that
bare doit shows too. This says what nightshift's share is made of. It runs `run -n K` over
N fresh repositories with parallel.py's fake agent (0.2 s, 3 calls per task), in this
process, with the steps of the doit action wrapped before doit forks its workers, and
prints per task (means over the N tasks):

  steps        wall and CPU ms of each step of the action, the agent calls included (the
               fake agent's own 0.2 s is in `one agent call`, not in `its overhead`)
  ledger lock  the write transactions: how long BEGIN IMMEDIATE waited for the lock and
               how long the lock was then held, per task and as percentiles
  children     the CPU of the processes each step started and reaped: git's, and for an
               agent call the gate's `sh` and the fake agent's own (`sh`, `date`, `sleep`)

The wrappers cost a few microseconds per step; the timings stay in memory until a task
ends.

Usage: python bench/task_cost.py [-k K] [-n N]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from parallel import fake_agent, machine, make_repos, write_config  # bench/ is sys.path[0]
from tabulate import tabulate

from nightshift_tasks import cli, db, execute, git, loop, process, provider_agent, publish, state

Agent = provider_agent.ProviderAgent
STEPS: list[tuple[Any, str, str]] = [  # (owner, attribute, label); a dot: inside the one above
    (execute, "_run_task", "the whole action"),
    (state, "connect", "open the ledger"),
    (execute, "_begin", "claim, chain, attempt: 1 transaction"),
    (Agent, "reserve", "budget reservation: 1 transaction"),
    (publish, "preflight", "PR cap check"),
    (git, "base_commit", "base commit (from git's files)"),
    (git, "add_worktree", "make the worktree (1 git process)"),
    (loop, "run_loop", "plan, implement, review"),
    (Agent, "_once", "· one agent call"),
    (process, "run_process", "· · its process: gate, wait, teardown"),
    (subprocess.Popen, "__init__", "· · · start a process"),
    (state, "set_agent_pgid", "· · record the agent's group: 1 transaction"),
    (state, "record_call", "· · record the call: 1 transaction"),
    (publish, "publish", "publish (git status finds no change)"),
    (git, "remove_worktree", "remove the worktree"),
    (execute, "_end", "release, outcome, unclaim: 1 transaction"),
]
TOP = [label for _, _, label in STEPS[1:] if not label.startswith("·")]  # the action's own steps

# Filled in each worker; written to OUT/<pid> when a task ends.
_steps: list[tuple[str, float, float, float]] = []  # label, wall, cpu, its children's cpu
_locks: list[tuple[float, float]] = []  # (wait, hold) seconds per transaction
_spawned: list[str] = []
_began: list[float] = []  # the running transaction: [asked at, got at]


def _program(args: Any) -> str:
    argv = [os.fsdecode(a) for a in ([args] if isinstance(args, str | bytes | os.PathLike) else args)]
    name = os.path.basename(argv[0])
    if name == "sh" and len(argv) > 2 and argv[2] == process.GATE:
        return "gate, exec'ing the agent"
    if name != "git":
        return name
    words = iter(argv[1:])
    for word in words:  # the subcommand: the first word that is not an option
        if word in ("-c", "-C"):
            next(words, None)
        elif not word.startswith("-"):
            return f"git {word}"
    return "git"


def _timed(label: str, func: Callable[..., Any]) -> Callable[..., Any]:
    spawns = func is subprocess.Popen.__init__  # also note which program it starts

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if spawns:
            _spawned.append(_program(args[1] if len(args) > 1 else kwargs["args"]))
        wall, cpu, children = time.perf_counter(), time.process_time(), _children()
        try:
            return func(*args, **kwargs)
        finally:
            _steps.append((label, time.perf_counter() - wall, time.process_time() - cpu,
                           _children() - children))
    return wrapper


def _children() -> float:
    """CPU seconds of the children this process has reaped."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _whole(out: Path, func: Callable[..., Any]) -> Callable[..., Any]:
    """The action: this task's records, written out at its end."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for records in (_steps, _locks, _spawned, _began):
            records.clear()  # a worker is forked with what its parent recorded
        try:
            return func(*args, **kwargs)
        finally:
            with (out / str(os.getpid())).open("a") as fh:
                fh.write("task\n")
                fh.writelines("step\t" + "\t".join(map(str, step)) + "\n" for step in _steps)
                fh.writelines(f"lock\t{wait}\t{hold}\n" for wait, hold in _locks)
                fh.writelines(f"spawn\t{name}\n" for name in _spawned)
    return wrapper


def _execute(func: Callable[..., Any]) -> Callable[..., Any]:
    """The ledger's SQL: BEGIN IMMEDIATE's wait for the write lock, and the hold until the
    transaction ends."""
    @functools.wraps(func)
    def wrapper(self: Any, sql: str, *args: Any) -> Any:
        asked = time.perf_counter()
        try:
            return func(self, sql, *args)
        finally:
            if sql == "BEGIN IMMEDIATE":
                _began[:] = [_began[0] if _began else asked, time.perf_counter()]
            elif sql in ("COMMIT", "ROLLBACK") and _began:
                _locks.append((_began[1] - _began[0], time.perf_counter() - _began[1]))
                _began.clear()
    return wrapper


def instrument(out: Path) -> None:
    """Wrap every step, and rebind the names other modules imported it under."""
    modules = [m for name, m in sys.modules.items() if name.startswith("nightshift_tasks")]
    for owner, attribute, label in STEPS:
        original = getattr(owner, attribute)
        wrapped = _timed(label, original)
        if attribute == "_run_task":
            wrapped = _whole(out, wrapped)
        setattr(owner, attribute, wrapped)
        for module in modules:
            for name, value in list(vars(module).items()):
                if value is original:
                    setattr(module, name, wrapped)
    db.Ledger.execute = _execute(db.Ledger.execute)  # type: ignore[method-assign]


@contextlib.contextmanager
def quiet(log: Path) -> Iterator[None]:
    """The run's output (and its workers') to a file."""
    saved = [os.dup(1), os.dup(2)]
    with log.open("w") as fh:
        os.dup2(fh.fileno(), 1), os.dup2(fh.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)


def read(out: Path) -> tuple[int, dict[str, list[float]], list[tuple[float, float]], dict[str, int]]:
    """Per step: [times, wall, cpu, children's cpu] summed over the tasks; the transactions;
    the processes started, by program."""
    tasks = 0
    steps: dict[str, list[float]] = defaultdict(lambda: [0.0] * 4)
    locks: list[tuple[float, float]] = []
    spawns: dict[str, int] = defaultdict(int)
    for path in out.iterdir():
        for line in path.read_text().splitlines():
            kind, *rest = line.split("\t")
            if kind == "task":
                tasks += 1
            elif kind == "step":
                steps[rest[0]] = [a + b for a, b in zip(steps[rest[0]], [1.0, *map(float, rest[1:])],
                                                        strict=True)]
            elif kind == "lock":
                locks.append((float(rest[0]), float(rest[1])))
            else:
                spawns[rest[0]] += 1
    return tasks, steps, locks, spawns


def _percentile(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(p * len(values)))]


def report(out: Path, n: int) -> None:
    tasks, steps, locks, spawns = read(out)
    if tasks != n:
        sys.exit(f"bench/task_cost.py: {tasks} tasks recorded, expected {n}")
    whole = steps.pop("the whole action")
    top = [steps[label] for label in TOP if label in steps]
    rest = [whole[0], *(whole[i] - sum(step[i] for step in top) for i in (1, 2, 3))]
    listed = [(label, steps[label]) for _, _, label in STEPS[1:] if label in steps]
    listed += [("the rest of the action", rest), ("the whole action", whole)]
    # per task: times, then wall, cpu and children's cpu in ms
    rows = [[label, values[0] / n, *(v / n * 1000 for v in values[1:])] for label, values in listed]
    print(f"\nper task (means over {n} tasks), in the worker; children: the CPU of the processes "
          "the step started and reaped")
    print(tabulate(rows, headers=["step", "times", "wall ms", "cpu ms", "children cpu ms"], floatfmt=".2f"))
    calls, inner = steps["· one agent call"], steps["· · its process: gate, wait, teardown"]
    print(f"an agent call beyond its process: {(calls[1] - inner[1]) / calls[0] * 1000:.2f} ms wall, "
          f"{(calls[2] - inner[2]) / calls[0] * 1000:.2f} ms cpu")
    started = sorted(spawns.items())
    print("processes per task: " + ", ".join(f"{name} {count / n:g}" for name, count in started))

    waits, holds = [w * 1000 for w, _ in locks], [h * 1000 for _, h in locks]
    print(f"\nledger write lock: {len(locks) / n:.1f} transactions per task")
    print(tabulate([[label, sum(v) / n, *(_percentile(v, p) for p in (.5, .9, .99)), max(v)]
                    for label, v in (("wait for it", waits), ("hold it", holds))],
                   headers=["", "ms per task", "p50 ms", "p90 ms", "p99 ms", "max ms"], floatfmt=".2f"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", type=int, default=16, help="doit workers (run -n K)")
    parser.add_argument("-n", type=int, default=64, help="projects, one task each")
    args = parser.parse_args()
    print(f"{machine()}; run -n {args.k} over {args.n} projects", flush=True)
    with tempfile.TemporaryDirectory(prefix="ns-cost-") as tmp:
        root = Path(tmp).resolve()
        agent = fake_agent(root)
        repos = make_repos(root, args.n)
        config = write_config(root / "nightshift.yaml", repos, agent)
        out = root / "timings"
        out.mkdir()
        os.environ.update(NIGHTSHIFT_HOME=str(root / "home"), BENCH_RECORD=str(root / "agent.rec"))
        instrument(out)
        with quiet(root / "run.log"):
            try:
                code = cli.main(["run", "-n", str(args.k), f"config={config}"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        if code != 0:
            sys.exit(f"bench/task_cost.py: the run exited {code}:\n{(root / 'run.log').read_text()[-3000:]}")
        report(out, args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
