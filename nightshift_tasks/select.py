"""Pick the tasks for one project: filters first, then a deterministic score order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nightshift_tasks.catalog import TaskDef
from nightshift_tasks.durations import parse_duration

NEVER_RUN_BONUS = 3.0
BONUS_PER_DAY = 0.1
MAX_BONUS_DAYS = 30


@dataclass(frozen=True)
class TaskRules:
    """The selection settings that apply to one project (config plus project overrides)."""

    enabled: list[str]
    disabled: list[str]
    priorities: dict[str, int]
    intervals: dict[str, str]
    max_tasks: int


@dataclass(frozen=True)
class Decision:
    """Why one catalogue task was or was not picked."""

    slug: str
    picked: bool
    score: float
    reason: str


def staleness(last_run: datetime | None, at: datetime) -> float:
    """Never run beats anything run in the last 30 days; after that 0.1 per whole day."""
    if last_run is None:
        return NEVER_RUN_BONUS
    days = int((at - last_run).total_seconds() // 86400)
    return min(max(days, 0), MAX_BONUS_DAYS) * BONUS_PER_DAY


def is_enabled(task: TaskDef, rules: TaskRules) -> str | None:
    """None when enabled, else the reason it is not."""
    if task.slug in rules.disabled:
        return "disabled (tasks.disabled)"
    if task.disabled_by_default and task.slug not in rules.enabled:
        return "disabled by default; list it in tasks.enabled to run it"
    if rules.enabled and task.slug not in rules.enabled:
        return "not in the enabled list"
    return None


def cooldown_left(task: TaskDef, rules: TaskRules, last_run: datetime | None,
                  at: datetime) -> float:
    """Seconds until the task may run again (0 when ready). Only completions start one."""
    override = rules.intervals.get(task.slug)
    interval = parse_duration(override) if override else 0.0
    if interval <= 0:
        interval = task.interval_s
    if last_run is None or interval <= 0:
        return 0.0
    return max(0.0, interval - (at - last_run).total_seconds())


def select_tasks(catalog: list[TaskDef], rules: TaskRules, last_runs: dict[str, datetime],
                 assigned: set[str], at: datetime) -> list[Decision]:
    """A decision for every catalogue task; the picked ones come first, in run order.

    Ties break by catalogue order, never at random.
    """
    candidates: list[tuple[float, int, TaskDef]] = []
    rejected: list[Decision] = []
    for index, task in enumerate(catalog):
        last = last_runs.get(task.slug)
        score = rules.priorities.get(task.slug, 0) + staleness(last, at)
        why = is_enabled(task, rules)
        if why is None and task.slug in assigned:
            why = "assigned to a run in progress"
        if why is None:
            wait = cooldown_left(task, rules, last, at)
            if wait > 0:
                ready = datetime.fromtimestamp(at.timestamp() + wait).astimezone()
                why = f"cooldown until {ready:%Y-%m-%d %H:%M}"
        if why is None:
            candidates.append((score, index, task))
        else:
            rejected.append(Decision(task.slug, False, score, why))
    candidates.sort(key=lambda c: (-c[0], c[1]))
    decisions = [
        Decision(task.slug, rank < rules.max_tasks, score,
                 f"score {score:.1f}" if rank < rules.max_tasks
                 else f"score {score:.1f}; beyond schedule.max_tasks ({rules.max_tasks})")
        for rank, (score, _, task) in enumerate(candidates)
    ]
    return decisions + rejected
