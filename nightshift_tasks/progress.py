"""Live progress on a terminal: one status line, redrawn every second, with the projects in
flight, their task, phase and elapsed time (read from the ledger, which the workers update).
Agent output never reaches the terminal, so nothing interleaves with it."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from nightshift_tasks import state
from nightshift_tasks.durations import format_duration

REFRESH_SECONDS = 1.0
CLEAR = "\r\x1b[K"


def in_flight(conn: sqlite3.Connection, run_id: str, at: datetime) -> str:
    rows = conn.execute("SELECT project_path, task, phase, started_at FROM attempts "
                        "WHERE run_id = ? AND status = 'running' ORDER BY id", (run_id,)).fetchall()
    parts = [f"{Path(r['project_path']).name} {r['task']} {r['phase'] or 'starting'} "
             f"{format_duration((at - datetime.fromisoformat(r['started_at'])).total_seconds())}"
             for r in rows if r["started_at"]]
    return "in flight: " + " | ".join(parts) if parts else ""


class LiveLine:
    """The status line; `write` prints other output above it without interleaving."""

    def __init__(self, stream: Any, db_path: Path, run_id: str) -> None:
        self.stream, self.db_path, self.run_id = stream, db_path, run_id
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.shown = ""
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        conn = state.connect(self.db_path)  # the thread's own: a connection stays in its thread
        while not self.stopped.wait(REFRESH_SECONDS):
            try:
                line = in_flight(conn, self.run_id, state.now())
            except sqlite3.Error:  # a busy DB only skips one refresh
                continue
            with self.lock:
                self.shown = line[: shutil.get_terminal_size().columns - 1]
                self.stream.write(CLEAR + self.shown)
                self.stream.flush()

    def write(self, text: str) -> None:
        with self.lock:
            self.stream.write(CLEAR + text + self.shown)
            self.stream.flush()

    def stop(self) -> None:
        self.stopped.set()
        with self.lock:
            self.stream.write(CLEAR)
            self.shown = ""
