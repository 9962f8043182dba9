"""The daily skip guard: doit's `uptodate` check, answered from our ledger.

doit saves its own state only when a run exits, so it cannot know what a killed or
parallel run did. The guard must never raise: doit aborts (or hangs) when one does.
"""

from __future__ import annotations

import functools
import sqlite3
import sys
from datetime import date
from pathlib import Path

from nightshift_tasks import state


@functools.cache
def connection(db_path: str) -> sqlite3.Connection:
    return state.connect(Path(db_path))


def done_today(db_path: str, project_path: str, slug: str) -> bool:
    """True when the task already reached a final status in today's chain of the project."""
    try:
        chain = state.chain_for_day(connection(db_path), project_path, date.today().isoformat())
        return chain is not None and chain.status.get(slug) in state.TERMINAL
    except Exception as exc:
        print(f"nightshift: warning: cannot read {db_path} ({exc}); running {slug} anyway",
              file=sys.stderr)
        return False
