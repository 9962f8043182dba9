from __future__ import annotations

from datetime import datetime

import pytest

from nightshift_tasks.budget import allowance, days_left_in_week

BASE = {"mode": "daily", "max_percent": 75, "reserve_percent": 5, "weekly_tokens": 700_000,
        "per_provider": {}, "aggressive_end_of_week": False, "week_start_day": "monday"}
FRIDAY = datetime(2026, 11, 27, 2, 0)


def test_daily_with_zero_usage() -> None:
    # 700,000 // 7 = 100,000; 75 % of it minus a 5 % reserve.
    assert allowance(BASE, "claude", FRIDAY) == 70_000
    assert allowance({**BASE, "per_provider": {"codex": 1_400_000}}, "codex", FRIDAY) == 140_000


@pytest.mark.parametrize(("start", "day", "left"), [
    ("monday", datetime(2026, 11, 23), 7), ("monday", datetime(2026, 11, 29), 1),
    ("sunday", datetime(2026, 11, 29), 7), ("sunday", datetime(2026, 11, 28), 1)])
def test_days_left_in_week(start: str, day: datetime, left: int) -> None:
    assert days_left_in_week({"week_start_day": start}, day) == left


def test_weekly_and_aggressive_end_of_week() -> None:
    weekly = {**BASE, "mode": "weekly"}
    saturday, sunday = datetime(2026, 11, 28), datetime(2026, 11, 29)
    assert allowance(weekly, "claude", FRIDAY) == int(700_000 / 3 * 0.75 - 35_000)
    aggressive = {**weekly, "aggressive_end_of_week": True}
    assert allowance(aggressive, "claude", saturday) == int(700_000 / 2 * 0.75 * 2 - 35_000)
    assert allowance(aggressive, "claude", sunday) == int(700_000 * 0.75 * 3 - 35_000)


def test_never_negative() -> None:
    assert allowance({**BASE, "max_percent": 0}, "claude", FRIDAY) == 0
