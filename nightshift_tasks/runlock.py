"""One `doit run` at a time: an exclusive flock on $NIGHTSHIFT_HOME/run.lock.

The kernel drops the lock when the process dies, so a crash never leaves it stuck. The file
says who holds it, for the message a second run prints. `doit list`, `status` and `budget`
never take it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from nightshift_tasks import state, storage

_held: IO[str] | None = None  # kept open for the life of the run


def holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


def acquire(path: Path) -> str | None:
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
    handle.write(f"pid {os.getpid()}, started {state.stamp(state.now())}\n")
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
