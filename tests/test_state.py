from __future__ import annotations

import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest

from nightshift_tasks import db, state


def test_migrations_are_versioned_and_idempotent(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    conn.close()
    conn = state.connect(tmp_path / "s.db")
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
    assert versions == list(range(1, len(db.MIGRATIONS) + 1))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"projects", "task_history", "assigned_tasks", "run_history", "chains", "attempts", "calls",
            "leases"} <= tables


def test_an_older_database_is_migrated_forward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "MIGRATIONS", db.MIGRATIONS[:1])
    old = state.connect(tmp_path / "s.db")
    old.execute("INSERT INTO projects (path, run_count) VALUES ('/p', 3)")
    old.close()
    monkeypatch.undo()
    conn = state.connect(tmp_path / "s.db")
    assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == len(db.MIGRATIONS)
    assert conn.execute("SELECT run_count FROM projects").fetchone()[0] == 3
    assert "failure" in [r[1] for r in conn.execute("PRAGMA table_info(attempts)")]


def test_chain_transitions_and_completion(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    day = date.today().isoformat()
    chain = state.open_chain(conn, "/p", day, ["a", "b"], "command", "r1")
    assert state.open_chain(conn, "/p", day, ["x"], "command", "r2") == chain
    statuses = lambda: [tuple(r) for r in conn.execute(  # noqa: E731
        "SELECT task, status FROM attempts ORDER BY id")]
    assert statuses() == [("a", "planned"), ("b", "planned")]
    first = state.start_attempt(conn, chain, "r1", "/p", "a", "command", 1, "/log")
    assert statuses() == [("a", "running"), ("b", "planned")]
    assert state.plan_reads(conn, day).assigned == {"/p": {"a"}}
    assert state.finish_attempt(conn, first, state.Outcome("failed", 1, "boom")) is False
    assert state.plan_reads(conn, day).task_last_runs == {}
    second = state.start_attempt(conn, chain, "r1", "/p", "b", "command", 1, "/log")
    assert state.finish_attempt(conn, second, state.Outcome("completed", 2)) is True
    assert set(state.plan_reads(conn, day).task_last_runs["/p"]) == {"b"}
    found = state.chain_for_day(conn, "/p", day)
    assert found is not None and set(found.tasks) <= found.done
    assert state.plan_reads(conn, day).chains == {"/p": found}
    assert found.status == {"a": "failed", "b": "completed"}
    assert tuple(conn.execute("SELECT status, error FROM run_history").fetchone()) == ("partial", "a: boom")
    assert conn.execute("SELECT run_count FROM projects").fetchone()[0] == 1
    assert state.plan_reads(conn, day).assigned == {}


def test_stale_assignments_are_cleared(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    old = state.stamp(state.now() - timedelta(hours=3))
    conn.execute("INSERT INTO assigned_tasks VALUES ('a:/p', '/p', 'a', ?)", (old,))
    conn.execute("INSERT INTO assigned_tasks VALUES ('b:/p', '/p', 'b', ?)", (state.stamp(state.now()),))
    assert state.clear_stale_assignments(conn, timedelta(hours=2)) == 1
    assert state.plan_reads(conn, date.today().isoformat()).assigned == {"/p": {"b"}}


def test_a_failed_write_rolls_back(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    try:
        with state.write(conn):
            conn.execute("INSERT INTO projects (path) VALUES ('/x')")
            raise RuntimeError
    except RuntimeError:
        pass
    assert conn.execute("SELECT COUNT(*) FROM projects").fetchone()[0] == 0
    assert not conn.in_transaction
    assert isinstance(conn, sqlite3.Connection)


def test_a_task_skipped_before_spending_a_token_is_not_done(tmp_path: Path) -> None:
    """Skipped before it started (budget, window, PR caps): the next run of the day takes it
    up again, and says why it was skipped. Completed, failed and spent-then-skipped stay done."""
    conn = state.connect(tmp_path / "s.db")
    day = date.today().isoformat()
    chain = state.open_chain(conn, "/p", day, ["a", "b", "c", "d"], "claude", "r1")
    outcomes = {"a": state.Outcome("skipped", error="budget: needs ~50,000 tokens",
                                   failure=state.NOT_STARTED),
                "b": state.Outcome("failed", 1, "boom"), "c": state.Outcome("completed", 1),
                "d": state.Outcome("skipped", error="budget: needs ~50,000 tokens")}
    for task, outcome in outcomes.items():
        attempt = state.start_attempt(conn, chain, "r1", "/p", task, "claude", 1, "/log")
        assert state.finish_attempt(conn, attempt, outcome) is False
    found = state.chain_for_day(conn, "/p", day)
    assert found is not None and found.done == {"b", "c", "d"}
    assert found.retried == {"a": "skipped: budget: needs ~50,000 tokens"}
    assert conn.execute("SELECT finished_at FROM chains").fetchone()[0] is None
    again = state.start_attempt(conn, chain, "r2", "/p", "a", "claude", 1, "/log")
    assert state.finish_attempt(conn, again, state.Outcome("completed", 1)) is True


def test_reservations_migrate_to_one_per_attempt_and_provider(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "MIGRATIONS", db.MIGRATIONS[:6])
    old = state.connect(tmp_path / "s.db")
    chain = state.open_chain(old, "/p", "2026-11-27", ["a"], "claude", "r1")
    attempt = old.execute("SELECT id FROM attempts WHERE chain_id = ?", (chain,)).fetchone()[0]
    old.execute("INSERT INTO reservations (attempt_id, run_id, provider, estimate, pid, "
                "created_at) VALUES (?, 'r1', 'claude', 400, 1, 'then')", (attempt,))
    old.close()
    monkeypatch.undo()
    conn = state.connect(tmp_path / "s.db")
    conn.execute("INSERT INTO reservations (attempt_id, run_id, provider, estimate, pid, "
                 "created_at) VALUES (?, 'r1', 'codex', 600, 1, 'now')", (attempt,))
    assert [tuple(r) for r in conn.execute(
        "SELECT provider, estimate, open FROM reservations ORDER BY provider")] == [
        ("claude", 400, 1), ("codex", 600, 1)]
