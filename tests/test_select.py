from __future__ import annotations

from datetime import datetime, timedelta

from nightshift_tasks.catalog import build_catalog
from nightshift_tasks.select import TaskRules, select_tasks, staleness

NOW = datetime(2026, 11, 28, 3, 0).astimezone()
CATALOG = build_catalog([])


def rules(**kw: object) -> TaskRules:
    base: dict[str, object] = {"enabled": [], "disabled": [], "priorities": {}, "intervals": {},
                               "max_tasks": 1}
    base.update(kw)
    return TaskRules(**base)  # type: ignore[arg-type]


def picked(decisions: list) -> list[str]:  # type: ignore[type-arg]
    return [d.slug for d in decisions if d.picked]


def test_staleness() -> None:
    assert staleness(None, NOW) == 3.0
    assert staleness(NOW - timedelta(hours=47), NOW) == 0.1
    assert staleness(NOW - timedelta(days=90), NOW) == 3.0


def test_ties_break_by_catalogue_order() -> None:
    assert picked(select_tasks(CATALOG, rules(max_tasks=3), {}, set(), NOW)) == [
        "lint-fix", "bug-finder", "auto-dry"]


def test_priorities_and_disabled_and_enabled() -> None:
    r = rules(enabled=["lint-fix", "dead-code", "td-review"], disabled=["lint-fix"],
              priorities={"dead-code": -1}, max_tasks=5)
    decisions = select_tasks(CATALOG, r, {}, set(), NOW)
    assert picked(decisions) == ["td-review", "dead-code"]
    reasons = {d.slug: d.reason for d in decisions}
    assert reasons["lint-fix"] == "disabled (tasks.disabled)"
    assert reasons["bug-finder"] == "not in the enabled list"


def test_disabled_by_default_needs_enabling() -> None:
    reasons = {d.slug: d.reason for d in select_tasks(CATALOG, rules(), {}, set(), NOW)}
    assert reasons["td-review"] == "disabled by default; list it in tasks.enabled to run it"


def test_cooldown_and_override_and_assignment() -> None:
    r = rules(enabled=["lint-fix", "docs-backfill", "dead-code"], intervals={"docs-backfill": "1h"},
              max_tasks=3)
    last = {"lint-fix": NOW - timedelta(hours=5), "docs-backfill": NOW - timedelta(hours=2)}
    decisions = select_tasks(CATALOG, r, last, {"dead-code"}, NOW)
    assert picked(decisions) == ["docs-backfill"]
    reasons = {d.slug: d.reason for d in decisions}
    assert reasons["lint-fix"] == f"cooldown until {NOW + timedelta(hours=19):%Y-%m-%d %H:%M}"
    assert reasons["dead-code"] == "assigned to a run in progress"


def test_never_run_outranks_recently_run() -> None:
    r = rules(enabled=["lint-fix", "docs-backfill"], priorities={"lint-fix": 1})
    last = {"lint-fix": NOW - timedelta(days=10)}
    assert picked(select_tasks(CATALOG, r, last, set(), NOW)) == ["docs-backfill"]
