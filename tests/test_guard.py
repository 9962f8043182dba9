"""The daily guard in process: what it answers from the ledger, and that it never raises
(doit aborts or hangs when an uptodate check does)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from nightshift_tasks import guard, state, storage


def test_a_project_with_nothing_planned_is_up_to_date(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    assert guard.done_today(str(db), "/p") is True
    assert guard.DailyGuard(str(db), "/p", ())() is True
    assert not db.exists()  # nothing to check, so the ledger is not even opened


def test_up_to_date_only_when_every_named_task_finished_today(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    conn = guard.connection(db)
    assert guard.done_today(db, "/p", "lint-fix") is False  # no chain today
    chain = state.open_chain(conn, "/p", date.today().isoformat(), ["lint-fix", "docs-backfill"],
                             "command", "r")
    attempt = state.start_attempt(conn, chain, "r", "/p", "lint-fix", "command", 1, "log")
    assert guard.done_today(db, "/p", "lint-fix") is False  # running is not finished
    state.finish_attempt(conn, attempt, state.Outcome("completed"))
    assert guard.done_today(db, "/p", "lint-fix") is True
    assert guard.DailyGuard(db, "/p", ("lint-fix",))() is True
    assert guard.done_today(db, "/p", "lint-fix", "docs-backfill") is False
    assert guard.done_today(db, "/q", "lint-fix") is False  # another project's chain


def test_an_unreadable_ledger_runs_the_project_anyway(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "s.db"
    db.mkdir()  # no database can be opened there
    assert guard.done_today(str(db), "/p", "lint-fix") is False
    err = capsys.readouterr().err
    assert err.startswith(f"nightshift: warning: cannot read {db} (")
    assert err.endswith("); running /p anyway\n")


def test_the_first_callers_lock_wait_holds_and_none_means_no_wait(tmp_path: Path) -> None:
    first = guard.connection(str(tmp_path / "a.db"))
    assert first.lock_wait == 0.0  # type: ignore[attr-defined]
    assert guard.connection(str(tmp_path / "a.db"), 5.0) is first
    assert first.lock_wait == 0.0  # type: ignore[attr-defined]
    assert guard.connection(str(tmp_path / "b.db"), 5.0).lock_wait == 5.0  # type: ignore[attr-defined]


def test_the_ledger_is_checked_page_by_page_when_first_opened(tmp_path: Path) -> None:
    """Damage in pages that opening and migrating never read is still found, before a plan
    trusts the ledger."""
    db = tmp_path / "s.db"
    conn = state.connect(db)
    state.open_chain(conn, "/p", "2026-11-28", [f"task{i}" for i in range(300)], "command", "r")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(db.read_bytes())
    data[-8192:] = bytes((i * 7 + 13) % 256 for i in range(8192))  # the last two pages only
    db.write_bytes(bytes(data))
    with pytest.raises(storage.StorageError) as raised:
        guard.connection(str(db))
    (moved,) = storage.quarantined(db)
    # quick_check's own report: it found what no query had read yet.
    assert str(raised.value).startswith(f"state database {db} is corrupt (*** in database main ***")
    assert f"); moved aside to {moved}; `nightshift-tasks doctor` reports it" in str(raised.value)
