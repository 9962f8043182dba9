"""Many machines on one ledger: which machine is alive, and which one works a project today.

Each run records itself (host, run, pid) with a lease that its heartbeat extends; a machine
that dies (kill -9, power loss) stops beating, and once its lease expires everything it
held is free: its claims on projects, its provider slots, its reservations, its PR slots.
A row of this host is judged by its pid instead, as on one machine; a process group
recorded on another host is never signalled from this one.

A project's chain for the day is claimed by one run at a time, in the same write
transaction that checks the ledger, so two machines never work the same project at once
and a task done anywhere in the fleet is never run again that day.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from datetime import timedelta

from nightshift_tasks import db, state
from nightshift_tasks.db import Conn
from nightshift_tasks.process import alive


def live_hosts(conn: Conn) -> set[str]:
    """Hosts with a run whose lease has not expired."""
    return {r["host"] for r in conn.execute("SELECT DISTINCT host FROM runners WHERE expires_at > ?",
                                            (db.stamp(db.now()),))}


def _run_alive(conn: Conn, host: str, run_id: str) -> bool:
    """A run of this host by its doit's pid (two homes on one host are two runs), another
    host's by its lease."""
    row = conn.execute("SELECT pid, expires_at FROM runners WHERE host = ? AND run_id = ?",
                       (host, run_id)).fetchone()
    if row is None:
        return False
    return alive(row["pid"]) if host == db.host_id() else bool(row["expires_at"] > db.stamp(db.now()))


def holder_alive(host: str, pid: int | None, live: set[str]) -> bool:
    """Whether the process that wrote a row still holds it: by its pid on this host (rows
    from before hosts were recorded have none), by its host's lease on another."""
    if host in ("", db.host_id()):
        return bool(pid) and alive(pid or 0)
    return host in live


def liveness(conn: Conn) -> Callable[[str, int | None], bool]:
    """holder_alive with the live hosts read once."""
    live = live_hosts(conn)
    return lambda host, pid: holder_alive(host, pid, live)


def begin_run(conn: Conn, run_id: str, lease: float) -> None:
    """Record this run and its first heartbeat (it holds the host's run lock); forget the
    runs whose lease expired (their claims are free already)."""
    at = db.now()
    with db.write(conn):
        conn.execute("DELETE FROM runners WHERE expires_at < ?", (db.stamp(at),))
        conn.execute("INSERT INTO runners (host, run_id, pid, started_at, expires_at) VALUES "
                     "(?, ?, ?, ?, ?) ON CONFLICT (host, run_id) DO UPDATE SET expires_at = "
                     "excluded.expires_at", (db.host_id(), run_id, os.getpid(), db.stamp(at),
                                             db.stamp(at + timedelta(seconds=lease))))


def beat(conn: Conn, run_id: str, lease: float) -> None:
    db.write_one(conn, "UPDATE runners SET expires_at = ? WHERE host = ? AND run_id = ?",
                 (db.stamp(db.now() + timedelta(seconds=lease)), db.host_id(), run_id))


def end_run(conn: Conn, run_id: str) -> None:
    """The run is over: its claims and its lease go, and other machines may take over."""
    with db.write(conn):
        conn.execute("DELETE FROM claims WHERE host = ? AND run_id = ?", (db.host_id(), run_id))
        conn.execute("DELETE FROM runners WHERE host = ? AND run_id = ?", (db.host_id(), run_id))


class Heartbeat(threading.Thread):
    """Extends the run's lease every third of it, from a thread of doit's main process with
    a connection of its own. Only on a server: a doit worker forked meanwhile inherits the
    connection but never uses it, and psycopg closes it only in the process that opened it."""

    def __init__(self, location: str, run_id: str, lease: float) -> None:
        super().__init__(daemon=True)
        self.location, self.run_id, self.lease = location, run_id, lease
        self.stopped = threading.Event()

    def run(self) -> None:
        conn = None
        while not self.stopped.wait(self.lease / 3):
            try:
                conn = conn or db.connect(self.location, self.lease / 3)
                beat(conn, self.run_id, self.lease)
            except Exception as exc:  # the next beat tries again, until the lease runs out
                print(f"nightshift: warning: heartbeat to the state database failed ({exc})",
                      file=sys.__stderr__, flush=True)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


def claim(conn: Conn, project_path: str, day: str, run_id: str, task: str,
          forced: bool) -> str | None:
    """Take (or keep) today's claim on the project for this run; None when this run may work
    `task` now, else why not: another machine's live run works the project, or another
    machine already did the task today (between this run's daily guard and now; `forced`:
    task=<slug> reruns it). The claim of a run that ended, or whose lease expired (another
    host's) or whose doit is gone (this host's), is taken over."""
    me = db.host_id()
    with db.write(conn, f"claim {project_path}"):
        row = conn.execute("SELECT host, run_id, pid FROM claims WHERE project_path = ? AND day = ?",
                           (project_path, day)).fetchone()
        if row is not None and (row["host"], row["run_id"]) != (me, run_id) and _run_alive(
                conn, row["host"], row["run_id"]):
            return f"{project_path} is being worked by {row['host']} (pid {row['pid']})"
        chain = state.chain_for_day(conn, project_path, day)
        if not forced and chain is not None and task in chain.done:
            by = conn.execute("SELECT host FROM attempts WHERE chain_id = ? AND task = ? ORDER BY "
                              "id DESC LIMIT 1", (chain.id, task)).fetchone()["host"]
            if by not in ("", me):  # here, the daily guard decides (`doit run -a` forces)
                return f"{task} was already done today in {project_path} on {by} ({chain.status[task]})"
        conn.execute("INSERT INTO claims (project_path, day, host, run_id, pid, claimed_at) "
                     "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (project_path, day) DO UPDATE SET "
                     "host = excluded.host, run_id = excluded.run_id, pid = excluded.pid, "
                     "claimed_at = excluded.claimed_at",
                     (project_path, day, me, run_id, os.getpid(), db.stamp(db.now())))
    return None


def unclaim(conn: Conn, project_path: str, day: str, run_id: str) -> None:
    """The chain is finished: the project is free (for a forced rerun, say)."""
    db.write_one(conn, "DELETE FROM claims WHERE project_path = ? AND day = ? AND host = ? AND "
                 "run_id = ?", (project_path, day, db.host_id(), run_id))
