"""How much each provider has used today and this week: what the plan and the budget read.

Each provider's module in agents/ reads its own: claude and codex from their own history
files (scanned incrementally, see agents/readings.py), copilot and command from our ledger
(a finished task whose usage is partly unknown counts at least its reservation).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from nightshift_tasks.agents import PROVIDERS
from nightshift_tasks.agents.readings import Reading, read_ledger
from nightshift_tasks.db import Conn, on_server

__all__ = ["Reading", "read_usage", "week_start"]


def read_usage(conn: Conn, provider: str, settings: dict[str, Any],
               at: datetime) -> Reading:
    """On a fleet's ledger, what the ledger measured: one machine's usage files cannot see
    the others' spend. Today's is left out there: every reservation is checked against the
    fleet's spend of the day as it stands then (budget.standing)."""
    if on_server(conn):
        reading = read_ledger(conn, provider, at)
        reading.by_day.pop(at.date().isoformat(), None)
        return reading
    return PROVIDERS[provider].read_usage(conn, settings, at)


def week_start(at: datetime, week_start_day: str) -> date:
    start = 0 if week_start_day == "monday" else 6
    return at.date() - timedelta(days=(at.weekday() - start) % 7)
