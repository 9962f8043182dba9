"""How any process of a run reacts to SIGTERM/SIGINT: once, with a watchdog that bounds the
orderly stop; and how it stops the children it leaves (as a subreaper on Linux, so even
agents that escaped their process group are found).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType

GRACE_SECONDS = 5.0
# A signalled run is gone within this: its workers' agents get GRACE_SECONDS, the rest is
# doit's own bookkeeping. The watchdog enforces it.
SHUTDOWN_SECONDS = GRACE_SECONDS + 3.0
EXIT_INTERRUPTED = 130
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

# Main process: "loading" (nothing started yet: a signal just exits), "running" (it
# interrupts the run), "finishing" (the summary is being written: it only makes the exit
# status 130). Workers: "worker".
_phase = "worker"
_signalled = 0
_signalled_at = 0.0
_subreaper_pid = 0
TICK_SECONDS = 0.25
# Only the main thread may take these: see main_thread_takes_signals.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGALRM})
_thread_start = threading.Thread.start


def set_phase(phase: str) -> None:
    global _phase
    _phase = phase
    if _signalled:
        _arm()  # no more quick ticks once the summary is being written


def signalled() -> int:
    """The first SIGTERM/SIGINT this process received, or 0."""
    return _signalled


def reset_signals() -> None:
    """A freshly forked worker starts unsignalled (it inherits its parent's state)."""
    global _signalled, _phase
    _signalled, _phase = 0, "worker"


def _interrupt() -> None:
    if _phase == "loading":
        raise SystemExit(EXIT_INTERRUPTED)
    if _phase in ("running", "worker"):
        raise KeyboardInterrupt(f"signal {_signalled}")


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """The first signal starts the stop and arms the watchdog; later ones are ignored, so a
    second Ctrl-C or a TERM from doit cannot cut an agent's TERM -> KILL teardown short."""
    global _signalled, _signalled_at
    if _signalled:
        return
    _signalled, _signalled_at = signum, time.monotonic()
    signal.signal(signal.SIGALRM, _tick)
    _arm()
    _interrupt()


def _arm() -> None:
    """One-shot timers only: a process that ends before its deadline must not be left with
    a periodic SIGALRM that would kill it during interpreter shutdown."""
    left = SHUTDOWN_SECONDS - (time.monotonic() - _signalled_at)
    if _phase in ("loading", "running"):
        left = min(left, TICK_SECONDS)
    signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))


def _tick(signum: int, frame: FrameType | None) -> None:
    """The watchdog (SIGALRM, no thread: starting one inside a handler can deadlock).

    In the main process it raises the interrupt again while the run has not reached its
    summary: Python drops an exception raised where it cannot propagate (an at-fork hook,
    a __del__), which is where a signal during doit's start-up often lands.
    """
    if time.monotonic() - _signalled_at >= SHUTDOWN_SECONDS:
        hard_stop()
    _arm()
    if _phase in ("loading", "running"):
        _interrupt()


def _start_blocking_stop_signals(self: threading.Thread) -> None:
    """Thread.start with the stop signals blocked meanwhile: the new thread is born with
    its creator's mask, so it keeps them blocked for good."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        _thread_start(self)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def main_thread_takes_signals() -> None:
    """From now on, every thread this process (or a fork of it) starts blocks
    STOP_SIGNALS, so the kernel hands a signal sent to the process to its main thread.

    Python runs handlers in the main thread only, and a signal that lands on another one
    does not wake the main thread from a system call: a doit worker's queue-feeder thread
    took Ctrl-C while the main thread sat in select() on the agent, which then ran until
    its timeout. Threads come from multiprocessing as well as from us, so Thread.start
    itself is wrapped."""
    threading.Thread.start = _start_blocking_stop_signals  # type: ignore[method-assign]


def interrupt_on_term() -> None:
    """Treat SIGTERM like Ctrl-C, and either of them only once.

    doit saves its state and stops its workers on KeyboardInterrupt but not on SIGTERM, and
    run_process takes an agent's whole process group down on KeyboardInterrupt. Installed in
    doit's main process and in each worker, whatever the start method.
    """
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)


def hard_stop() -> None:
    """The watchdog, SHUTDOWN_SECONDS after the first signal: KILL everything we started and
    exit. No stdio flush: the main thread may hold its lock, stuck on a full pipe."""
    signal.setitimer(signal.ITIMER_REAL, 0)
    os.write(2, f"nightshift: the orderly stop took over {SHUTDOWN_SECONDS:g}s; killing what "
                "is left\n".encode())
    stop_children(0.0)
    os._exit(EXIT_INTERRUPTED)


def _prctl(option: int, value: int) -> bool:
    with contextlib.suppress(OSError, AttributeError):
        return int(ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)) == 0
    return False


def become_subreaper() -> None:
    """Linux: orphans among our descendants (a grandchild that called setsid() and whose
    parent exited) are re-parented to us instead of init, so stop_children can find them.
    Not inherited across fork: each process that wants it calls this."""
    global _subreaper_pid
    if _prctl(PR_SET_CHILD_SUBREAPER, 1):
        _subreaper_pid = os.getpid()


def children(zombies: bool = False) -> list[int]:
    """Our child processes (empty where /proc is missing). Read from the kernel's list of
    each of our threads' children, which costs microseconds; a kernel without that file
    costs a scan of every process in /proc. Called several times per agent call."""
    me = os.getpid()
    try:
        found = [int(pid) for tid in os.listdir(f"/proc/{me}/task")
                 for pid in Path(f"/proc/{me}/task/{tid}/children").read_text().split()]
    except (OSError, ValueError):
        found = _scan_children(me)
    return found if zombies else [pid for pid in found if (stat_fields(pid) or ["Z"])[0] != "Z"]


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, ...), or
    None once the process is gone. The name is cut at its last ")": it may hold any other."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _scan_children(me: int) -> list[int]:
    """Every process whose parent is `me`, found by reading each /proc/<pid>/stat."""
    try:
        pids = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return []
    return [int(pid) for pid in pids if (stat_fields(pid) or ["", ""])[1] == str(me)]


def _signal_child(pid: int, sig: int) -> None:
    """A child leading its own group (an agent, a setsid() escapee) is signalled with its
    whole group; any other (a doit worker, in our group) alone. A child never leads our
    own group, so that needs no check."""
    with contextlib.suppress(OSError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop_children(grace: float = GRACE_SECONDS, keep: frozenset[int] = frozenset()) -> None:
    """TERM each child of ours not in `keep`, KILL whatever is left after `grace` seconds,
    including children adopted meanwhile (as a subreaper). Bounded: gives up a second after
    the KILL on anything the kernel has not removed (uninterruptible sleep)."""
    deadline = time.monotonic() + grace
    termed: set[int] = set()
    while time.monotonic() < deadline + 1.0:
        live = [pid for pid in children() if pid not in keep]
        if not live:
            return
        for pid in live:
            if time.monotonic() >= deadline:
                _signal_child(pid, signal.SIGKILL)
            elif pid not in termed:
                _signal_child(pid, signal.SIGTERM)
                termed.add(pid)
        time.sleep(0.02)


def sweep(keep: frozenset[int], grace: float) -> None:
    """After an agent's group is gone: stop and reap the descendants it left that escaped
    the group (setsid) and were re-parented to us."""
    if _subreaper_pid != os.getpid():
        return
    stop_children(grace, keep)
    for pid in set(children(zombies=True)) - keep:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def die_with_parent() -> None:
    """In a doit worker on Linux: have the kernel send us SIGTERM when doit's main process
    dies, so a `kill -9` of it still stops the workers and, through them, the agents."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return  # serial mode: this is doit's main process
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent.pid:  # it was already gone
        raise KeyboardInterrupt("doit's main process is gone")
