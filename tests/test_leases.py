from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path

from nightshift_tasks import leases, state


def test_cap_is_enforced_and_released(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    first = leases.try_acquire(conn, "claude", 2, 60)
    second = leases.try_acquire(conn, "claude", 2, 60)
    assert first and second
    assert leases.try_acquire(conn, "claude", 2, 60) is None
    assert leases.try_acquire(conn, "codex", 1, 60) is not None  # caps are per provider
    notes: list[str] = []
    conn.execute("DELETE FROM leases WHERE id = ?", (first,))
    with leases.slot(conn, "claude", 2, 60, notes.append):
        assert conn.execute("SELECT COUNT(*) FROM leases WHERE provider='claude'").fetchone()[0] == 2
    assert conn.execute("SELECT COUNT(*) FROM leases WHERE provider='claude'").fetchone()[0] == 1
    assert notes == []


def test_a_dead_holder_or_an_expired_lease_frees_the_slot(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    dead = subprocess.Popen(["true"])
    dead.wait()
    conn.execute("INSERT INTO leases (provider, pid, acquired_at, expires_at) VALUES "
                 "('claude', ?, '2000-01-01', '2999-01-01')", (dead.pid,))
    assert leases.try_acquire(conn, "claude", 1, 60) is not None
    conn.execute("DELETE FROM leases")
    conn.execute("INSERT INTO leases (provider, pid, acquired_at, expires_at) VALUES "
                 "('claude', 1, '2000-01-01', '2000-01-02')")
    assert leases.try_acquire(conn, "claude", 1, 60) is not None


def test_a_waiting_task_gets_the_slot_when_its_holder_dies(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    holder = subprocess.Popen(["sleep", "60"])
    conn.execute("INSERT INTO leases (provider, pid, acquired_at, expires_at) VALUES "
                 "('claude', ?, '2000-01-01', '2999-01-01')", (holder.pid,))
    notes: list[str] = []
    waiting = threading.Event()

    def note(text: str) -> None:
        notes.append(text)
        waiting.set()

    def take() -> None:
        own = state.connect(tmp_path / "s.db")
        with leases.slot(own, "claude", 1, 60, note):
            notes.append("inside")

    worker = threading.Thread(target=take)
    worker.start()
    assert waiting.wait(10)
    assert notes == ["waiting for a claude slot (providers.claude.max_concurrent = 1)"]
    holder.kill()
    holder.wait()
    worker.join(10)
    waited = re.fullmatch(r"got a claude slot after (\d+\.\d)s", notes[1])
    assert waited and float(waited[1]) < 10 and notes[2] == "inside"


def test_a_lowered_cap_is_not_exceeded_by_slots_taken_under_a_higher_one(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    assert all(leases.try_acquire(conn, "claude", 3, 60) for _ in range(3))
    assert leases.try_acquire(conn, "claude", 2, 60) is None
