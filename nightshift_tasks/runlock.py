"""One `doit run` at a time: an exclusive flock on $NIGHTSHIFT_HOME/run.lock.

The kernel drops the lock when the last process holding it (doit's main process and its
forked workers) dies. The file's first line says who holds it, for the message a second run
prints; the second, after how long without progress the holder counts as stuck. Its mtime
is the heartbeat: every process of the run touches it at each task and agent-call boundary.
`doit list`, `status` and `budget` never take it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path
from typing import IO

from nightshift_tasks import state, storage

_held: IO[str] | None = None  # kept open for the life of the run


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def holder(path: Path) -> str:
    return (_text(path).strip().splitlines() or ["unknown"])[0]


def holder_pid(path: Path) -> int | None:
    found = re.match(r"pid (\d+),", _text(path))
    return int(found[1]) if found else None


def stuck_after(path: Path) -> float | None:
    """The holder's own bound on a gap between heartbeats (seconds), if it wrote one."""
    found = re.search(r"^stuck after (\d+)s without progress$", _text(path), re.MULTILINE)
    return float(found[1]) if found else None


def held() -> bool:
    """Whether this process (or, in a forked worker, its run) took the lock."""
    return _held is not None


def beat() -> None:
    """Heartbeat: the run holding the lock made progress. A no-op outside a run."""
    if _held is not None:
        with contextlib.suppress(OSError, ValueError):
            os.utime(_held.fileno())


def acquire(path: Path, stuck_seconds: float) -> str | None:
    """Take the lock for this process; None on success, else who holds it."""
    global _held
    storage.private_dir(path.parent)
    handle = storage.private_open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return holder(path)
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}, started {state.stamp(state.now())}\n"
                 f"stuck after {stuck_seconds:.0f}s without progress\n")
    handle.flush()
    _held = handle
    return None


def acquire_probe(path: Path) -> bool:
    """Whether the lock is free right now (taken and released at once)."""
    if not path.exists():
        return True
    with path.open("a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True
