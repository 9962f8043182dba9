"""The token allowance of a provider for the current period (§5.3 of the behaviour spec),
from the usage its own files show, and the run-time reservations made against it."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from nightshift_tasks import fleet, state
from nightshift_tasks.db import Conn, host_id, write_one
from nightshift_tasks.usage import Reading, week_start

WEEKDAYS = {"monday": 0, "sunday": 6}
ESTIMATE_RUNS = 10  # the estimate is learned from this many latest measured runs
POLL_SECONDS = 0.2  # how often a task waiting for reservations to settle reads the ledger


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


def _reported_percent(reading: Reading, window: str) -> float | None:
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
        reported = None if used_today else _reported_percent(reading, "primary")
        if reported is not None:  # what the provider says (codex), when we saw nothing today
            percent = reported
        available = base * max(0.0, 100 - percent) / 100
        value = available * share - base * reserve
        equation = (f"{base:,} daily x (1 - {percent:.1f}% used) x {budget['max_percent']}% - "
                    f"{base * reserve:,.0f} reserve")
    else:
        days, until = days_to_reset(budget, reading, at)
        reported = _reported_percent(reading, "secondary")
        percent = reported if reported is not None else used_week / weekly * 100
        remaining = weekly * max(0.0, 100 - percent) / 100
        factor = multiplier(budget, days)
        value = remaining / days * share * factor - remaining * reserve
        equation = (f"{remaining:,.0f} left this week / {days} day(s) to the {until} x "
                    f"{budget['max_percent']}% x {factor:g} - {remaining * reserve:,.0f} reserve")
    allowance = max(0, int(value + 1e-6))  # float noise must not cost a token
    return Allowance(provider, weekly, source, used_today, used_week, reading.source, percent,
                     allowance, f"{equation} = {allowance:,}")


def estimates(conn: Conn, provider: str) -> dict[str, tuple[int, int]]:
    """Per task: (the 80th percentile of the measured tokens of its latest completed runs on
    the provider, runs).

    Not the median: reservations are summed, and usage is skewed. Under `-n`, tasks that
    overrun a median estimate are not offset by those under it (their room is reserved
    again at once), so the overruns add up past the allowance (bench/budget_night.py). One
    outlier among ten runs does not move the 80th percentile. A run counts for the provider
    only when the provider made all of its measured calls: a task that failed over part-way
    teaches neither provider's estimate.
    """
    found: dict[str, list[int]] = {}
    for row in conn.execute(
            "SELECT a.task, SUM(c.tokens) AS tokens FROM attempts a JOIN calls c ON "
            "c.attempt_id = a.id WHERE a.status = 'completed' GROUP BY a.id HAVING "
            "SUM(c.tokens) > 0 AND SUM(CASE WHEN c.provider = ? THEN 0 ELSE c.tokens END) = 0 "
            "AND MIN(c.usage_known) = 1 ORDER BY a.id DESC", (provider,)):
        runs = found.setdefault(row["task"], [])
        if len(runs) < ESTIMATE_RUNS:
            runs.append(int(row["tokens"]))
    return {task: (high_quantile(runs), len(runs)) for task, runs in found.items()}


def high_quantile(runs: list[int]) -> int:
    """The 80th percentile, interpolated between the sorted runs (one run: that run)."""
    if len(runs) == 1:
        return runs[0]
    return int(statistics.quantiles(runs, n=5, method="inclusive")[3])  # cut points 20..80 %


@dataclass(frozen=True)
class Ask:
    """One task's reservation request against a provider's allowance for the run."""

    attempt_id: int
    run_id: str
    provider: str
    estimate: int
    allowance: int
    pid: int
    fleet_day: str | None = None  # on a fleet's ledger: the day whose spend, fleet-wide, counts


@dataclass(frozen=True)
class Standing:
    """Where the run stands with a provider: measured usage, what running tasks hold, and
    what ended tasks whose usage is unknown keep (that never settles: nothing to wait for)."""

    settled: int
    held: int
    kept: int = 0

    def left(self, allowance: int) -> int:
        return max(0, allowance - self.settled - self.held - self.kept)


def settled(conn: Conn, run_id: str, provider: str, fleet_day: str | None = None) -> int:
    """What the run's calls to the provider measured, whichever task made them; on a fleet's
    ledger, what every machine's calls measured on `fleet_day`."""
    if fleet_day is not None:
        return int(conn.execute(
            "SELECT COALESCE(SUM(tokens), 0) FROM calls WHERE provider = ? AND "
            "substr(started_at, 1, 10) = ?", (provider, fleet_day)).fetchone()[0])
    return int(conn.execute(
        "SELECT COALESCE(SUM(c.tokens), 0) FROM calls c JOIN attempts a ON a.id = c.attempt_id "
        "WHERE a.run_id = ? AND c.provider = ?", (run_id, provider)).fetchone()[0])


def _holds(conn: Conn, provider: str, run_id: str | None) -> tuple[int, int]:
    """(held, kept) beyond the usage measured on the provider: what open reservations of
    running tasks hold (of one run, or of every run; a dead holder holds nothing), and what
    a run's ended tasks keep because a call's usage is unknown (a command that reported none,
    or a malformed report). Across runs the usage reader counts the kept part on its day."""
    held = kept = 0
    holds = fleet.liveness(conn)
    for row in conn.execute(
            "SELECT r.estimate, r.host, r.pid, r.open, COALESCE(SUM(c.tokens), 0) AS settled, "
            "COALESCE(MIN(c.usage_known), 1) = 0 AS unknown FROM reservations r "
            "LEFT JOIN calls c ON c.attempt_id = r.attempt_id AND c.provider = r.provider "
            "WHERE r.provider = ? AND (? IS NULL AND r.open = 1 OR r.run_id = ?) "
            "GROUP BY r.attempt_id, r.provider", (provider, run_id, run_id)):
        beyond = max(0, row["estimate"] - row["settled"])
        if row["open"] and holds(row["host"], row["pid"]):
            held += beyond
        elif run_id is not None and row["unknown"]:
            kept += beyond
    return held, kept


def standing(conn: Conn, run_id: str, provider: str, fleet_day: str | None = None) -> Standing:
    """Against the run's allowance; on a fleet's ledger, against the fleet's for the day:
    every machine's measured spend that day, and every live machine's open reservations."""
    if fleet_day is not None:
        return Standing(settled(conn, run_id, provider, fleet_day), *_holds(conn, provider, None))
    return Standing(settled(conn, run_id, provider), *_holds(conn, provider, run_id))


def reserve(conn: Conn, ask: Ask) -> tuple[bool, Standing]:
    """Reserve the estimate if it fits what is left of the run's allowance: (fits, where the
    run stood before)."""
    with state.write(conn, f"budget {ask.provider}"):
        now = standing(conn, ask.run_id, ask.provider, ask.fleet_day)
        if ask.estimate > now.left(ask.allowance):
            return False, now
        conn.execute("INSERT INTO reservations (attempt_id, run_id, provider, estimate, host, pid, "
                     "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (attempt_id, provider) "
                     "DO UPDATE SET run_id = excluded.run_id, estimate = excluded.estimate, host = "
                     "excluded.host, pid = excluded.pid, open = 1, created_at = excluded.created_at",
                     (ask.attempt_id, ask.run_id, ask.provider, ask.estimate, host_id(), ask.pid,
                      state.stamp(state.now())))
    return True, now


def reserve_waiting(conn: Conn, ask: Ask, patience: Callable[[], bool],
                    waiting: Callable[[Standing], None]) -> tuple[bool, Standing]:
    """Reserve; when only other tasks' open reservations stand in the way, wait for them to
    settle while `patience()` holds, polling the ledger. Skipped (False) only when settled
    usage alone leaves too little, or patience ran out."""
    fits, now = reserve(conn, ask)
    told = False
    while (not fits and now.held and ask.estimate <= ask.allowance - now.settled - now.kept
           and patience()):
        if not told:
            waiting(now)
            told = True
        time.sleep(POLL_SECONDS)
        now = standing(conn, ask.run_id, ask.provider, ask.fleet_day)  # a read; writes if it fits
        if ask.estimate <= now.left(ask.allowance):
            fits, now = reserve(conn, ask)
    return fits, now


def release(conn: Conn, attempt_id: int, provider: str | None = None) -> None:
    """The task ended (or left `provider`): from now on only its measured usage counts."""
    write_one(conn, "UPDATE reservations SET open = 0 WHERE attempt_id = ? AND "
              "(? IS NULL OR provider = ?)", (attempt_id, provider, provider))


def open_reserved(conn: Conn, provider: str) -> int:
    """Tokens held back right now by running tasks of any run (beyond what they measured)."""
    return _holds(conn, provider, None)[0]

