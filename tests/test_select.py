from __future__ import annotations

import random
from datetime import datetime, timedelta

from nightshift_tasks.catalog import build_catalog
from nightshift_tasks.select import (
    Decision,
    Signals,
    TaskRules,
    cooldown_left,
    none_picked_reason,
    select_tasks,
    staleness,
)

NOW = datetime(2026, 11, 28, 3, 0).astimezone()
CATALOG = build_catalog([])


def rules(**kw: object) -> TaskRules:
    base: dict[str, object] = {"enabled": [], "disabled": [], "priorities": {}, "intervals": {},
                               "max_tasks": 1}
    base.update(kw)
    return TaskRules(**base)  # type: ignore[arg-type]


def picked(decisions: list[Decision]) -> list[str]:
    return [d.slug for d in decisions if d.picked]


def by_slug(decisions: list[Decision]) -> dict[str, Decision]:
    return {d.slug: d for d in decisions}


def test_staleness() -> None:
    assert staleness(None, NOW) == 3.0
    assert staleness(NOW - timedelta(hours=47), NOW) == 0.1
    assert staleness(NOW - timedelta(days=2), NOW) == 0.2  # whole days, counted at the boundary
    assert staleness(NOW - timedelta(days=2) + timedelta(seconds=1), NOW) == 0.1
    assert staleness(NOW - timedelta(hours=5), NOW) == 0.0
    assert staleness(NOW + timedelta(days=1), NOW) == 0.0  # a clock set back takes nothing off
    assert staleness(NOW - timedelta(days=90), NOW) == 3.0


def test_ties_break_by_catalogue_order() -> None:
    assert picked(select_tasks(CATALOG, rules(max_tasks=3), Signals(), NOW)) == [
        "lint-fix", "bug-finder", "auto-dry"]
    ranked = by_slug(select_tasks(CATALOG, rules(max_tasks=1), Signals(), NOW))
    assert (ranked["bug-finder"].reason, ranked["bug-finder"].kind) == (
        "ranked 2; schedule.max_tasks is 1", "rank")


def test_priorities_and_disabled_and_enabled() -> None:
    r = rules(enabled=["lint-fix", "dead-code", "td-review"], disabled=["lint-fix"],
              priorities={"dead-code": -1}, max_tasks=5)
    decisions = select_tasks(CATALOG, r, Signals(), NOW)
    assert picked(decisions) == ["td-review", "dead-code"]
    assert by_slug(decisions)["lint-fix"].reason == "disabled (tasks.disabled)"
    assert by_slug(decisions)["bug-finder"].reason == "not in the enabled list"
    assert by_slug(decisions)["dead-code"].breakdown == "2.0 = priority -1.0 + staleness 3.0"


def test_disabled_by_default_needs_enabling() -> None:
    decisions = by_slug(select_tasks(CATALOG, rules(), Signals(), NOW))
    assert decisions["td-review"].reason == "disabled by default; list it in tasks.enabled to run it"


def test_cooldown_and_override_and_assignment() -> None:
    r = rules(enabled=["lint-fix", "docs-backfill", "dead-code"], intervals={"docs-backfill": "1h"},
              max_tasks=3)
    last = {"lint-fix": NOW - timedelta(hours=5), "docs-backfill": NOW - timedelta(hours=2)}
    decisions = select_tasks(CATALOG, r, Signals(last, {"dead-code"}), NOW)
    assert picked(decisions) == ["docs-backfill"]
    ready = NOW + timedelta(hours=19)
    assert by_slug(decisions)["lint-fix"].reason == f"cooldown: ready at {ready:%Y-%m-%d %H:%M} (in 19h00m)"
    assert by_slug(decisions)["dead-code"].reason == "assigned to a run in progress"
    assert by_slug(decisions)["dead-code"].ready_in == 0.0  # only a cooldown has a wait
    assert none_picked_reason([d for d in decisions if not d.picked]) == (
        "no task can run: 1 task(s) on cooldown (next ready: lint-fix in 19h00m); "
        "1 assigned to a run in progress")


def test_never_run_outranks_recently_run() -> None:
    r = rules(enabled=["lint-fix", "docs-backfill"], priorities={"lint-fix": 1})
    last = {"lint-fix": NOW - timedelta(days=10)}
    assert picked(select_tasks(CATALOG, r, Signals(last), NOW)) == ["docs-backfill"]


def test_context_and_source_bonuses() -> None:
    r = rules(enabled=["lint-fix", "docs-backfill", "dead-code"], max_tasks=3)
    signals = Signals(mentioned=frozenset({"dead-code"}), sourced=frozenset({"docs-backfill"}))
    decisions = select_tasks(CATALOG, r, signals, NOW)
    assert picked(decisions) == ["docs-backfill", "dead-code", "lint-fix"]
    assert by_slug(decisions)["docs-backfill"].breakdown == "6.0 = priority 0.0 + staleness 3.0 + source 3.0"
    assert by_slug(decisions)["dead-code"].breakdown == "5.0 = priority 0.0 + staleness 3.0 + context 2.0"


def test_budget_filter_uses_the_tier_maximum_until_runs_are_measured() -> None:
    r = rules(enabled=["lint-fix", "dead-code", "bug-finder"], max_tasks=3)
    decisions = select_tasks(CATALOG, r, Signals(allowance=70_000, provider="claude"), NOW)
    assert picked(decisions) == ["lint-fix"]
    assert by_slug(decisions)["dead-code"].reason == (
        "over budget: needs ~150,000 tokens (medium tier max), allowance 70,000 (claude)")
    assert none_picked_reason([d for d in decisions if not d.picked]) == (
        "no task can run: 2 over budget (allowance 70,000 (claude))")
    learned = Signals(allowance=70_000, provider="claude", estimates={"dead-code": (60_000, 4)})
    decisions = select_tasks(CATALOG, r, learned, NOW)
    assert picked(decisions) == ["lint-fix", "dead-code"]
    assert by_slug(decisions)["bug-finder"].reason == (
        "over budget: needs ~500,000 tokens (high tier max), allowance 70,000 (claude)")


def test_random_pick_draws_only_from_eligible_tasks() -> None:
    r = rules(enabled=["lint-fix", "docs-backfill", "dead-code"], disabled=["dead-code"])
    seen = {picked(select_tasks(CATALOG, r, Signals(), NOW, random.Random(seed)))[0]
            for seed in range(40)}
    assert seen == {"lint-fix", "docs-backfill"}


def test_nothing_enabled() -> None:
    decisions = select_tasks(CATALOG, rules(disabled=[t.slug for t in CATALOG]), Signals(), NOW)
    assert picked(decisions) == []
    assert none_picked_reason(decisions) == "no task can run: every task is disabled"


def test_a_task_whose_estimate_equals_the_allowance_fits() -> None:
    r = rules(enabled=["dead-code"])
    assert picked(select_tasks(CATALOG, r, Signals(allowance=150_000, provider="claude"), NOW)) == [
        "dead-code"]  # the medium tier's maximum, exactly
    learned = Signals(allowance=59_999, provider="claude", estimates={"dead-code": (60_000, 4)})
    assert by_slug(select_tasks(CATALOG, r, learned, NOW))["dead-code"].reason == (
        "over budget: needs ~60,000 tokens (80th percentile of 4 measured run(s)), allowance 59,999 (claude)")


def test_cooldown_left_is_zero_once_ready() -> None:
    lint = next(t for t in CATALOG if t.slug == "lint-fix")  # a 24h interval
    assert cooldown_left(lint, rules(), None, NOW) == 0.0
    assert cooldown_left(lint, rules(), NOW - timedelta(days=2), NOW) == 0.0
    assert cooldown_left(lint, rules(), NOW - timedelta(hours=23), NOW) == 3600.0
    assert by_slug(select_tasks(CATALOG, rules(), Signals(), NOW))["lint-fix"].ready_in == 0.0


def test_a_cooldown_counts_to_the_second_and_the_soonest_is_named() -> None:
    r = rules(enabled=["lint-fix", "docs-backfill"], intervals={"lint-fix": "1s", "docs-backfill": "1h"},
              max_tasks=2)
    last = {"lint-fix": NOW - timedelta(milliseconds=500), "docs-backfill": NOW - timedelta(minutes=30)}
    decisions = select_tasks(CATALOG, r, Signals(last), NOW)
    assert (by_slug(decisions)["lint-fix"].kind, by_slug(decisions)["lint-fix"].ready_in) == ("cooldown", 0.5)
    assert by_slug(decisions)["docs-backfill"].ready_in == 1800.0
    assert none_picked_reason([d for d in decisions if not d.picked]) == (
        "no task can run: 2 task(s) on cooldown (next ready: lint-fix in 500ms)")
    dropped = by_slug(select_tasks(CATALOG, rules(disabled=["lint-fix"], enabled=["dead-code"]),
                                   Signals(allowance=1, provider="claude"), NOW))
    assert (dropped["lint-fix"].ready_in, dropped["dead-code"].ready_in) == (0.0, 0.0)
    assert none_picked_reason([dropped["dead-code"]]) == (
        "no task can run: 1 over budget (allowance 1 (claude))")
