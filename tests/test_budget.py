from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from nightshift_tasks import budget, state
from nightshift_tasks.budget import compute, days_left_in_week
from nightshift_tasks.catalog import builtin_slugs
from nightshift_tasks.config import load_config
from nightshift_tasks.usage import Reading

BASE = {"mode": "daily", "max_percent": 75, "reserve_percent": 5, "weekly_tokens": 700_000,
        "per_provider": {}, "aggressive_end_of_week": False, "week_start_day": "monday"}
FRIDAY = datetime(2026, 11, 27, 2, 0).astimezone()


def reading(**days: int) -> Reading:
    return Reading(by_day={d.replace("_", "-").lstrip("d"): n for d, n in days.items()},
                   source="fixture")


def test_daily_worked_example_of_the_spec() -> None:
    # §5.4: 20,000 used today of a 100,000 day: 80,000 x 75 % - 5,000 reserve = 55,000.
    result = compute(BASE, "claude", reading(d2026_11_27=20_000), FRIDAY)
    assert (result.used_percent, result.allowance) == (20.0, 55_000)
    assert result.equation == "100,000 daily x (1 - 20.0% used) x 75% - 5,000 reserve = 55,000"
    assert compute(BASE, "claude", Reading(), FRIDAY).allowance == 70_000
    per = compute({**BASE, "per_provider": {"codex": 1_400_000}}, "codex", Reading(), FRIDAY)
    assert (per.weekly, per.weekly_source, per.allowance) == (1_400_000, "budget.per_provider.codex",
                                                              140_000)


def test_the_schema_defaults_give_the_daily_worked_example(tmp_path: Path) -> None:
    """What compute gets from a config file without a budget section: the schema's defaults
    (daily, 700,000 a week, 75 %, 5 % reserve), strings from the loader and not literals."""
    path = tmp_path / "c.yaml"
    path.write_text("projects: [{path: /x}]\n")
    settings = load_config(path, builtin_slugs(), {}).section("budget")
    assert compute(settings, "claude", Reading(), FRIDAY).equation == (
        "100,000 daily x (1 - 0.0% used) x 75% - 5,000 reserve = 70,000")


def test_weekly_worked_example_with_aggressive_end_of_week() -> None:
    weekly = {**BASE, "mode": "weekly", "aggressive_end_of_week": True}
    used = reading(d2026_11_23=100_000, d2026_11_26=110_000)  # 210,000 this week: 30 %
    saturday, sunday = datetime(2026, 11, 28).astimezone(), datetime(2026, 11, 29).astimezone()
    assert compute(weekly, "claude", used, FRIDAY).allowance == int(490_000 / 3 * 0.75 - 24_500)
    assert compute(weekly, "claude", used, saturday).allowance == int(490_000 / 2 * 0.75 * 2 - 24_500)
    assert compute(weekly, "claude", used, sunday).allowance == int(490_000 * 0.75 * 3 - 24_500)
    assert compute(weekly, "claude", used, saturday).equation == (
        "490,000 left this week / 2 day(s) to the local week x 75% x 2 - 24,500 reserve = 343,000")
    # Last week's usage does not count.
    assert compute(weekly, "claude", reading(d2026_11_22=500_000), FRIDAY).used_week == 0


def test_codex_rate_limit_percentages() -> None:
    limits = Reading(rate_limits={"primary": {"used_percent": 40.0}, "secondary": {"used_percent": 90.0}})
    assert compute(BASE, "codex", limits, FRIDAY).allowance == int(60_000 * 0.75 - 5_000)
    weekly = compute({**BASE, "mode": "weekly"}, "codex", limits, FRIDAY)
    assert weekly.used_percent == 90.0 and weekly.allowance == int(70_000 / 3 * 0.75 - 3_500)


@pytest.mark.parametrize(("start", "day", "left"), [
    ("monday", datetime(2026, 11, 23), 7), ("monday", datetime(2026, 11, 29), 1),
    ("sunday", datetime(2026, 11, 29), 7), ("sunday", datetime(2026, 11, 28), 1)])
def test_days_left_in_week(start: str, day: datetime, left: int) -> None:
    assert days_left_in_week({"week_start_day": start}, day) == left


def test_never_negative() -> None:
    assert compute(BASE, "claude", reading(d2026_11_27=900_000), FRIDAY).allowance == 0


def test_more_than_everything_used_leaves_nothing_even_without_a_reserve() -> None:
    """120 % of the period used counts as 100 %: nothing left, not a negative remainder."""
    spent = {**BASE, "max_percent": 100, "reserve_percent": 0}
    daily = compute(spent, "claude", reading(d2026_11_27=120_000), FRIDAY)
    assert daily.equation == "100,000 daily x (1 - 120.0% used) x 100% - 0 reserve = 0"
    weekly = compute({**spent, "mode": "weekly"}, "claude", reading(d2026_11_23=840_000), FRIDAY)
    assert (weekly.used_percent, weekly.equation) == (
        120.0, "0 left this week / 3 day(s) to the local week x 100% x 1 - 0 reserve = 0")


def test_a_week_of_fewer_than_seven_tokens_has_no_daily_share() -> None:
    tiny = compute({**BASE, "weekly_tokens": 6}, "claude", Reading(), FRIDAY)
    assert (tiny.used_percent, tiny.equation) == (100.0, "0 daily x (1 - 100.0% used) x 75% - 0 reserve = 0")


def _attempt(conn: object, task: str = "lint-fix") -> int:
    db = conn  # type: ignore[assignment]
    chain = state.open_chain(db, f"/p/{task}/{state.now().timestamp()}", "2026-11-27", [task],  # type: ignore[arg-type]
                             "claude", "run1")
    return state.start_attempt(db, chain, "run1", "/p", task, "claude", 1, "log")  # type: ignore[arg-type]


def _ask(attempt: int, estimate: int, run: str = "run1", pid: int = 1,
         provider: str = "claude") -> budget.Ask:
    return budget.Ask(attempt, run, provider, estimate, 1000, pid)


def _patience(times: int) -> Callable[[], bool]:
    """True `times` times, then False: a task that waits when it should not ends quickly."""
    checks = iter([True] * times)
    return lambda: next(checks, False)


def test_reserve_then_settle(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    a, b, c = (_attempt(conn) for _ in range(3))
    assert budget.reserve(conn, _ask(a, 400)) == (True, budget.Standing(0, 0))
    assert budget.reserve(conn, _ask(b, 400)) == (True, budget.Standing(0, 400))
    assert budget.reserve(conn, _ask(c, 400)) == (False, budget.Standing(0, 800))
    # a measured 700 so far: its reservation grows to the truth.
    state.record_call(conn, a, "plan", "claude", state.now(), 0, "ok", None, {"tokens": 700})
    assert budget.standing(conn, "run1", "claude") == budget.Standing(700, 400)
    budget.release(conn, b)  # b ended having used nothing: its hold is gone
    assert budget.reserve(conn, _ask(c, 301)) == (False, budget.Standing(700, 0))
    assert budget.reserve(conn, _ask(c, 300)) == (True, budget.Standing(700, 0))
    assert budget.reserve(conn, _ask(_attempt(conn), 300, run="run2")) == (True, budget.Standing(0, 0))
    assert budget.open_reserved(conn, "claude") == 600  # c of run1 and the task of run2


def test_what_is_left_is_never_negative() -> None:
    assert budget.Standing(700, 200, 100).left(1000) == 0
    assert budget.Standing(700, 200, 100).left(999) == 0
    assert budget.Standing(600, 200, 100).left(1000) == 100


def test_usage_settles_against_the_provider_that_made_the_call(tmp_path: Path) -> None:
    """A task that failed over from claude to codex: its codex calls count for codex only."""
    conn = state.connect(tmp_path / "s.db")
    a = _attempt(conn)
    assert budget.reserve(conn, _ask(a, 400))[0]
    state.record_call(conn, a, "plan", "claude", state.now(), 1, "transient", "429", {"tokens": 0})
    budget.release(conn, a, "claude")
    assert budget.reserve(conn, _ask(a, 600, provider="codex"))[0]
    state.record_call(conn, a, "plan", "codex", state.now(), 0, "ok", None, {"tokens": 900})
    assert budget.standing(conn, "run1", "claude") == budget.Standing(0, 0)
    assert budget.standing(conn, "run1", "codex") == budget.Standing(900, 0)
    assert budget.open_reserved(conn, "codex") == 0 and budget.open_reserved(conn, "claude") == 0


def test_a_dead_holder_keeps_only_what_it_used(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    dead = subprocess.Popen(["true"])
    dead.wait()
    a = _attempt(conn)
    assert budget.reserve(conn, _ask(a, 900, pid=dead.pid))[0]
    state.record_call(conn, a, "plan", "claude", state.now(), 0, "ok", None, {"tokens": 50})
    assert budget.reserve(conn, _ask(_attempt(conn), 900)) == (True, budget.Standing(50, 0))


def test_a_task_waits_for_open_reservations_then_checks_again(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    a, b = _attempt(conn), _attempt(conn)
    assert budget.reserve(conn, _ask(a, 800))[0]
    seen: list[budget.Standing] = []

    def waiting(now: budget.Standing) -> None:  # a settles far below its estimate meanwhile
        seen.append(now)
        state.record_call(conn, a, "plan", "claude", state.now(), 0, "ok", None, {"tokens": 100})
        budget.release(conn, a)

    assert budget.reserve_waiting(conn, _ask(b, 800), _patience(3), waiting) == (
        True, budget.Standing(100, 0))
    assert seen == [budget.Standing(0, 800)]
    # Settled usage alone leaves too little (900 < 950): skipped at once, without waiting.
    c = _attempt(conn)
    assert budget.reserve_waiting(conn, _ask(c, 950), _patience(3), lambda _: pytest.fail("waited")) == (
        False, budget.Standing(100, 800))


def test_a_task_that_fits_does_not_wait(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    a, b = _attempt(conn), _attempt(conn)
    assert budget.reserve(conn, _ask(a, 800))[0]
    assert budget.reserve_waiting(conn, _ask(b, 200), lambda: True, lambda _: pytest.fail("waited")) == (
        True, budget.Standing(0, 800))


def test_a_task_waits_for_the_last_token(tmp_path: Path) -> None:
    """Settled usage leaves exactly the estimate: worth waiting for, and it fits once the
    other task's hold is gone. (Small numbers: equal ints below 257 are one object too.)"""
    conn = state.connect(tmp_path / "s.db")
    a, b = _attempt(conn), _attempt(conn)
    assert budget.reserve(conn, _ask(a, 900))[0]
    state.record_call(conn, a, "plan", "claude", state.now(), 0, "ok", None, {"tokens": 800})
    seen: list[budget.Standing] = []

    def waiting(now: budget.Standing) -> None:
        seen.append(now)
        budget.release(conn, a)

    assert budget.reserve_waiting(conn, _ask(b, 200), _patience(3), waiting) == (
        True, budget.Standing(800, 0))
    assert seen == [budget.Standing(800, 100)]


def test_waiting_ends_when_patience_does(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    a, b = _attempt(conn), _attempt(conn)
    assert budget.reserve(conn, _ask(a, 800))[0]
    seen: list[budget.Standing] = []
    assert budget.reserve_waiting(conn, _ask(b, 800), _patience(2), seen.append) == (
        False, budget.Standing(0, 800))
    assert seen == [budget.Standing(0, 800)]  # told once, though it polled twice


def test_unknown_usage_is_kept_and_never_waited_for(tmp_path: Path) -> None:
    """A task whose calls reported no usage keeps its estimate after it ends; such a hold
    never settles, so another task does not wait for it but is skipped at once."""
    conn = state.connect(tmp_path / "s.db")
    a, b = _attempt(conn), _attempt(conn)
    assert budget.reserve(conn, _ask(a, 800))[0]
    state.record_call(conn, a, "plan", "claude", state.now(), 0, "ok", None, {"tokens": 0},
                      usage_known=False)
    budget.release(conn, a)
    assert budget.standing(conn, "run1", "claude") == budget.Standing(0, 0, 800)
    assert budget.open_reserved(conn, "claude") == 0
    assert budget.reserve_waiting(conn, _ask(b, 800), lambda: True, lambda _: pytest.fail("waited")) == (
        False, budget.Standing(0, 0, 800))
    assert budget.reserve(conn, _ask(b, 150))[0]  # b reports no usage either: both keep theirs
    state.record_call(conn, b, "plan", "claude", state.now(), 0, "ok", None, {"tokens": 0},
                      usage_known=False)
    budget.release(conn, b)
    assert budget.standing(conn, "run1", "claude") == budget.Standing(0, 0, 950)
    # A running task holds 50 more: 50 is all that can ever be left, so 60 is not waited for.
    assert budget.reserve(conn, _ask(_attempt(conn), 50))[0]
    assert budget.reserve_waiting(conn, _ask(_attempt(conn), 60), lambda: True,
                                  lambda _: pytest.fail("waited")) == (False, budget.Standing(0, 50, 950))


def _completed_runs(conn: object, *runs: int) -> None:
    db = conn  # type: ignore[assignment]
    for tokens in runs:
        attempt = _attempt(db)
        state.record_call(db, attempt, "plan", "claude", state.now(), 0, "ok", None,  # type: ignore[arg-type]
                          {"tokens": tokens})
        state.finish_attempt(db, attempt, state.Outcome("completed", 1))  # type: ignore[arg-type]


def test_estimates_learn_from_measured_runs(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    _completed_runs(conn, 100, 300, 200, 9_000, 250, 260)
    # All six (fewer than ten): sorted 100 200 250 260 300 9000, 80th percentile 300; the
    # one outlier does not move it.
    assert budget.estimates(conn, "claude") == {"lint-fix": (300, 6)}
    assert budget.estimates(conn, "codex") == {}


def test_estimates_from_one_and_two_runs(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    _completed_runs(conn, 100)
    assert budget.estimates(conn, "claude") == {"lint-fix": (100, 1)}  # one run: that run
    _completed_runs(conn, 200)
    assert budget.estimates(conn, "claude") == {"lint-fix": (180, 2)}  # 100 + 0.8 x (200 - 100)


def test_estimates_cover_a_heavy_tail(tmp_path: Path) -> None:
    """Reservations are summed: a median estimate lets every run above it overrun, so it
    is the 80th percentile of the latest ten runs (the median of the latest five said 300)."""
    conn = state.connect(tmp_path / "s.db")
    _completed_runs(conn, 50_000, 200, 220, 240, 250, 260, 1_500, 270, 280, 2_000, 300)
    # The oldest (50,000) is past the latest ten; 80th percentile of 200 .. 300, 1500, 2000:
    # 300 + 0.2 x (1500 - 300) = 540, near their mean (552).
    assert budget.estimates(conn, "claude") == {"lint-fix": (540, 10)}
    _completed_runs(conn, 280)
    assert budget.estimates(conn, "claude") == {"lint-fix": (540, 10)}  # 200 dropped out


@pytest.mark.parametrize(("seconds", "days"), [(72 * 3600, 3), (6 * 3600, 1), (-3600, 1),
                                               (2 * 86400 + 1, 3)])
def test_codex_weekly_allowance_spreads_over_the_reported_reset(seconds: int, days: int) -> None:
    # The original's own cases (TestDaysUntilWeeklyReset_Codex): 72h -> 3, 6h -> 1, past -> 1;
    # and a second past two days starts a third. FRIDAY with a Monday week has 3 local days
    # left; a reported reset must win over that.
    limits = Reading(rate_limits={"secondary": {"used_percent": 30.0, "window_minutes": 10080,
                                                "resets_at": int(FRIDAY.timestamp()) + seconds}})
    weekly = compute({**BASE, "mode": "weekly"}, "codex", limits, FRIDAY)
    assert weekly.allowance == int(490_000 / days * 0.75 - 24_500)
    assert f"/ {days} day(s) to the reported weekly reset" in weekly.equation


def test_without_a_reported_reset_the_local_week_counts() -> None:
    # The original's "zero reset time" case: no usable reset, so the local week (3 days here).
    # Nor is a negative time or a boolean (JSON true is not a time).
    for limits in ({}, {"secondary": {"used_percent": 30.0, "resets_at": 0}},
                   {"secondary": {"used_percent": 30.0, "resets_at": None}},
                   {"secondary": {"used_percent": 30.0, "resets_at": -86400}},
                   {"secondary": {"used_percent": 30.0, "resets_at": True}}):
        weekly = compute({**BASE, "mode": "weekly"}, "codex", Reading(rate_limits=limits), FRIDAY)
        assert "/ 3 day(s) to the local week" in weekly.equation
    # The earliest time there is (1 s after the epoch) is a reset, long past: one day.
    limits = {"secondary": {"used_percent": 30.0, "resets_at": 1}}
    weekly = compute({**BASE, "mode": "weekly"}, "codex", Reading(rate_limits=limits), FRIDAY)
    assert "/ 1 day(s) to the reported weekly reset" in weekly.equation


def test_a_fleet_day_counts_every_run_and_every_open_hold(tmp_path: Path) -> None:
    """On a fleet's ledger the allowance is the fleet's for the day: every run's measured
    calls that day, and every run's open reservations."""
    conn = state.connect(tmp_path / "s.db")
    a, b = _attempt(conn), _attempt(conn)
    assert budget.reserve(conn, _ask(a, 500))[0]
    assert budget.reserve(conn, _ask(b, 300, run="run2"))[0]
    saturday = datetime(2026, 11, 28, 9, 0).astimezone()
    for attempt, started, tokens in ((a, FRIDAY, 100), (b, FRIDAY, 50), (b, saturday, 7)):
        state.record_call(conn, attempt, "plan", "claude", started, 0, "ok", None, {"tokens": tokens})
    assert budget.standing(conn, "run3", "claude", "2026-11-27") == budget.Standing(150, 643)
    assert budget.settled(conn, "run3", "claude", "2026-11-28") == 7
