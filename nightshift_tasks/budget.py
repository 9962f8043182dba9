"""The token allowance of a provider for the current period (§5.3 of the behaviour spec).

Until usage is read from the providers' own files, usage counts as zero, so this is the
most a run may plan for, not what is left.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

WEEKDAYS = {"monday": 0, "sunday": 6}


def weekly_budget(budget: dict[str, Any], provider: str) -> int:
    value: int = (budget.get("per_provider") or {}).get(provider) or budget["weekly_tokens"]
    return value


def days_left_in_week(budget: dict[str, Any], at: datetime) -> int:
    """Days until the week resets, counting today: 7 on the first day, 1 on the last."""
    start = WEEKDAYS[budget["week_start_day"]]
    return 7 - (at.weekday() - start) % 7


def multiplier(budget: dict[str, Any], days_left: int) -> float:
    """aggressive_end_of_week: 2x with two days left and 3x on the last day.

    The original's formula (3 - days) gives 1x and 2x, not what its comment promised.
    """
    if budget["aggressive_end_of_week"] and days_left <= 2:
        return 2.0 if days_left == 2 else 3.0
    return 1.0


def allowance(budget: dict[str, Any], provider: str, at: datetime) -> int:
    """Tokens this run may spend on the provider, after the reserve, floored at zero."""
    weekly = weekly_budget(budget, provider)
    share, reserve = budget["max_percent"] / 100, budget["reserve_percent"] / 100
    if budget["mode"] == "daily":
        base = weekly // 7
        value = base * share - base * reserve
    else:
        days = days_left_in_week(budget, at)
        value = weekly / days * share * multiplier(budget, days) - weekly * reserve
    return max(0, int(value))
