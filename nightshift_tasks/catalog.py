"""The task catalogue: built-in tasks from catalog.yaml plus the config's custom tasks."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nightshift_tasks.durations import parse_duration

CATALOG_FILE = Path(__file__).with_name("catalog.yaml")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class TaskDef:
    slug: str
    name: str
    category: str
    cost: str
    risk: str
    interval_s: float
    disabled_by_default: bool
    description: str
    min_tokens: int
    max_tokens: int
    custom: bool = False


@functools.cache
def catalog_data() -> dict[str, Any]:
    """The raw catalogue document (validated by tests against schemas/catalog.schema.json)."""
    with open(CATALOG_FILE, encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.load(fh, Loader=_Loader)
    return data


def builtin_slugs() -> list[str]:
    return [t["slug"] for t in catalog_data()["tasks"]]


def build_catalog(custom: list[dict[str, Any]]) -> list[TaskDef]:
    """Built-ins in catalogue order, then custom tasks in config order.

    Custom entries arrive validated, with schema defaults for category, cost and risk.
    """
    data = catalog_data()
    tiers = data["cost_tiers"]

    tasks = [
        TaskDef(slug=t["slug"], name=t["name"], category=t["category"], cost=t["cost"],
                risk=t["risk"], interval_s=parse_duration(t["interval"]),
                disabled_by_default=t["disabled_by_default"], description=t["description"],
                min_tokens=tiers[t["cost"]]["min_tokens"], max_tokens=tiers[t["cost"]]["max_tokens"])
        for t in data["tasks"]
    ]
    for entry in custom:
        interval = entry.get("interval") or data["categories"][entry["category"]]["interval"]
        tier = tiers[entry["cost_tier"]]
        tasks.append(TaskDef(slug=entry["type"], name=entry["name"], category=entry["category"],
                             cost=entry["cost_tier"], risk=entry["risk_level"],
                             interval_s=parse_duration(interval), disabled_by_default=False,
                             description=entry["description"], min_tokens=tier["min_tokens"],
                             max_tokens=tier["max_tokens"], custom=True))
    return tasks
