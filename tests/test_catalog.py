from __future__ import annotations

import json
from collections import Counter

import jsonschema

from nightshift_tasks.catalog import build_catalog, catalog_data
from nightshift_tasks.paths import schema_dir


def test_catalog_matches_its_schema_and_slugs_are_unique() -> None:
    schema = json.loads((schema_dir() / "catalog.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(catalog_data())
    slugs = [t["slug"] for t in catalog_data()["tasks"]]
    assert len(slugs) == len(set(slugs)) == 59


def test_catalog_counts_match_the_original() -> None:
    tasks = catalog_data()["tasks"]
    assert Counter(t["category"] for t in tasks) == {
        "pr": 13, "analysis": 18, "options": 13, "safe": 5, "map": 7, "emergency": 3}
    assert Counter(t["cost"] for t in tasks) == {"low": 5, "medium": 39, "high": 13, "very-high": 2}
    assert [t["slug"] for t in tasks if t["disabled_by_default"]] == ["td-review"]


def test_custom_tasks_follow_the_builtins_with_category_interval() -> None:
    custom = [{"type": "mine", "name": "Mine", "description": "d", "category": "safe",
               "cost_tier": "low", "risk_level": "low"}]
    tasks = build_catalog(custom)
    assert tasks[-1].slug == "mine" and tasks[-1].custom
    assert tasks[-1].interval_s == 336 * 3600
    assert tasks[0].slug == "lint-fix" and tasks[0].interval_s == 24 * 3600
