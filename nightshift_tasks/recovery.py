"""Tasks left `running` whose worker is gone are marked `interrupted`, and any agent
process group they recorded is stopped: after a crash (`kill -9` of doit, a reboot), at the
start of the next run, and at the end of a run, for a worker killed before it could record
its end. Their chains are then resumed by the plan like any unfinished chain."""

from __future__ import annotations

import sqlite3

from nightshift_tasks import state
from nightshift_tasks.process import alive, stop_pgid


def _interrupt_dead(conn: sqlite3.Connection, rows: list[sqlite3.Row], error: str) -> list[sqlite3.Row]:
    """Mark each row whose worker is gone interrupted; returns those rows."""
    done = []
    for row in rows:
        if row["pid"] and alive(row["pid"]):
            continue  # still being worked on
        if row["agent_pgid"] and alive(row["agent_pgid"], group=True):
            stop_pgid(row["agent_pgid"])
        state.finish_attempt(conn, row["id"], state.Outcome("interrupted", error=error))
        done.append(row)
    return done


def recover_orphans(conn: sqlite3.Connection) -> list[str]:
    """At the start of a run: returns one note per recovered task."""
    rows = conn.execute("SELECT id, project_path, task, pid, agent_pgid FROM attempts "
                        "WHERE status = 'running'").fetchall()
    return [f"{row['project_path']}:{row['task']} was left running by a crashed run; "
            "marked interrupted, it runs again"
            for row in _interrupt_dead(conn, rows, "interrupted: its run stopped without recording an end")]


def interrupt_leftovers(conn: sqlite3.Connection, run_id: str) -> None:
    """At the end of a run, once its workers are stopped: this run's tasks still `running`
    (their worker was killed before it could record the interruption)."""
    rows = conn.execute("SELECT id, project_path, task, pid, agent_pgid FROM attempts "
                        "WHERE status = 'running' AND run_id = ?", (run_id,)).fetchall()
    _interrupt_dead(conn, rows, "interrupted: its worker stopped without recording an end")
