"""Per-provider concurrency caps across every doit worker: slots leased in the state DB.

A lease names its holder's pid and expires, so a holder that crashed never keeps a slot:
a dead pid frees it at once, an expired lease at the latest after the call's timeout.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

from nightshift_tasks import fleet, state
from nightshift_tasks.db import Conn, host_id, write_one

POLL_SECONDS = 0.1


def try_acquire(conn: Conn, provider: str, cap: int, ttl: float) -> int | None:
    """Take a slot if one is free; the lease id, or None when all `cap` slots are held."""
    now = state.now()
    with state.write(conn, f"lease {provider}"):
        rows = conn.execute("SELECT id, host, pid, expires_at FROM leases WHERE provider = ?",
                            (provider,)).fetchall()
        held = fleet.liveness(conn)
        stale = [r["id"] for r in rows
                 if r["expires_at"] < state.stamp(now) or not held(r["host"], r["pid"])]
        conn.executemany("DELETE FROM leases WHERE id = ?", [(i,) for i in stale])
        if len(rows) - len(stale) >= cap:
            return None
        return int(conn.execute(
            "INSERT INTO leases (provider, host, pid, acquired_at, expires_at) VALUES "
            "(?, ?, ?, ?, ?) RETURNING id", (provider, host_id(), os.getpid(), state.stamp(now),
                             state.stamp(now + timedelta(seconds=ttl)))).fetchone()[0])


@contextlib.contextmanager
def slot(conn: Conn, provider: str, cap: int | None, ttl: float,
         waiting: Callable[[str], None]) -> Iterator[None]:
    """Hold one of the provider's `cap` slots for the duration of the block (None: no cap)."""
    if cap is None:
        yield
        return
    lease = try_acquire(conn, provider, cap, ttl)
    if lease is None:
        waiting(f"waiting for a {provider} slot (providers.{provider}.max_concurrent = {cap})")
        started = time.monotonic()
        while lease is None:
            time.sleep(POLL_SECONDS)
            lease = try_acquire(conn, provider, cap, ttl)
        waiting(f"got a {provider} slot after {time.monotonic() - started:.1f}s")
    try:
        yield
    finally:
        write_one(conn, "DELETE FROM leases WHERE id = ?", (lease,))
