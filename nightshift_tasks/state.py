"""The ledger: today's chains, their attempts and each agent call, with what they measured.
Everything that must survive a crash lives here, not in doit's dep file; db.py holds the
connection and its transactions, the same queries serving SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nightshift_tasks.db import Conn, host_id, write_one
from nightshift_tasks.db import connect as connect
from nightshift_tasks.db import now as now
from nightshift_tasks.db import stamp as stamp
from nightshift_tasks.db import write as write

TERMINAL = ("completed", "failed", "abandoned", "skipped")
NOT_STARTED = "not-started"  # the failure of a task skipped before it spent a token
RETRIED = ("provider", NOT_STARTED)  # final statuses the next run of the day tries again

USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
                "reasoning_tokens", "tokens", "cost_usd", "requests")


# ---- reads used by the plan -------------------------------------------------------------


def project_last_runs(conn: Conn) -> dict[str, datetime]:
    rows = conn.execute("SELECT path, last_run FROM projects WHERE last_run IS NOT NULL")
    return {r["path"]: datetime.fromisoformat(r["last_run"]) for r in rows}


@dataclass(frozen=True)
class Chain:
    """Today's chain of a project and the latest status of each of its tasks."""

    id: int
    tasks: list[str]
    provider: str
    status: dict[str, str]
    done: frozenset[str]  # final, except provider failures and skips before any token
    retried: dict[str, str]  # task -> how it ended last time, for those the next run retries


def _latest(conn: Conn, chain_id: int) -> dict[str, Any]:
    return {r["task"]: r for r in conn.execute(
        "SELECT * FROM attempts WHERE id IN "
        "(SELECT MAX(id) FROM attempts WHERE chain_id = ? GROUP BY task)", (chain_id,))}


def _is_done(attempt: Any) -> bool:
    return bool(attempt["status"] in TERMINAL and attempt["failure"] not in RETRIED)


def _chain(row: Any, latest: dict[str, Any]) -> Chain:
    return Chain(id=row["id"], tasks=json.loads(row["tasks"]), provider=row["provider"],
                 status={t: r["status"] for t, r in latest.items()},
                 done=frozenset(t for t, r in latest.items() if _is_done(r)),
                 retried={t: f"{r['status']}: {r['error']}" for t, r in latest.items()
                          if r["status"] in TERMINAL and not _is_done(r)})


def chain_for_day(conn: Conn, project_path: str, day: str) -> Chain | None:
    row = conn.execute("SELECT id, tasks, provider FROM chains WHERE project_path = ? AND day = ?",
                       (project_path, day)).fetchone()
    return None if row is None else _chain(row, _latest(conn, row["id"]))


@dataclass(frozen=True)
class PlanReads:
    """What the plan needs from the ledger about every project, keyed by project path: one
    query per table for the whole plan, not a few per project."""

    task_last_runs: dict[str, dict[str, datetime]]
    assigned: dict[str, set[str]]
    chains: dict[str, Chain]  # today's


def plan_reads(conn: Conn, day: str) -> PlanReads:
    last_runs: dict[str, dict[str, datetime]] = {}
    for r in conn.execute("SELECT project_path, task_type, last_run FROM task_history"):
        last_runs.setdefault(r["project_path"], {})[r["task_type"]] = datetime.fromisoformat(r["last_run"])
    assigned: dict[str, set[str]] = {}
    for r in conn.execute("SELECT project, task_type FROM assigned_tasks"):
        assigned.setdefault(r["project"], set()).add(r["task_type"])
    latest: dict[int, dict[str, Any]] = {}
    for r in conn.execute("SELECT * FROM attempts WHERE id IN (SELECT MAX(id) FROM attempts "
                          "WHERE chain_id IN (SELECT id FROM chains WHERE day = ?) "
                          "GROUP BY chain_id, task)", (day,)):
        latest.setdefault(r["chain_id"], {})[r["task"]] = r
    chains = {r["project_path"]: _chain(r, latest.get(r["id"], {})) for r in conn.execute(
        "SELECT id, project_path, tasks, provider FROM chains WHERE day = ?", (day,))}
    return PlanReads(last_runs, assigned, chains)


# ---- writes made by a running task ------------------------------------------------------


def clear_stale_assignments(conn: Conn, max_age: timedelta) -> int:
    return write_one(conn, "DELETE FROM assigned_tasks WHERE assigned_at < ?",
                     (stamp(now() - max_age),)).rowcount


def open_chain(conn: Conn, project_path: str, day: str, tasks: list[str],
               provider: str, run_id: str) -> int:
    """Record today's chain once, with a `planned` ledger row for each of its tasks."""
    with write(conn, f"claim {project_path}"):
        row = conn.execute("SELECT id FROM chains WHERE project_path = ? AND day = ?",
                           (project_path, day)).fetchone()
        if row is not None:
            return int(row["id"])
        ts = stamp(now())
        chain_id = int(conn.execute(
            "INSERT INTO chains (project_path, day, tasks, provider, run_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (project_path, day, json.dumps(tasks), provider, run_id, ts)).fetchone()[0])
        conn.executemany(
            "INSERT INTO attempts (chain_id, run_id, project_path, task, status, provider, "
            "planned_at) VALUES (?, ?, ?, ?, 'planned', ?, ?)",
            [(chain_id, run_id, project_path, t, provider, ts) for t in tasks])
    return chain_id


def start_attempt(conn: Conn, chain_id: int, run_id: str, project_path: str,
                  task: str, provider: str, pid: int, log_path: str) -> int:
    """planned -> running (or a fresh row when the task already ran, e.g. a forced rerun)."""
    ts = stamp(now())
    with write(conn):
        row = conn.execute("SELECT id FROM attempts WHERE chain_id = ? AND task = ? AND "
                           "status = 'planned' ORDER BY id DESC LIMIT 1",
                           (chain_id, task)).fetchone()
        if row is None:
            attempt_id = int(conn.execute(
                "INSERT INTO attempts (chain_id, run_id, project_path, task, status, provider, "
                "planned_at) VALUES (?, ?, ?, ?, 'planned', ?, ?) RETURNING id",
                (chain_id, run_id, project_path, task, provider, ts)).fetchone()[0])
        else:
            attempt_id = int(row["id"])
        conn.execute("UPDATE attempts SET status = 'running', run_id = ?, provider = ?, "
                     "started_at = ?, pid = ?, log_path = ?, host = ? WHERE id = ?",
                     (run_id, provider, ts, pid, log_path, host_id(), attempt_id))
        conn.execute("INSERT INTO assigned_tasks VALUES (?, ?, ?, ?) ON CONFLICT (task_id) DO "
                     "UPDATE SET project = excluded.project, task_type = excluded.task_type, "
                     "assigned_at = excluded.assigned_at",
                     (f"{task}:{project_path}", project_path, task, ts))
    return attempt_id


@dataclass(frozen=True)
class Outcome:
    status: str
    iterations: int = 0
    error: str | None = None
    output_ref: str | None = None
    failure: str | None = None  # "provider" when only provider trouble (429, quota) failed it


def set_agent_pgid(conn: Conn, attempt_id: int, pgid: int, phase: str) -> None:
    """The agent now running for the attempt, and its phase; record_call clears it."""
    write_one(conn, "UPDATE attempts SET agent_pgid = ?, phase = ? WHERE id = ?",
              (pgid, phase, attempt_id))


def set_phase(conn: Conn, attempt_id: int, phase: str) -> None:
    """What the attempt is doing between agent calls (waiting for budget), for live progress."""
    write_one(conn, "UPDATE attempts SET phase = ? WHERE id = ?", (phase, attempt_id))


def fail_over(conn: Conn, chain_id: int, attempt_id: int, path: list[str]) -> None:
    """The rest of the project's chain uses the last provider of the path; the attempt shows
    every provider it ran on ("claude→codex")."""
    with write(conn):
        conn.execute("UPDATE chains SET provider = ? WHERE id = ?", (path[-1], chain_id))
        conn.execute("UPDATE attempts SET provider = ? WHERE id = ?", ("→".join(path), attempt_id))


def chain_provider(conn: Conn, chain_id: int) -> str:
    return str(conn.execute("SELECT provider FROM chains WHERE id = ?", (chain_id,)).fetchone()[0])


def record_call(conn: Conn, attempt_id: int, phase: str, provider: str,
                started: datetime, exit_code: int | None, outcome: str, error: str | None,
                usage: dict[str, float], usage_known: bool = True) -> None:
    """One agent call, with the usage the CLI reported (zero when it reported none, and
    `usage_known` false when that zero is not the truth); its process group is gone, so
    recovery has nothing left to stop for the attempt."""
    with write(conn):
        conn.execute("UPDATE attempts SET agent_pgid = NULL WHERE id = ?", (attempt_id,))
        conn.execute(
            f"INSERT INTO calls (attempt_id, phase, provider, started_at, ended_at, exit_code, "
            f"outcome, error, usage_known, {', '.join(USAGE_FIELDS)}) "
            f"VALUES ({', '.join('?' * 17)})",
            (attempt_id, phase, provider, stamp(started), stamp(now()), exit_code, outcome, error,
             int(usage_known), *(usage.get(f, 0) for f in USAGE_FIELDS)))


def attempt_usage(conn: Conn, attempt_id: int) -> dict[str, float]:
    """The attempt's measured usage, and how many of its calls' usage is unknown."""
    row = conn.execute(f"SELECT {', '.join(f'COALESCE(SUM({f}), 0) AS {f}' for f in USAGE_FIELDS)}, "
                       "COALESCE(SUM(1 - usage_known), 0) AS unknown_calls "
                       "FROM calls WHERE attempt_id = ?", (attempt_id,)).fetchone()
    return {f: row[f] for f in (*USAGE_FIELDS, "unknown_calls")}


def finish_attempt(conn: Conn, attempt_id: int, outcome: Outcome) -> bool:
    """Record the final status; returns True when this completed the project's chain.

    A completed task starts its cooldown. The last terminal task of a chain marks the
    project processed and adds its run_history record, in the same transaction.
    """
    ts = stamp(now())
    with write(conn):
        att = conn.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
        used = attempt_usage(conn, attempt_id)
        conn.execute("UPDATE attempts SET status = ?, ended_at = ?, iterations = ?, error = ?, "
                     "output_ref = ?, failure = ?, tokens = ?, cost_usd = ? WHERE id = ?",
                     (outcome.status, ts, outcome.iterations, outcome.error, outcome.output_ref,
                      outcome.failure, used["tokens"], used["cost_usd"], attempt_id))
        path, task = att["project_path"], att["task"]
        conn.execute("DELETE FROM assigned_tasks WHERE task_id = ?", (f"{task}:{path}",))
        if outcome.status == "completed":
            conn.execute("INSERT INTO task_history VALUES (?, ?, ?) ON CONFLICT (project_path, "
                         "task_type) DO UPDATE SET last_run = excluded.last_run", (path, task, ts))
        if outcome.status not in TERMINAL:
            return False
        return _close_chain_if_done(conn, att["chain_id"], ts)


def _close_chain_if_done(conn: Conn, chain_id: int, ts: str) -> bool:
    chain = conn.execute("SELECT * FROM chains WHERE id = ?", (chain_id,)).fetchone()
    latest = _latest(conn, chain_id)
    tasks = json.loads(chain["tasks"])
    if not all(t in latest and _is_done(latest[t]) for t in tasks):
        return False
    statuses = [latest[t]["status"] for t in tasks]
    done, bad = statuses.count("completed"), sum(s in ("failed", "abandoned") for s in statuses)
    status = "success" if done and not bad else ("failed" if bad and not done else "partial")
    errors = "; ".join(f"{t}: {latest[t]['error']}" for t in tasks if latest[t]["error"])
    started = min((latest[t]["started_at"] or ts) for t in tasks)
    conn.execute("UPDATE chains SET finished_at = ? WHERE id = ?", (ts, chain_id))
    conn.execute("INSERT INTO projects (path, last_run, run_count) VALUES (?, ?, 1) "
                 "ON CONFLICT (path) DO UPDATE SET last_run = excluded.last_run, "
                 "run_count = projects.run_count + 1", (chain["project_path"], ts))
    tokens = sum(latest[t]["tokens"] for t in tasks)
    conn.execute("INSERT INTO run_history (id, start_time, end_time, project, tasks, "
                 "tokens_used, status, error, provider) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                 "ON CONFLICT (id) DO NOTHING",
                 (f"{chain['run_id']}:{chain_id}:{ts}", started, ts, chain["project_path"],
                  chain["tasks"], tokens, status, errors or None, chain["provider"]))
    return True


def forget_today(conn: Conn, project_path: str, day: str,
                 tasks: list[str] | None = None) -> list[str]:
    """`forget`: plan again the tasks of the project's chain for `day` that finished (all of
    them, or those in `tasks`), so the daily guard lets the next run run them. Their attempts
    stay in the history. Returns the tasks planned again."""
    with write(conn, f"claim {project_path}"):
        chain = conn.execute("SELECT id, tasks, provider FROM chains WHERE project_path = ? AND day = ?",
                             (project_path, day)).fetchone()
        if chain is None:
            return []
        latest = _latest(conn, chain["id"])
        again = [t for t in json.loads(chain["tasks"])
                 if (tasks is None or t in tasks) and t in latest and _is_done(latest[t])]
        ts = stamp(now())
        conn.executemany(
            "INSERT INTO attempts (chain_id, run_id, project_path, task, status, provider, "
            "planned_at) VALUES (?, 'forget', ?, ?, 'planned', ?, ?)",
            [(chain["id"], project_path, t, chain["provider"], ts) for t in again])
        if again:
            conn.execute("UPDATE chains SET finished_at = NULL WHERE id = ?", (chain["id"],))
    return again
