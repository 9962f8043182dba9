"""Storage faults end in one clear line and exit 4, never a traceback, and lose no ledger row:
a corrupt, a locked, a full and a read-only state home, all real (SQLite files, a second
process holding the write lock, tmpfs and read-only bind mounts; the tests run as root)."""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from nightshift_tasks import state, storage
from tests.conftest import DODO, ROOT, Env, summary_rows

HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO projects (path) VALUES ('/held')")
print("holding", flush=True)
sys.stdin.read()  # until the test closes our stdin
conn.execute("COMMIT")
"""


def nightshift(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nightshift_tasks", *args, f"config={env.config}"],
                          cwd=env.tmp, env=env.environ(PYTHONPATH=str(ROOT)), capture_output=True,
                          text=True, timeout=120)


def ledger(db: Path, read_only: bool = False) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(f"file:{db}?immutable=1", uri=True) if read_only else sqlite3.connect(db)
    try:
        return [tuple(r) for r in conn.execute("SELECT project_path, task, status FROM attempts "
                                               "ORDER BY id")]
    finally:
        conn.close()


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def ran(env: Env) -> Env:
    """One project with a finished chain: the ledger holds rows a fault must not lose."""
    env.projects(["alpha"], schedule={"max_tasks": 3})
    first = env.doit("run")
    assert first.returncode == 0, first.stderr
    assert len(ledger(env.home / "state.db")) == 3
    return env


def _garbage(db: Path) -> None:
    db.write_bytes(b"this is no sqlite database " * 200)


def _truncated(db: Path) -> None:
    with db.open("r+b") as fh:
        fh.truncate(db.stat().st_size // 2)


def _garbled(db: Path) -> None:
    data = bytearray(db.read_bytes())
    data[4096:] = bytes((i * 7 + 13) % 256 for i in range(len(data) - 4096))
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_garbage, _truncated, _garbled])
def test_a_corrupt_ledger_is_moved_aside_never_overwritten(ran: Env, damage: object) -> None:
    db = ran.home / "state.db"
    assert not Path(f"{db}-wal").exists() and db.stat().st_size > 8192  # all in the main file
    damage(db)  # type: ignore[operator]
    broken = db.read_bytes()
    result = ran.doit("run")
    assert result.returncode == storage.EXIT_STORAGE
    line = one_line(result.stderr)
    (moved,) = storage.quarantined(db)
    assert line.startswith(f"nightshift: state database {db} is corrupt (")
    assert line.endswith(f"); moved aside to {moved}; `nightshift-tasks doctor` reports it, and "
                         "the next run starts a fresh ledger")
    assert moved.read_bytes() == broken and not db.exists()
    assert len(ran.calls()) == 9  # nothing ran on a ledger it cannot trust
    doctor = nightshift(ran, "doctor")
    assert f"[WARN] corrupt state db: {moved} was moved aside; salvage rows with `sqlite3 {moved} " \
        ".recover`, then delete it" in doctor.stdout.splitlines()
    assert moved.read_bytes() == broken


@pytest.mark.parametrize("command", ["list", "status", "doctor"])
def test_every_command_that_opens_a_corrupt_ledger_moves_it_aside(env: Env, command: str) -> None:
    env.projects(["alpha"], schedule={"max_tasks": 3})
    db = env.home / "state.db"
    db.parent.mkdir()
    _garbage(db)
    result = env.doit("list") if command == "list" else nightshift(env, command)
    (moved,) = storage.quarantined(db)
    if command == "doctor":
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f"[FAIL] state db: {db}: state database {db} is corrupt (file is not a database); " \
            f"moved aside to {moved}" in result.stdout
    else:
        assert result.returncode == storage.EXIT_STORAGE
        assert one_line(result.stderr).startswith(f"nightshift: state database {db} is corrupt "
                                                  f"(file is not a database); moved aside to {moved};")
    assert moved.read_bytes().startswith(b"this is no sqlite database")
    again = env.doit("list")  # the next command starts a fresh ledger
    assert again.returncode == 0 and "alpha" in again.stdout and storage.quarantined(db) == [moved]


@pytest.fixture
def holder(ran: Env) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the ledger's write lock until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(ran.home / "state.db")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "holding\n"
    yield proc
    proc.kill()
    proc.wait()


def test_a_locked_ledger_is_waited_for_with_a_note(ran: Env, holder: subprocess.Popen[str]) -> None:
    db = ran.home / "state.db"
    run = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), "run", "-a", "alpha",
                            f"config={ran.config}"], cwd=ran.tmp, env=ran.environ(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert run.stderr is not None and run.stdout is not None
    note = run.stderr.readline()
    assert note == f"nightshift: waiting up to 60s for {db}: another process holds its write lock\n"
    assert holder.stdin is not None
    holder.stdin.close()  # the other process commits and lets go
    assert holder.wait(timeout=30) == 0
    out, err = run.stdout.read(), run.stderr.read()
    assert run.wait(timeout=120) == 0, err
    assert "Traceback" not in err and summary_rows(out)["alpha"][:2] == ["command", "3"]
    assert len(ledger(db)) == 6  # the first run's rows, the forced rerun's
    assert sqlite3.connect(db).execute("SELECT path FROM projects WHERE path = '/held'").fetchone()


def test_a_lock_held_past_the_bound_fails_clearly(ran: Env,
                                                  holder: subprocess.Popen[str]) -> None:
    ran.write_config({"budget": {"db_lock_wait": "3s"}})
    db = ran.home / "state.db"
    began = time.monotonic()
    result = ran.doit("run", "-a", "alpha")
    took = time.monotonic() - began
    assert result.returncode == storage.EXIT_STORAGE
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"nightshift: waiting up to 3s for {db}: another process holds its write lock",
        f"nightshift: state database {db} stayed locked by another process for 3s; find it with "
        f"`fuser {db}`, let it finish or stop it, then rerun (budget.db_lock_wait sets the wait)"]
    assert 3 <= took < 15
    assert len(ran.calls()) == 9 and len(ledger(db)) == 3  # nothing ran, nothing lost


@pytest.fixture
def mounted(env: Env) -> Iterator[list[Path]]:
    """Mount points the test sets up at env.home; lazily unmounted at teardown."""
    points: list[Path] = []
    yield points
    for point in reversed(points):
        subprocess.run(["umount", "-l", str(point)], check=True)


def mount(points: list[Path], *args: str) -> None:
    subprocess.run(["mount", *args], check=True)
    points.append(Path(args[-1]))


def fill(directory: Path) -> Path:
    """Write until the disk says ENOSPC; the file keeps the space."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as fh:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_stops_the_run_with_one_line_and_loses_no_row(env: Env,
                                                                  mounted: list[Path]) -> None:
    env.home.mkdir()
    mount(mounted, "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(env.home))
    env.projects(["alpha"], schedule={"max_tasks": 3})
    assert env.doit("run").returncode == 0
    before = ledger(env.home / "state.db")
    filler = fill(env.home)
    result = env.doit("run", "-a", "alpha")
    assert result.returncode == storage.EXIT_STORAGE
    line = one_line(result.stderr)
    assert line.startswith(f"nightshift: cannot write {env.home}/"), line
    assert line.endswith(": the disk is full; free space on it, then rerun")
    filler.unlink()
    assert ledger(env.home / "state.db") == before
    assert env.doit("run", "-a", "alpha").returncode == 0


def test_a_disk_filled_during_a_task_is_recorded_and_the_chain_goes_on(
        env: Env, mounted: list[Path]) -> None:
    env.home.mkdir()
    mount(mounted, "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(env.home))
    real = env.tmp / "real-agent"
    real.write_bytes(env.agent.read_bytes())
    real.chmod(0o755)
    # In lint-fix's implement phase the agent fills the disk from inside its worktree.
    env.agent.write_text('#!/bin/sh\ncase "$1" in *"implement phase"*"[lint-fix]"*|'
                         '*"[lint-fix]"*"implement phase"*) cat /dev/zero > filler 2>/dev/null;; esac\n'
                         f'exec {real} "$@"\n')
    env.projects(["alpha"], schedule={"max_tasks": 3})
    result = env.doit("run")
    assert result.returncode == storage.EXIT_STORAGE, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    rows = {task: (status, error) for task, status, error in sqlite3.connect(
        env.home / "state.db").execute("SELECT task, status, error FROM attempts")}
    status, error = rows.pop("lint-fix")
    assert status == "failed"
    iterations = sqlite3.connect(env.home / "state.db").execute(
        "SELECT iterations FROM attempts WHERE task = 'lint-fix'").fetchone()
    assert iterations == (0,)  # the loop's own count went with its exception: none recorded
    assert re.fullmatch(f"cannot write {env.home}/(state\\.db|logs/.*\\.log): the disk is full; "
                        "free space on it, then rerun", error), error
    assert rows == {"docs-backfill": ("completed", None), "dead-code": ("completed", None)}
    assert f"alpha:lint-fix: failed: {error}" in result.stdout


def test_a_task_log_that_cannot_be_made_fails_the_task_with_one_line(
        env: Env, mounted: list[Path]) -> None:
    """Today's log directory is read-only: the task fails before it starts, as a storage
    fault of one line (the run exits 4), under the project's first provider."""
    day = env.home / "logs" / date.today().isoformat()
    day.mkdir(parents=True)
    mount(mounted, "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(day))
    env.projects(["alpha"])
    env.write_config({"providers": {"preference": ["command", "copilot"],
                                    "copilot": {"enabled": True, "binary": str(env.agent)}}})
    result = env.doit("run")
    assert result.returncode == storage.EXIT_STORAGE, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert env.calls() == []
    error = (f"cannot write {re.escape(str(day))}/alpha--lint-fix--"
             r"\d{8}-\d{6}-\d+\.log: the file system is read-only; remount it read-write or point "
             r"\$NIGHTSHIFT_HOME elsewhere")
    assert re.search(f"  alpha:lint-fix: failed: {error}\n", result.stdout), result.stdout
    assert summary_rows(result.stdout)["alpha"][:3] == ["command", "0", "1"]


def test_a_read_only_home_fails_with_one_line(ran: Env, mounted: list[Path]) -> None:
    before = ledger(ran.home / "state.db")
    mount(mounted, "--bind", str(ran.home), str(ran.home))
    subprocess.run(["mount", "-o", "remount,bind,ro", str(ran.home)], check=True)
    advice = "the file system is read-only; remount it read-write or point $NIGHTSHIFT_HOME elsewhere"
    for result in (ran.doit("run", "-a", "alpha"), nightshift(ran, "status")):
        assert result.returncode == storage.EXIT_STORAGE
        assert one_line(result.stderr) == f"nightshift: cannot write {ran.home}/state.db: {advice}"
    assert ledger(ran.home / "state.db", read_only=True) == before


def test_home_and_files_are_private(env: Env) -> None:
    env.projects(["alpha"], schedule={"max_tasks": 3})
    result = env.doit("run")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(env.home.stat().st_mode) == 0o700
    seen = set()
    for path in env.home.rglob("*"):
        if "worktrees" in path.relative_to(env.home).parts[1:]:
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
        seen.add(path.relative_to(env.home).parts[0])
    assert {"state.db", "doit.sqlite", "run.lock", "logs", "reports"} <= seen


def test_a_relative_home_is_taken_from_where_the_command_ran(env: Env) -> None:
    env.projects(["alpha"], schedule={"max_tasks": 3})
    work = env.tmp / "work"
    work.mkdir()
    before = set(ROOT.iterdir())
    result = subprocess.run([sys.executable, "-m", "doit", "-f", str(DODO), "run",
                             f"config={env.config}"], cwd=work, capture_output=True, text=True,
                            env={**env.environ(), "NIGHTSHIFT_HOME": "rel-home"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert summary_rows(result.stdout)["alpha"][:2] == ["command", "3"]
    assert set(ROOT.iterdir()) == before  # doit runs in the checkout; nothing lands there
    home = work / "rel-home"
    assert len(ledger(home / "state.db")) == 3
    assert {c.cwd.parent for c in env.calls()} == {home / "worktrees"}
    assert not env.home.exists()


def test_home_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nightshift_tasks.paths import nightshift_home, pin_home

    monkeypatch.chdir(tmp_path)
    assert nightshift_home({"NIGHTSHIFT_HOME": "rel"}) == tmp_path / "rel"
    env = {"NIGHTSHIFT_HOME": "rel"}
    pin_home(tmp_path / "elsewhere", env)
    assert env == {"NIGHTSHIFT_HOME": str(tmp_path / "elsewhere" / "rel")}


def test_a_write_past_the_bound_raises_a_storage_error(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    conn = state.connect(db, lock_wait=0.0)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(storage.StorageError, match="stayed locked by another process for 2s"):
        state.clear_stale_assignments(conn, state.timedelta(hours=1))
    other.execute("ROLLBACK")
    assert not conn.in_transaction
    assert os.stat(db).st_mode & 0o777 == 0o600
