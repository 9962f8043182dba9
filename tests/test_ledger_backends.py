"""The ledger's queries on both backends: the same calls give the same rows on the embedded
SQLite and on PostgreSQL."""

from __future__ import annotations

import os
from datetime import date

import pytest

from nightshift_tasks import budget, db, leases, state


def test_migrations_apply_once_on_each_backend(ledger: str) -> None:
    db.connect(ledger).close()
    conn = db.connect(ledger)
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, len(db.MIGRATIONS) + 1))


def test_a_chain_runs_and_closes_on_each_backend(ledger: str) -> None:
    conn = db.connect(ledger)
    day = date.today().isoformat()
    chain = state.open_chain(conn, "/p", day, ["a", "b"], "command", "r1")
    assert state.open_chain(conn, "/p", day, ["x"], "command", "r2") == chain
    first = state.start_attempt(conn, chain, "r1", "/p", "a", "command", 1, "/log")
    state.record_call(conn, first, "implement", "command", state.now(), 0, "ok", None,
                      {"tokens": 120, "cost_usd": 0.5})
    assert state.attempt_usage(conn, first)["tokens"] == 120
    assert state.finish_attempt(conn, first, state.Outcome("failed", 1, "boom")) is False
    second = state.start_attempt(conn, chain, "r1", "/p", "b", "command", 1, "/log")
    assert state.finish_attempt(conn, second, state.Outcome("completed", 2)) is True
    found = state.chain_for_day(conn, "/p", day)
    assert found is not None and found.status == {"a": "failed", "b": "completed"}
    assert tuple(conn.execute("SELECT status, error, tokens_used FROM run_history").fetchone()) == \
        ("partial", "a: boom", 120)
    assert state.forget_today(conn, "/p", day) == ["a", "b"]
    assert state.plan_reads(conn, day).chains["/p"].done == frozenset()


def test_reservations_and_leases_on_each_backend(ledger: str) -> None:
    conn = db.connect(ledger)
    chain = state.open_chain(conn, "/p", date.today().isoformat(), ["a"], "command", "r1")
    attempt = state.start_attempt(conn, chain, "r1", "/p", "a", "command", 1, "/log")
    other = state.start_attempt(conn, chain, "r1", "/p", "a", "command", 1, "/log")
    assert budget.reserve(conn, budget.Ask(attempt, "r1", "command", 600, 1000, os.getpid()))[0]
    fits, before = budget.reserve(conn, budget.Ask(other, "r1", "command", 600, 1000, os.getpid()))
    assert (fits, before) == (False, budget.Standing(settled=0, held=600))
    assert budget.open_reserved(conn, "command") == 600
    budget.release(conn, attempt)
    assert budget.open_reserved(conn, "command") == 0
    held = leases.try_acquire(conn, "command", 1, 60)
    assert held is not None and leases.try_acquire(conn, "command", 1, 60) is None


def test_writes_inside_a_write_are_one_transaction_on_each_backend(ledger: str) -> None:
    conn, other = db.connect(ledger), db.connect(ledger)
    day = date.today().isoformat()
    with pytest.raises(RuntimeError, match="boom"), db.write(conn, "claim /p"):
        state.open_chain(conn, "/p", day, ["a"], "command", "r1")  # a write of its own
        budget.release(conn, 1)  # a one-statement write of its own
        raise RuntimeError("boom")
    assert not conn.in_transaction and state.chain_for_day(conn, "/p", day) is None
    with db.write(conn):
        chain = state.open_chain(conn, "/p", day, ["a"], "command", "r1")
        state.start_attempt(conn, chain, "r1", "/p", "a", "command", 1, "/log")
        assert other.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 0
    assert [tuple(r) for r in other.execute("SELECT task, status FROM attempts")] == [("a", "running")]


def test_a_write_inside_a_write_takes_its_lock_too_on_postgresql(pg_url: str) -> None:
    conn = db.connect(pg_url)
    held = ("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND "
            "pid = pg_backend_pid() AND granted")
    with db.write(conn):
        assert conn.execute(held).fetchone()[0] == 0
        with db.write(conn, "claim /p"):
            assert conn.execute(held).fetchone()[0] == 1
    assert conn.execute(held).fetchone()[0] == 0
