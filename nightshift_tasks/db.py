"""The state database's connection, transactions and migrations: the only place that knows
which server holds the ledger.

The location is a file path (the embedded SQLite, the default) or a `postgresql://` URL
(`state.database`: one ledger for a fleet of machines, see postgres.py). Every query of the
ledger is written once in the SQL both speak (`?` placeholders, `ON CONFLICT`, `RETURNING`);
connections run in autocommit mode, and every write is one short transaction, never held
across an agent run.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from nightshift_tasks import storage
from nightshift_tasks.migrations import MIGRATIONS

BUSY_TIMEOUT_MS = 2000  # waited quietly; a longer wait prints a note
URL_SCHEMES = ("postgresql://", "postgres://")


def now() -> datetime:
    return datetime.now().astimezone()


def stamp(moment: datetime) -> str:
    """Local time with offset: sortable within one zone, unambiguous across zones."""
    return moment.isoformat(timespec="milliseconds")


def host_id() -> str:
    """This machine's name in a fleet's ledger: $NIGHTSHIFT_HOST_ID, else the host name."""
    return os.environ.get("NIGHTSHIFT_HOST_ID") or socket.gethostname()


def run_id(at: datetime, location: str | Path) -> str:
    """The run's id: its start and pid, and on a fleet's ledger its host (as file names may
    spell it), as pids of two machines may coincide."""
    host = re.sub(r"[^A-Za-z0-9._-]", "_", host_id()) if is_server(location) else ""
    return f"{at:%Y%m%d-%H%M%S}-{os.getpid()}" + (f"-{host}" if host else "")


def on_server(conn: Conn) -> bool:
    """Whether the connection is to a fleet's database server."""
    return not isinstance(conn, sqlite3.Connection)


def is_server(location: str | Path) -> bool:
    """Whether the ledger lives on a database server (a fleet's), not in a local file."""
    return str(location).startswith(URL_SCHEMES)


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """What the ledger's queries use of a connection: sqlite3's, or postgres.Ledger."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...

    @property
    def in_transaction(self) -> bool: ...

    def close(self) -> None: ...


class Ledger(sqlite3.Connection):
    """A connection that knows its file and how long a write waits for another process."""

    path = Path()
    lock_wait = 0.0


def connect(location: str | Path, lock_wait: float = 0.0, check: bool = False) -> Conn:
    """Open (creating and migrating if needed) the state database at `location`.

    A write waits up to `lock_wait` seconds in all for another process (SQLite: for its
    lock; PostgreSQL: for the server, when the connection was lost). Every storage fault is
    raised as a StorageError.
    """
    if is_server(location):
        from nightshift_tasks import postgres  # the optional extra: only a fleet needs it

        conn = postgres.connect(str(location), lock_wait)
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn
    return _connect_file(Path(location), lock_wait, check)


def _connect_file(db_path: Path, lock_wait: float, check: bool) -> Conn:
    """SQLite, created 0600. A database found corrupt (`check`: also page by page, as every
    command does once before it trusts the ledger) is moved aside, never written to."""
    with storage.faults(db_path):
        storage.private_file(db_path)
        conn = sqlite3.connect(db_path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                               factory=Ledger)
        conn.path, conn.lock_wait = db_path, lock_wait
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            found = conn.execute("PRAGMA quick_check").fetchone()[0] if check else "ok"
            if found != "ok":
                raise sqlite3.DatabaseError(found)
            migrate(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if getattr(exc, "sqlite_errorname", "SQLITE_CORRUPT") not in storage.CORRUPT:
                raise
            moved = storage.quarantine(db_path, now())
            raise storage.StorageError(
                f"state database {db_path} is corrupt ({exc}); moved aside to {moved}; "
                "`nightshift-tasks doctor` reports it, and the next run starts a fresh "
                "ledger") from exc
        except BaseException:
            conn.close()
            raise
    return conn


def _busy(exc: sqlite3.Error) -> bool:
    return str(getattr(exc, "sqlite_errorname", "")).startswith("SQLITE_BUSY")


def _begin_file(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE; past the quiet busy timeout, say so and wait out the rest of the
    connection's lock_wait, then give up with a StorageError."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        return
    except sqlite3.OperationalError as exc:
        if not isinstance(conn, Ledger) or not _busy(exc):
            raise
        rest = conn.lock_wait - BUSY_TIMEOUT_MS / 1000
        if rest > 0:
            print(f"nightshift: waiting up to {conn.lock_wait:g}s for {conn.path}: another process "
                  "holds its write lock", file=sys.__stderr__, flush=True)
            conn.execute(f"PRAGMA busy_timeout={int(rest * 1000)}")
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as again:
                if not _busy(again):
                    raise
            finally:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        raise storage.StorageError(
            f"state database {conn.path} stayed locked by another process for "
            f"{max(conn.lock_wait, BUSY_TIMEOUT_MS / 1000):g}s; find it with `fuser {conn.path}`, "
            "let it finish or stop it, then rerun (budget.db_lock_wait sets the wait)") from exc


@contextlib.contextmanager
def write(conn: Conn, lock: str | None = None) -> Iterator[Conn]:
    """One short write transaction. A check and the write it allows are atomic: on SQLite
    every writer queues up front (BEGIN IMMEDIATE); on PostgreSQL the writers of one `lock`
    ("budget claude", "claim /path") queue for it, fleet-wide, and the rest only take the
    locks of the rows they change. Inside another write it is part of that transaction
    (taking `lock` too): so a task's start and its end are two transactions, not seven."""
    if conn.in_transaction:
        if lock is not None and not isinstance(conn, sqlite3.Connection):
            conn.hold(lock)  # type: ignore[attr-defined]
        yield conn
        return
    if isinstance(conn, sqlite3.Connection):
        _begin_file(conn)
    else:
        conn.begin(lock)  # type: ignore[attr-defined]
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may already have rolled back (a full disk)
            conn.execute("ROLLBACK")
        raise


def write_one(conn: Conn, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
    """One idempotent statement (an UPDATE or DELETE that may safely run twice) as a write
    of its own (or a part of the write it is in): on a server it commits by itself."""
    if isinstance(conn, sqlite3.Connection) or conn.in_transaction:
        with write(conn):
            return conn.execute(sql, parameters)
    return conn.execute_alone(sql, parameters)  # type: ignore[attr-defined, no-any-return]


def migrate(conn: Conn) -> None:
    """Apply the migrations this database lacks. On a server, machines starting together
    all do it under the write lock: its DDL is transactional, and CREATE ... IF NOT EXISTS
    alone races there."""
    server = on_server(conn)
    if server and _current(conn) >= len(MIGRATIONS):  # the usual case: no lock, two reads
        return
    if not server:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                     "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
        if _current(conn) >= len(MIGRATIONS):
            return
    with write(conn, "migrations"):
        if server:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                         "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
        current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(server_ddl(statement) if server else statement)
            conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, stamp(now())))


def _current(conn: Conn) -> int:
    """The schema's version (0: none yet)."""
    if on_server(conn) and conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
        return 0
    return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])


def server_ddl(statement: str) -> str:
    """A migration's statement as PostgreSQL spells it: 64-bit integers, identity keys,
    double precision, and `offset` (a reserved word there) quoted."""
    return (statement.replace("INTEGER PRIMARY KEY AUTOINCREMENT",
                              "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
            .replace("INTEGER", "BIGINT").replace("REAL", "DOUBLE PRECISION")
            .replace(" offset BIGINT", ' "offset" BIGINT'))
