"""Tasks left `running` whose worker is gone are marked `interrupted`, and any agent
process group they recorded is stopped: after a crash (`kill -9` of doit, a reboot), at the
start of the next run, and at the end of a run, for a worker killed before it could record
its end. Their chains are then resumed by the plan like any unfinished chain.

In a fleet, a task another machine left running is judged by that machine's lease, not by a
pid (a number on another machine): it is interrupted once the lease expired, and its agent's
process group is never signalled from here, where that number means some other process.
"""

from __future__ import annotations

from typing import Any

from nightshift_tasks import fleet, state
from nightshift_tasks.db import Conn, host_id
from nightshift_tasks.process import alive, stop_pgid

_COLUMNS = "SELECT id, project_path, task, host, pid, agent_pgid FROM attempts WHERE status = 'running'"


def _interrupt_dead(conn: Conn, rows: list[Any], error: str) -> list[Any]:
    """Mark each row whose worker is gone interrupted; returns those rows."""
    done = []
    holds = fleet.liveness(conn)
    for row in rows:
        if holds(row["host"], row["pid"]):
            continue  # still being worked on
        local = row["host"] in ("", host_id())
        if local and row["agent_pgid"] and alive(row["agent_pgid"], group=True):
            stop_pgid(row["agent_pgid"])
        state.finish_attempt(conn, row["id"], state.Outcome("interrupted", error=error))
        done.append(row)
    return done


def recover_orphans(conn: Conn) -> list[str]:
    """At the start of a run: returns one note per recovered task."""
    rows = conn.execute(_COLUMNS).fetchall()
    return [f"{row['project_path']}:{row['task']} was left running by a crashed run"
            + ("" if row["host"] in ("", host_id()) else f" on {row['host']}")
            + "; marked interrupted, it runs again"
            for row in _interrupt_dead(conn, rows, "interrupted: its run stopped without recording an end")]


def interrupt_leftovers(conn: Conn, run_id: str) -> None:
    """At the end of a run, once its workers are stopped: this run's tasks still `running`
    (their worker was killed before it could record the interruption)."""
    rows = conn.execute(_COLUMNS + " AND run_id = ? AND host IN ('', ?)",
                        (run_id, host_id())).fetchall()
    _interrupt_dead(conn, rows, "interrupted: its worker stopped without recording an end")
