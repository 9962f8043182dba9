"""The ledger on a PostgreSQL server (`state.database: postgresql://…`): one state for a
fleet of machines, each running the same config from its own cron.

Ledger wraps a psycopg 3 connection so that the ledger's queries run unchanged: `?`
placeholders, rows read by name or position, integral sums as int. A write transaction that
checks before it writes (a project's claim, a provider's budget reservation or slot, the PR
slots) first takes a transaction-level advisory lock named for what it checks, so those
writers queue up fleet-wide as BEGIN IMMEDIATE makes them queue on one machine, and the
lock goes with the transaction when a machine dies. Other writes (an agent call's usage, a
task's phase) take no lock beyond their rows': one global lock held across round trips to a
server made every worker wait for every other (bench/fleet.py). A connection lost between
transactions (a server restart while an agent works) is opened again, with backoff, for up
to budget.db_lock_wait.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from nightshift_tasks.storage import StorageError, Unreachable, shown

try:
    import psycopg
    from psycopg.adapt import Loader
    from psycopg.pq import TransactionStatus
except ImportError:  # the message is tested with the import blocked
    psycopg = None  # type: ignore[assignment]
    Loader = object  # type: ignore[assignment,misc]

CONNECT_TIMEOUT_S = 5
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.2, 5.0


class Row(tuple[Any, ...]):
    """A row read by column name or by position, as sqlite3.Row is."""

    names: dict[str, int]

    def __new__(cls, values: Sequence[Any], names: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row.names = names
        return row

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(self.names[key] if isinstance(key, str) else key)

    def keys(self) -> list[str]:
        return list(self.names)


def _rows(cursor: Any) -> Any:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, names)


class _Number(Loader):
    """numeric (what SUM of a bigint gives) as int when integral, else float."""

    def load(self, data: Any) -> int | float:
        value = Decimal(bytes(data).decode())
        return int(value) if value == value.to_integral_value() else float(value)


class Ledger:
    """One connection to the fleet's ledger, in autocommit mode like the SQLite one."""

    def __init__(self, url: str, lock_wait: float) -> None:
        self.url, self.lock_wait = url, lock_wait
        self._conn = self._open()

    def _open(self) -> Any:
        # Client-side binding: a parameter's type comes from its value, as in SQLite, so
        # `? IS NULL` needs no cast.
        conn = psycopg.connect(self.url, autocommit=True, row_factory=_rows,
                               cursor_factory=psycopg.ClientCursor,
                               connect_timeout=CONNECT_TIMEOUT_S)
        conn.adapters.register_loader("numeric", _Number)
        return conn

    @property
    def in_transaction(self) -> bool:
        return bool(self._conn.info.transaction_status in (
            TransactionStatus.INTRANS, TransactionStatus.INERROR, TransactionStatus.ACTIVE))

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        """A statement; a read outside a transaction is sent again, once, on a new
        connection when the old one was lost."""
        return self._send(sql, parameters, again=not self.in_transaction and _reads(sql))

    def execute_alone(self, sql: str, parameters: Sequence[Any]) -> Any:
        """An idempotent write as its own transaction (one round trip instead of three), sent
        again likewise."""
        return self._send(sql, parameters, again=True)

    def _send(self, sql: str, parameters: Sequence[Any], again: bool) -> Any:
        try:
            return self._run(sql, parameters)
        except psycopg.OperationalError:
            if not again or not self._conn.broken:
                raise
            self._reopen()
            return self._run(sql, parameters)

    def _run(self, sql: str, parameters: Sequence[Any]) -> Any:
        if not parameters:
            return self._conn.execute(sql)
        return self._conn.execute(sql.replace("%", "%%").replace("?", "%s"), parameters)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any:
        cursor = self._conn.cursor()
        cursor.executemany(sql.replace("%", "%%").replace("?", "%s"), list(parameters))
        return cursor

    def begin(self, lock: str | None) -> None:
        """Start a write transaction, holding `lock` if named; a lost connection is opened
        again first (nothing of the transaction was done yet)."""
        try:
            self._begin(lock)
        except psycopg.OperationalError:
            if not self._conn.broken:
                raise
            self._reopen()
            self._begin(lock)

    def _begin(self, lock: str | None) -> None:
        self._conn.execute("BEGIN")
        if lock is not None:
            self.hold(lock)

    def hold(self, lock: str) -> None:
        """Hold `lock` until the transaction ends (taking it again is harmless)."""
        key = int.from_bytes(hashlib.blake2b(lock.encode(), digest_size=8).digest(), "big",
                             signed=True)
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))

    def _reopen(self) -> None:
        """Open the connection again, backing off, for up to lock_wait seconds."""
        deadline, delay = time.monotonic() + self.lock_wait, FIRST_BACKOFF_S
        print(f"nightshift: lost the connection to {shown(self.url)}; reconnecting for up to "
              f"{self.lock_wait:g}s", file=sys.__stderr__, flush=True)
        while True:
            try:
                self._conn = self._open()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    raise StorageError(
                        f"lost the connection to the state database {shown(self.url)} and could "
                        f"not open it again within {self.lock_wait:g}s ({_first_line(exc)}); "
                        "budget.db_lock_wait sets the wait") from exc
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)

    def close(self) -> None:
        self._conn.close()


def _reads(sql: str) -> bool:
    return sql.lstrip().upper().startswith("SELECT")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def connect(url: str, lock_wait: float) -> Ledger:
    """The fleet's ledger; a server that is down, or no psycopg, is an Unreachable fault."""
    if psycopg is None:
        raise Unreachable("state.database is a PostgreSQL URL, but psycopg is not installed; "
                          "install it with `pip install 'nightshift-tasks[postgres]'`")
    try:
        return Ledger(url, lock_wait)
    except psycopg.Error as exc:
        raise Unreachable(f"cannot reach the state database {shown(url)} ({_first_line(exc)}); "
                          "start the server or fix state.database, then rerun") from exc

