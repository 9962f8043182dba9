"""After a crash (`kill -9` of doit, a reboot): tasks left `running` whose worker is gone
are marked `interrupted`, and any agent process group they recorded is stopped. Their
chains are then resumed by the plan like any unfinished chain."""

from __future__ import annotations

import sqlite3

from nightshift_tasks import state
from nightshift_tasks.process import alive, stop_pgid


def recover_orphans(conn: sqlite3.Connection) -> list[str]:
    """Returns one note per recovered task."""
    notes = []
    rows = conn.execute("SELECT id, project_path, task, pid, agent_pgid FROM attempts "
                        "WHERE status = 'running'").fetchall()
    for row in rows:
        if row["pid"] and alive(row["pid"]):
            continue  # still being worked on
        if row["agent_pgid"] and alive(row["agent_pgid"], group=True):
            stop_pgid(row["agent_pgid"])
        state.finish_attempt(conn, row["id"], state.Outcome(
            "interrupted", error="interrupted: its run stopped without recording an end"))
        notes.append(f"{row['project_path']}:{row['task']} was left running by a crashed run; "
                     "marked interrupted, it runs again")
    return notes
