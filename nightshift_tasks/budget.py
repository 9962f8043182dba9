"""The token allowance of a provider for the current period (§5.3 of the behaviour spec),
from the usage its own files show, and the run-time reservations made against it."""

from __future__ import annotations

import math
import sqlite3
import statistics
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from nightshift_tasks import state
from nightshift_tasks.process import alive
from nightshift_tasks.usage import Reading, week_start

WEEKDAYS = {"monday": 0, "sunday": 6}
ESTIMATE_RUNS = 5  # the estimate is the median of this many latest measured runs


@dataclass(frozen=True)
class Allowance:
    provider: str
    weekly: int
    weekly_source: str
    used_today: int
    used_week: int
    reader: str
    used_percent: float
    allowance: int
    equation: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def weekly_budget(budget: dict[str, Any], provider: str) -> tuple[int, str]:
    per = (budget.get("per_provider") or {}).get(provider)
    if per:
        return int(per), f"budget.per_provider.{provider}"
    return int(budget["weekly_tokens"]), "budget.weekly_tokens"


def days_left_in_week(budget: dict[str, Any], at: datetime) -> int:
    """Days until the week resets, counting today: 7 on the first day, 1 on the last."""
    start = WEEKDAYS[budget["week_start_day"]]
    return 7 - (at.weekday() - start) % 7


def days_to_reset(budget: dict[str, Any], reading: Reading, at: datetime) -> tuple[int, str]:
    """Days the remaining weekly tokens are spread over, and what set them.

    A provider that reports its weekly window's reset (codex: `rate_limits.secondary.
    resets_at`, unix seconds) is believed: ceil(time to reset / 24h), at least 1. Otherwise
    the local week of `budget.week_start_day`.
    """
    resets_at = (reading.rate_limits.get("secondary") or {}).get("resets_at")
    if isinstance(resets_at, int | float) and not isinstance(resets_at, bool) and resets_at > 0:
        return max(1, math.ceil((resets_at - at.timestamp()) / 86400)), "reported weekly reset"
    return days_left_in_week(budget, at), "local week"


def multiplier(budget: dict[str, Any], days_left: int) -> float:
    """aggressive_end_of_week: 2x with two days left and 3x on the last day.

    The original's formula (3 - days) gives 1x and 2x, not what its comment promised.
    """
    if budget["aggressive_end_of_week"] and days_left <= 2:
        return 2.0 if days_left == 2 else 3.0
    return 1.0


def _codex_percent(reading: Reading, window: str) -> float | None:
    limit = reading.rate_limits.get(window) or {}
    value = limit.get("used_percent")
    return float(value) if isinstance(value, int | float) else None


def compute(budget: dict[str, Any], provider: str, reading: Reading, at: datetime) -> Allowance:
    """The allowance with the equation that produced it, for the plan and the budget view."""
    weekly, source = weekly_budget(budget, provider)
    today = at.date()
    used_today = reading.since(today, today)
    used_week = reading.since(week_start(at, budget["week_start_day"]), today)
    share, reserve = budget["max_percent"] / 100, budget["reserve_percent"] / 100
    if budget["mode"] == "daily":
        base = weekly // 7
        percent = used_today / base * 100 if base else 100.0
        if provider == "codex" and not used_today:
            percent = _codex_percent(reading, "primary") or 0.0
        available = base * max(0.0, 100 - percent) / 100
        value = available * share - base * reserve
        equation = (f"{base:,} daily x (1 - {percent:.1f}% used) x {budget['max_percent']}% - "
                    f"{base * reserve:,.0f} reserve")
    else:
        days, until = days_to_reset(budget, reading, at)
        codex_week = _codex_percent(reading, "secondary") if provider == "codex" else None
        percent = codex_week if codex_week is not None else used_week / weekly * 100
        remaining = weekly * max(0.0, 100 - percent) / 100
        factor = multiplier(budget, days)
        value = remaining / days * share * factor - remaining * reserve
        equation = (f"{remaining:,.0f} left this week / {days} day(s) to the {until} x "
                    f"{budget['max_percent']}% x {factor:g} - {remaining * reserve:,.0f} reserve")
    allowance = max(0, int(value + 1e-6))  # float noise must not cost a token
    return Allowance(provider, weekly, source, used_today, used_week, reading.source, percent,
                     allowance, f"{equation} = {allowance:,}")


def estimates(conn: sqlite3.Connection, provider: str) -> dict[str, tuple[int, int]]:
    """Per task: (median measured tokens of its latest completed runs on the provider, runs)."""
    found: dict[str, list[int]] = {}
    for row in conn.execute("SELECT task, tokens FROM attempts a WHERE provider = ? AND "
                            "status = 'completed' AND tokens > 0 AND NOT EXISTS (SELECT 1 FROM "
                            "calls c WHERE c.attempt_id = a.id AND c.usage_known = 0) "
                            "ORDER BY id DESC", (provider,)):
        runs = found.setdefault(row["task"], [])
        if len(runs) < ESTIMATE_RUNS:
            runs.append(int(row["tokens"]))
    return {task: (int(statistics.median(runs)), len(runs)) for task, runs in found.items()}


# Unknown usage (a command that reported none, or a malformed report) is not zero: the
# reservation of an attempt with such a call stays charged at max(estimate, settled) after
# the task ends, and such an attempt teaches no estimate.
UNKNOWN_USAGE = "COALESCE(MIN(c.usage_known), 1) = 0"


def _charged(conn: sqlite3.Connection, run_id: str, provider: str) -> int:
    """Settled usage plus what open reservations still hold back, for one run and provider.

    An open reservation holds max(estimate, settled so far); once its task ends, or its
    process died, only what was measured counts, unless a call's usage is unknown.
    """
    total = 0
    for row in conn.execute(
            "SELECT r.estimate, r.pid, r.open, COALESCE(SUM(c.tokens), 0) AS settled, "
            f"{UNKNOWN_USAGE} AS unknown FROM reservations r LEFT JOIN calls c "
            "ON c.attempt_id = r.attempt_id WHERE r.run_id = ? AND r.provider = ? "
            "GROUP BY r.attempt_id", (run_id, provider)):
        held = (row["open"] and alive(row["pid"])) or row["unknown"]
        total += max(row["estimate"], row["settled"]) if held else row["settled"]
    return total


def reserve(conn: sqlite3.Connection, attempt_id: int, run_id: str, provider: str, estimate: int,
            allowance: int, pid: int) -> tuple[bool, int]:
    """Reserve the estimate if it fits what is left of the run's allowance: (fits, left)."""
    with state.write(conn):
        left = allowance - _charged(conn, run_id, provider)
        if estimate > left:
            return False, max(0, left)
        conn.execute("INSERT INTO reservations (attempt_id, run_id, provider, estimate, pid, "
                     "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                     (attempt_id, run_id, provider, estimate, pid, state.stamp(state.now())))
    return True, left - estimate


def release(conn: sqlite3.Connection, attempt_id: int) -> None:
    """The task ended: from now on only its measured usage counts."""
    with state.write(conn):
        conn.execute("UPDATE reservations SET open = 0 WHERE attempt_id = ?", (attempt_id,))


def open_reserved(conn: sqlite3.Connection, provider: str) -> int:
    """Tokens held back right now by running tasks of any run (beyond what they measured)."""
    held = 0
    for row in conn.execute(
            "SELECT r.estimate, r.pid, COALESCE(SUM(c.tokens), 0) AS settled FROM reservations r "
            "LEFT JOIN calls c ON c.attempt_id = r.attempt_id WHERE r.provider = ? AND r.open = 1 "
            "GROUP BY r.attempt_id", (provider,)):
        if alive(row["pid"]):
            held += max(0, row["estimate"] - row["settled"])
    return held


def run_spent(conn: sqlite3.Connection, run_id: str, provider: str) -> tuple[int, int]:
    """(settled, still reserved) for the budget line of the run summary."""
    charged = _charged(conn, run_id, provider)
    settled = int(conn.execute(
        "SELECT COALESCE(SUM(c.tokens), 0) FROM calls c JOIN reservations r ON r.attempt_id = "
        "c.attempt_id WHERE r.run_id = ? AND r.provider = ?", (run_id, provider)).fetchone()[0])
    return settled, charged - settled
