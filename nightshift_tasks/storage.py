"""Faults of our own files (state database, logs, reports, run lock) as one clear line.

Disk full, a read-only or unwritable home, a database another process keeps locked and a
corrupt database are faults of the machine, not bugs: every entry point (doit's load, the
reporter, the task action, our commands) turns them into a StorageError that names the file
and what to do, and exits EXIT_STORAGE without a traceback. A corrupt database is moved
aside, never overwritten, for `doctor` to report. Our files are private: directories 0700,
files 0600, set explicitly so the agent's own files keep the user's umask.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import sqlite3
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any, NoReturn

EXIT_STORAGE = 4
CORRUPT_SUFFIX = ".corrupt-"
_ERRNO_ADVICE = {
    errno.ENOSPC: ("the disk is full", "free space on it, then rerun"),
    errno.EDQUOT: ("the disk quota is used up", "free space or raise the quota, then rerun"),
    errno.EFBIG: ("the file size limit is reached", "raise the limit (ulimit -f), then rerun"),
    errno.EROFS: ("the file system is read-only",
                  "remount it read-write or point $NIGHTSHIFT_HOME elsewhere"),
    errno.EACCES: ("permission denied", "fix its permissions or point $NIGHTSHIFT_HOME elsewhere"),
    errno.EPERM: ("permission denied", "fix its permissions or point $NIGHTSHIFT_HOME elsewhere"),
    errno.EIO: ("an I/O error occurred", "check the disk (dmesg), then rerun"),
}
CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


class StorageError(Exception):
    """A storage fault, as the one line that says which file and what to do."""

    exit_code = EXIT_STORAGE


class Unreachable(StorageError):
    """The fleet's database server cannot be reached (or used) at the start: nothing runs."""

    exit_code = 1


def shown(location: str | Path) -> str:
    """The database's location without a password, for messages and logs."""
    return re.sub(r"^(\w+://[^:/@]*):[^@]*@", r"\1@", str(location))


def fail(fault: StorageError) -> NoReturn:
    """Print the fault's line and exit EXIT_STORAGE: the end of every entry point's fault."""
    print(f"nightshift: {fault}", file=sys.stderr)
    sys.exit(fault.exit_code)


def _os_fault(exc: OSError, path: Path) -> StorageError | None:
    if exc.errno not in _ERRNO_ADVICE:
        return None
    what, fix = _ERRNO_ADVICE[exc.errno]
    return StorageError(f"cannot write {exc.filename or path}: {what}; {fix}")


def _probe(directory: Path) -> OSError | None:
    """Why the database's directory takes no new data (SQLite only says "cannot open" or
    "disk I/O error"): None when a one-byte file can be written there."""
    probe = directory / f".nightshift-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"\0")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        return exc
    return None


def describe(exc: BaseException, location: str | Path) -> StorageError | None:
    """The StorageError for `exc` (location names the database), or None when it is no
    storage fault (a bug of ours stays a traceback)."""
    if isinstance(exc, StorageError):
        return exc
    if type(exc).__name__ == "OperationalError" and type(exc).__module__.startswith("psycopg"):
        line = (str(exc).strip().splitlines() or ["connection lost"])[0]
        return StorageError(f"state database {shown(location)}: {line}")
    db_path = Path(location)
    if isinstance(exc, OSError):
        return _os_fault(exc, db_path)
    if not isinstance(exc, sqlite3.Error):
        return None
    name = getattr(exc, "sqlite_errorname", "")
    if name in CORRUPT:
        return StorageError(f"state database {db_path} is corrupt ({exc}); run "
                            "`nightshift-tasks doctor`, which moves it aside and reports it")
    if name == "SQLITE_FULL":
        return _os_fault(OSError(errno.ENOSPC, "", str(db_path)), db_path)
    if name.startswith("SQLITE_BUSY"):
        return StorageError(f"state database {db_path} is locked by another process; "
                            f"find it with `fuser {db_path}`, let it finish, then rerun")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_IOERR")):
        cause = _probe(db_path.parent)
        found = _os_fault(OSError(cause.errno if cause else errno.EIO, "", str(db_path)), db_path)
        return found or StorageError(f"cannot open state database {db_path} ({exc}); "
                                     "check the file and its directory")
    return None


@contextlib.contextmanager
def faults(location: str | Path) -> Iterator[None]:
    """Storage faults raised inside become StorageError; anything else passes unchanged."""
    try:
        yield
    except Exception as exc:
        fault = describe(exc, location)
        if fault is None:
            raise
        raise fault from exc


@contextlib.contextmanager
def or_exit(path: str | Path) -> Iterator[None]:
    """At an entry point: a storage fault inside prints its line and exits EXIT_STORAGE."""
    try:
        with faults(path):
            yield
    except StorageError as exc:
        fail(exc)


def quarantine(db_path: Path, at: datetime) -> Path:
    """Move a corrupt database (and its WAL files) aside; it is evidence, never overwritten."""
    moved = db_path.with_name(f"{db_path.name}{CORRUPT_SUFFIX}{at:%Y%m%d-%H%M%S}")
    for n in itertools.count(2):
        if not moved.exists():
            break
        moved = moved.with_name(f"{db_path.name}{CORRUPT_SUFFIX}{at:%Y%m%d-%H%M%S}-{n}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{db_path}{suffix}")
        if part.exists():
            part.rename(f"{moved}{suffix}")
    return moved


def quarantined(db_path: Path) -> list[Path]:
    """Databases moved aside as corrupt, oldest first (their WAL files not listed)."""
    return sorted(p for p in db_path.parent.glob(f"{db_path.name}{CORRUPT_SUFFIX}*")
                  if not p.name.endswith(("-wal", "-shm")))


def private_dir(path: Path) -> Path:
    """Create `path` and its missing parents 0700: only the user reads ledger, logs, reports."""
    for level in [*reversed(path.parents), path]:
        if not level.is_dir():
            level.mkdir(mode=0o700, exist_ok=True)
    return path


def private_file(path: Path) -> Path:
    """Create `path` 0600 if it is missing (a later open keeps the mode); parents 0700.

    An existing file is not even opened: closing any descriptor of a file drops every POSIX
    lock this process holds on it, and SQLite's locks are POSIX locks.
    """
    private_dir(path.parent)
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process was quicker
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return path


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def private_open(path: Path, mode: str) -> IO[Any]:
    """open() for a text file of ours: created 0600."""
    return open(path, mode, encoding="utf-8", opener=_private_opener)
