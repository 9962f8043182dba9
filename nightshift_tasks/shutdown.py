"""How a `doit run` ends on a signal at any moment, and how a stuck run is told from a
working one.

doit's main process forks its workers one by one while it dispatches the first jobs. A
signal in that stretch used to leave forked workers blocked on doit's job queue with no one
to stop them, and the main process joining them forever while it held the run lock. So:
the handlers are installed before anything else; every forked worker sets up its own
signal handling, parent-death signal and subreaper status inside fork itself, before any of
doit's code runs in it; and the end of a run stops every child left, with a bound.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.util
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from nightshift_tasks import process, runlock, signals
from nightshift_tasks.durations import format_duration, parse_duration

if TYPE_CHECKING:  # config pulls in jsonschema: too slow before the handlers are on
    from nightshift_tasks.config import Config

IDLE_SLACK_SECONDS = 600.0

_main_pid = 0
_forking_from = 0
_deferred = 0  # a signal a new worker got before it could act on one


class _Ready:
    """multiprocessing runs its after-fork callbacks inside the worker's bootstrap, where an
    exit is clean; it needs a weak-referenceable owner for them."""


_READY = _Ready()


def guard_main() -> None:
    """In doit's main process, first thing: signals exit 130 from here on."""
    global _main_pid
    if _main_pid == os.getpid():
        return
    _main_pid = os.getpid()
    signals.main_thread_takes_signals()  # before any thread of the run is started
    signals.set_phase("loading")
    signals.interrupt_on_term()
    signals.become_subreaper()  # a killed worker's agents come to us, not to init
    sys.excepthook = _excepthook
    atexit.register(_at_exit)
    os.register_at_fork(before=_before_fork, after_in_child=_in_new_worker)
    multiprocessing.util.register_after_fork(_READY, _worker_ready)


def _excepthook(kind: type[BaseException], value: BaseException,
                tb: TracebackType | None) -> None:
    """A signal's KeyboardInterrupt that escaped doit (it landed in doit's own bookkeeping
    between tasks): exit 130 like every other interrupted run, not -2 with a traceback."""
    if issubclass(kind, KeyboardInterrupt) and signals.signalled():
        signals.stop_children()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(signals.EXIT_INTERRUPTED)
    sys.__excepthook__(kind, value, tb)


def _at_exit() -> None:
    """Last thing before the interpreter shuts down: no child of ours may outlive us.

    After a signal, also the end: exit 130 now. What is left is multiprocessing's own
    clean-up, which joins queue threads that a signal during doit's start-up can leave
    waiting forever, and the interpreter's reset of the handlers, after which a pending
    watchdog alarm would kill us instead."""
    signals.stop_children()
    if signals.signalled():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(signals.EXIT_INTERRUPTED)


def _before_fork() -> None:
    global _forking_from
    _forking_from = os.getpid()


def _defer(signum: int, frame: FrameType | None) -> None:
    global _deferred
    _deferred = _deferred or signum


def _in_new_worker() -> None:
    """In the child, inside os.fork(), before any Python code of doit runs there. A signal
    now would raise in code that would carry on as a copy of the main process, so it is only
    noted until the worker is in multiprocessing's bootstrap."""
    global _deferred
    if _forking_from != _main_pid:
        return  # a fork made by a worker, not one of doit's workers
    _deferred = 0
    signals.reset_signals()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _defer)
    signals._prctl(signals.PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != _main_pid:
        _deferred = signal.SIGTERM  # the main process died before the line above
    signals.become_subreaper()


def _worker_ready(owner: _Ready) -> None:
    """Inside the worker's bootstrap: real handlers on, and a noted signal acted on."""
    signals.interrupt_on_term()
    if _deferred:
        raise SystemExit(signals.EXIT_INTERRUPTED)


def stop_workers() -> None:
    """At the end of a run: stop every child still there, with a bound. After a signal in
    doit's start-up, the workers it already forked are ones doit itself never stops."""
    signals.stop_children(signals.SHUTDOWN_SECONDS - 2.0)


def progress_bound(config: Config) -> float:
    """How long a run may go without a heartbeat before it counts as stuck: an agent call
    and a retry wait each last at most the longest provider timeout, plus slack for git,
    publishing and doit's own work."""
    providers = config.section("providers")
    longest = max((parse_duration(providers[name]["timeout"]) for name in providers["preference"]
                   if providers[name].get("enabled")), default=0.0)
    return 2 * longest + IDLE_SLACK_SECONDS


def stuck(lock: Path) -> str | None:
    """Why the run holding the lock counts as stuck, or None (free, or working)."""
    if runlock.acquire_probe(lock):
        return None
    pid = runlock.holder_pid(lock)
    if pid and not process.alive(pid):
        return f"its main process {pid} is gone, but processes it started still hold the lock"
    bound = runlock.stuck_after(lock)
    with contextlib.suppress(OSError):
        idle = time.time() - lock.stat().st_mtime
        if bound and idle > bound:
            return f"it has shown no progress for {format_duration(idle)} (its bound: " \
                   f"{format_duration(bound)})"
    return None


def _lock_holders(lock: Path) -> list[int]:
    """The processes with the lock file open: the stuck run's main process and workers."""
    target, found = str(lock.resolve()), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) == target for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
    return found


def take_over(lock: Path) -> None:
    """Stop a stuck run: TERM to every process holding its lock, which then stop their
    agents; KILL what is left after the bound. The new run's recovery then stops any
    agent group the ledger still names."""
    holders = _lock_holders(lock)
    for pid in holders:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + signals.SHUTDOWN_SECONDS
    while time.monotonic() < deadline and any(process.alive(pid) for pid in holders):
        time.sleep(0.05)
    for pid in holders:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and not runlock.acquire_probe(lock):
        time.sleep(0.02)
