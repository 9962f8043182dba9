"""The SQLite state: everything that must survive a crash lives here, not in doit's dep file.

Connections run in autocommit mode; every write is one short BEGIN IMMEDIATE transaction,
and none is ever held across an agent run.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

TERMINAL = ("completed", "failed", "abandoned", "skipped")
BUSY_TIMEOUT_MS = 15000

MIGRATIONS: list[str] = [
    # 1: the original tool's tables, plus chains and the per-attempt ledger.
    """
    CREATE TABLE projects (
        path TEXT PRIMARY KEY,
        last_run TEXT,
        run_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE task_history (
        project_path TEXT NOT NULL,
        task_type TEXT NOT NULL,
        last_run TEXT NOT NULL,
        PRIMARY KEY (project_path, task_type)
    );
    CREATE TABLE assigned_tasks (
        task_id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        task_type TEXT NOT NULL,
        assigned_at TEXT NOT NULL
    );
    CREATE TABLE run_history (
        id TEXT PRIMARY KEY,
        start_time TEXT NOT NULL,
        end_time TEXT,
        project TEXT NOT NULL,
        tasks TEXT NOT NULL,
        tokens_used INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        error TEXT,
        provider TEXT NOT NULL DEFAULT '',
        branch TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX idx_run_history_time ON run_history(start_time DESC);
    CREATE TABLE chains (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_path TEXT NOT NULL,
        day TEXT NOT NULL,
        tasks TEXT NOT NULL,
        provider TEXT NOT NULL,
        run_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        UNIQUE (project_path, day)
    );
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        chain_id INTEGER NOT NULL REFERENCES chains(id),
        run_id TEXT NOT NULL,
        project_path TEXT NOT NULL,
        task TEXT NOT NULL,
        status TEXT NOT NULL,
        provider TEXT NOT NULL DEFAULT '',
        planned_at TEXT NOT NULL,
        started_at TEXT,
        ended_at TEXT,
        iterations INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        output_ref TEXT,
        log_path TEXT,
        pid INTEGER
    );
    CREATE INDEX idx_attempts_chain ON attempts(chain_id, task);
    """,
]


def now() -> datetime:
    return datetime.now().astimezone()


def stamp(moment: datetime) -> str:
    """Local time with offset: sortable within one zone, unambiguous across zones."""
    return moment.isoformat(timespec="milliseconds")


def connect(db_path: Path) -> sqlite3.Connection:
    """Open (creating and migrating if needed) the state database."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    migrate(conn)
    return conn


@contextlib.contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One short write transaction, taken with BEGIN IMMEDIATE so writers queue up front."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                 "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    if row[0] >= len(MIGRATIONS):
        return
    with write(conn):
        current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, stamp(now())))


# ---- reads used by the plan -------------------------------------------------------------


def project_last_runs(conn: sqlite3.Connection) -> dict[str, datetime]:
    rows = conn.execute("SELECT path, last_run FROM projects WHERE last_run IS NOT NULL")
    return {r["path"]: datetime.fromisoformat(r["last_run"]) for r in rows}


def task_last_runs(conn: sqlite3.Connection, project_path: str) -> dict[str, datetime]:
    rows = conn.execute("SELECT task_type, last_run FROM task_history WHERE project_path = ?",
                        (project_path,))
    return {r["task_type"]: datetime.fromisoformat(r["last_run"]) for r in rows}


def assigned_tasks(conn: sqlite3.Connection, project_path: str) -> set[str]:
    rows = conn.execute("SELECT task_type FROM assigned_tasks WHERE project = ?", (project_path,))
    return {r["task_type"] for r in rows}


@dataclass(frozen=True)
class Chain:
    """Today's chain of a project and the latest status of each of its tasks."""

    id: int
    tasks: list[str]
    provider: str
    status: dict[str, str]

    @property
    def finished(self) -> bool:
        return all(self.status.get(t) in TERMINAL for t in self.tasks)


def chain_for_day(conn: sqlite3.Connection, project_path: str, day: str) -> Chain | None:
    row = conn.execute("SELECT id, tasks, provider FROM chains WHERE project_path = ? AND day = ?",
                       (project_path, day)).fetchone()
    if row is None:
        return None
    status = {r["task"]: r["status"] for r in conn.execute(
        "SELECT task, status FROM attempts WHERE id IN "
        "(SELECT MAX(id) FROM attempts WHERE chain_id = ? GROUP BY task)", (row["id"],))}
    return Chain(id=row["id"], tasks=json.loads(row["tasks"]), provider=row["provider"],
                 status=status)


# ---- writes made by a running task ------------------------------------------------------


def clear_stale_assignments(conn: sqlite3.Connection, max_age: timedelta) -> int:
    with write(conn):
        cur = conn.execute("DELETE FROM assigned_tasks WHERE assigned_at < ?",
                           (stamp(now() - max_age),))
    return cur.rowcount


def open_chain(conn: sqlite3.Connection, project_path: str, day: str, tasks: list[str],
               provider: str, run_id: str) -> int:
    """Record today's chain once, with a `planned` ledger row for each of its tasks."""
    with write(conn):
        row = conn.execute("SELECT id FROM chains WHERE project_path = ? AND day = ?",
                           (project_path, day)).fetchone()
        if row is not None:
            return int(row["id"])
        ts = stamp(now())
        cur = conn.execute(
            "INSERT INTO chains (project_path, day, tasks, provider, run_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)", (project_path, day, json.dumps(tasks), provider, run_id, ts))
        chain_id = int(cur.lastrowid or 0)
        conn.executemany(
            "INSERT INTO attempts (chain_id, run_id, project_path, task, status, provider, "
            "planned_at) VALUES (?, ?, ?, ?, 'planned', ?, ?)",
            [(chain_id, run_id, project_path, t, provider, ts) for t in tasks])
    return chain_id


def start_attempt(conn: sqlite3.Connection, chain_id: int, run_id: str, project_path: str,
                  task: str, provider: str, pid: int, log_path: str) -> int:
    """planned -> running (or a fresh row when the task already ran, e.g. a forced rerun)."""
    ts = stamp(now())
    with write(conn):
        row = conn.execute("SELECT id FROM attempts WHERE chain_id = ? AND task = ? AND "
                           "status = 'planned' ORDER BY id DESC LIMIT 1",
                           (chain_id, task)).fetchone()
        if row is None:
            cur = conn.execute(
                "INSERT INTO attempts (chain_id, run_id, project_path, task, status, provider, "
                "planned_at) VALUES (?, ?, ?, ?, 'planned', ?, ?)",
                (chain_id, run_id, project_path, task, provider, ts))
            attempt_id = int(cur.lastrowid or 0)
        else:
            attempt_id = int(row["id"])
        conn.execute("UPDATE attempts SET status = 'running', run_id = ?, provider = ?, "
                     "started_at = ?, pid = ?, log_path = ? WHERE id = ?",
                     (run_id, provider, ts, pid, log_path, attempt_id))
        conn.execute("INSERT OR REPLACE INTO assigned_tasks VALUES (?, ?, ?, ?)",
                     (f"{task}:{project_path}", project_path, task, ts))
    return attempt_id


@dataclass(frozen=True)
class Outcome:
    status: str
    iterations: int = 0
    error: str | None = None
    output_ref: str | None = None


def finish_attempt(conn: sqlite3.Connection, attempt_id: int, outcome: Outcome) -> bool:
    """Record the final status; returns True when this completed the project's chain.

    A completed task starts its cooldown. The last terminal task of a chain marks the
    project processed and adds its run_history record, in the same transaction.
    """
    ts = stamp(now())
    with write(conn):
        att = conn.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
        conn.execute("UPDATE attempts SET status = ?, ended_at = ?, iterations = ?, error = ?, "
                     "output_ref = ? WHERE id = ?",
                     (outcome.status, ts, outcome.iterations, outcome.error, outcome.output_ref,
                      attempt_id))
        path, task = att["project_path"], att["task"]
        conn.execute("DELETE FROM assigned_tasks WHERE task_id = ?", (f"{task}:{path}",))
        if outcome.status == "completed":
            conn.execute("INSERT INTO task_history VALUES (?, ?, ?) ON CONFLICT DO UPDATE "
                         "SET last_run = excluded.last_run", (path, task, ts))
        if outcome.status not in TERMINAL:
            return False
        return _close_chain_if_done(conn, att["chain_id"], ts)


def _close_chain_if_done(conn: sqlite3.Connection, chain_id: int, ts: str) -> bool:
    chain = conn.execute("SELECT * FROM chains WHERE id = ?", (chain_id,)).fetchone()
    latest = {r["task"]: r for r in conn.execute(
        "SELECT * FROM attempts WHERE id IN "
        "(SELECT MAX(id) FROM attempts WHERE chain_id = ? GROUP BY task)", (chain_id,))}
    tasks = json.loads(chain["tasks"])
    if not all(t in latest and latest[t]["status"] in TERMINAL for t in tasks):
        return False
    statuses = [latest[t]["status"] for t in tasks]
    done, bad = statuses.count("completed"), sum(s in ("failed", "abandoned") for s in statuses)
    status = "success" if done and not bad else ("failed" if bad and not done else "partial")
    errors = "; ".join(f"{t}: {latest[t]['error']}" for t in tasks if latest[t]["error"])
    started = min((latest[t]["started_at"] or ts) for t in tasks)
    conn.execute("UPDATE chains SET finished_at = ? WHERE id = ?", (ts, chain_id))
    conn.execute("INSERT INTO projects (path, last_run, run_count) VALUES (?, ?, 1) "
                 "ON CONFLICT DO UPDATE SET last_run = excluded.last_run, "
                 "run_count = run_count + 1", (chain["project_path"], ts))
    conn.execute("INSERT OR REPLACE INTO run_history (id, start_time, end_time, project, tasks, "
                 "status, error, provider) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (f"{chain['run_id']}:{chain_id}:{ts}", started, ts, chain["project_path"],
                  chain["tasks"], status, errors or None, chain["provider"]))
    return True
