"""The daily skip guard: doit's `uptodate` check, answered from our ledger.

doit saves its own state only when a run exits, so it cannot know what a killed or
parallel run did. The guard must never raise: doit aborts (or hangs) when one does.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import date

from nightshift_tasks import state
from nightshift_tasks.db import Conn

_open: dict[tuple[str, int], Conn] = {}


def connection(db_path: str, lock_wait: float = 0.0) -> Conn:
    """The process's one connection to the ledger, checked for corruption; the first
    caller's lock_wait (the config's budget.db_lock_wait) holds for all of them. A forked
    doit worker opens its own: a server connection must not be shared across processes
    (the parent's stays referenced, so the child never closes it)."""
    key = (db_path, os.getpid())
    if key not in _open:
        _open[key] = state.connect(db_path, lock_wait, check=True)
    return _open[key]


def done_today(db_path: str, project_path: str, *slugs: str) -> bool:
    """True when every named task reached a final status in the project's chain today.

    With no slugs (a skipped project) there is nothing to run, so it is up to date.
    """
    if not slugs:
        return True
    try:
        chain = state.chain_for_day(connection(db_path), project_path, date.today().isoformat())
        return chain is not None and set(slugs) <= chain.done
    except Exception as exc:
        print(f"nightshift: warning: cannot read {db_path} ({exc}); running {project_path} anyway",
              file=sys.stderr)
        return False


@dataclass(frozen=True)
class DailyGuard:
    """done_today as an object, so that `doit info` can say what the guard checks instead of
    showing a function's address. Plain data: it pickles under any start method."""

    db_path: str
    project_path: str
    slugs: tuple[str, ...]

    def __call__(self) -> bool:
        return done_today(self.db_path, self.project_path, *self.slugs)

    def __repr__(self) -> str:
        tasks = ", ".join(self.slugs) or "(none planned)"
        return f"daily guard: {tasks} finished today in {self.project_path} (`forget` clears it)"
