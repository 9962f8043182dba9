"""Live progress on a terminal: one status line, redrawn every second and after every task
event, with the counts so far (the reporter's, which the summary table shows at the end) and
the projects in flight, their task, phase and elapsed time (read from the ledger, which the
workers update). Agent output never reaches the terminal, so nothing interleaves with it."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from nightshift_tasks import state, storage, terminal
from nightshift_tasks.db import Conn
from nightshift_tasks.durations import format_duration

REFRESH_SECONDS = 1.0
CLEAR = "\r\x1b[K"


def in_flight(conn: Conn, run_id: str, at: datetime) -> str:
    rows = conn.execute("SELECT project_path, task, phase, started_at FROM attempts "
                        "WHERE run_id = ? AND status = 'running' ORDER BY id", (run_id,)).fetchall()
    parts = [f"{Path(r['project_path']).name} {r['task']} {r['phase'] or 'starting'} "
             f"{format_duration((at - datetime.fromisoformat(r['started_at'])).total_seconds())}"
             for r in rows if r["started_at"]]
    return " | in flight: " + " | ".join(parts) if parts else ""


class LiveLine:
    """The status line; `write` prints other output above it without interleaving."""

    def __init__(self, stream: Any, db_path: str, run_id: str, counts: Callable[[], str]) -> None:
        self.stream, self.db_path, self.run_id, self.counts = stream, db_path, run_id, counts
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.flight = ""  # the last read of the ledger
        self.shown = ""
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        # doit forks its workers while this thread runs: a fork in the middle of its SQLite
        # call or stream write would leave the worker a lock nobody releases. So the thread
        # does both under self.lock, and a fork waits for it.
        os.register_at_fork(before=self.lock.acquire, after_in_parent=self.lock.release,
                            after_in_child=self.lock.release)
        self.thread.start()

    def _loop(self) -> None:
        with self.lock:
            conn = state.connect(self.db_path)  # the thread's own: it stays in its thread
        while not self.stopped.wait(REFRESH_SECONDS):
            try:
                with self.lock:
                    self.flight = in_flight(conn, self.run_id, state.now())
            except Exception as exc:  # a busy or unreachable DB only skips one refresh
                if not isinstance(exc, sqlite3.Error) and storage.describe(exc, self.db_path) is None:
                    raise
                continue
            self.write("")

    def write(self, text: str) -> None:
        """`text` above the line, then the line with the counts as they are now."""
        with self.lock:
            if self.stopped.is_set() and not text:
                return  # a refresh that lost the race with stop()
            self.shown = (self.counts() + self.flight)[: terminal.columns(self.stream) - 1]
            self.stream.write(CLEAR + text + self.shown)
            self.stream.flush()

    def stop(self) -> None:
        self.stopped.set()
        with self.lock:
            self.stream.write(CLEAR)
            self.shown = ""
