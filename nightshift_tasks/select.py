"""Pick the tasks for one project: filters first, then a deterministic score order, with
the reason for every pick and every skip."""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from datetime import datetime

from nightshift_tasks.catalog import TaskDef
from nightshift_tasks.durations import format_duration, parse_duration

NEVER_RUN_BONUS = 3.0
BONUS_PER_DAY = 0.1
MAX_BONUS_DAYS = 30
CONTEXT_BONUS = 2.0
SOURCE_BONUS = 3.0


@dataclass(frozen=True)
class TaskRules:
    """The selection settings that apply to one project (config plus project overrides)."""

    enabled: list[str]
    disabled: list[str]
    priorities: dict[str, int]
    intervals: dict[str, str]
    max_tasks: int


@dataclass(frozen=True)
class Signals:
    """What is known about the project when selecting: history, context, sources, budget."""

    last_runs: dict[str, datetime] = field(default_factory=dict)
    assigned: set[str] = field(default_factory=set)
    mentioned: frozenset[str] = frozenset()
    sourced: frozenset[str] = frozenset()
    allowance: int | None = None  # None: the budget is ignored
    provider: str = ""
    estimates: dict[str, tuple[int, int]] = field(default_factory=dict)  # slug -> (tokens, runs)


@dataclass(frozen=True, slots=True)
class Decision:
    """Why one catalogue task was or was not picked (one per catalogue task and project:
    slots keep 10,000 projects' worth small)."""

    slug: str
    picked: bool
    score: float
    breakdown: str
    reason: str  # empty when picked
    kind: str = ""  # the filter that dropped it: disabled, budget, assigned, cooldown, rank
    ready_in: float = 0.0  # cooldown seconds left


def staleness(last_run: datetime | None, at: datetime) -> float:
    """Never run beats anything run in the last 30 days; after that 0.1 per whole day."""
    if last_run is None:
        return NEVER_RUN_BONUS
    days = int((at - last_run).total_seconds() // 86400)
    return min(max(days, 0), MAX_BONUS_DAYS) * BONUS_PER_DAY


def score(task: TaskDef, rules: TaskRules, signals: Signals, at: datetime) -> tuple[float, str]:
    return _scored(float(rules.priorities.get(task.slug, 0)),
                   staleness(signals.last_runs.get(task.slug), at),
                   task.slug in signals.mentioned, task.slug in signals.sourced)


@functools.lru_cache(maxsize=1024)
def _scored(priority: float, stale: float, mentioned: bool, sourced: bool) -> tuple[float, str]:
    """The score and its breakdown; cached, as a plan of many projects repeats few of them."""
    parts = [("priority", priority), ("staleness", stale)]
    if mentioned:
        parts.append(("context", CONTEXT_BONUS))
    if sourced:
        parts.append(("source", SOURCE_BONUS))
    total = sum(v for _, v in parts)
    return total, f"{total:.1f} = " + " + ".join(f"{name} {v:.1f}" for name, v in parts)


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


def estimate(task: TaskDef, estimates: dict[str, tuple[int, int]]) -> tuple[int, str]:
    """Tokens the task is expected to use: the 80th percentile of its measured runs on the
    provider, else the top of its cost tier. Returns (tokens, where that number comes from)."""
    learned = estimates.get(task.slug)
    if learned:
        return learned[0], f"80th percentile of {learned[1]} measured run(s)"
    return task.max_tokens, f"{task.cost} tier max"


def _filter(task: TaskDef, rules: TaskRules, signals: Signals, at: datetime) -> tuple[str, str, float]:
    """(kind, reason, cooldown left) of the first filter that drops the task, or ('', '', 0)."""
    why = is_enabled(task, rules)
    if why:
        return "disabled", why, 0.0
    need, basis = estimate(task, signals.estimates)
    if signals.allowance is not None and need > signals.allowance:
        return ("budget", f"over budget: needs ~{need:,} tokens ({basis}), "
                f"allowance {signals.allowance:,} ({signals.provider})", 0.0)
    if task.slug in signals.assigned:
        return "assigned", "assigned to a run in progress", 0.0
    wait = cooldown_left(task, rules, signals.last_runs.get(task.slug), at)
    if wait > 0:
        ready = datetime.fromtimestamp(at.timestamp() + wait).astimezone()
        return "cooldown", f"cooldown: ready at {ready:%Y-%m-%d %H:%M} (in {format_duration(wait)})", wait
    return "", "", 0.0


def select_tasks(catalog: list[TaskDef], rules: TaskRules, signals: Signals, at: datetime,
                 rng: random.Random | None = None) -> list[Decision]:
    """A decision for every catalogue task; the picked ones come first, in run order.

    Ties break by score, then catalogue order, never at random. With `rng` (random_task=1)
    the picks are drawn uniformly from the eligible tasks instead.
    """
    eligible: list[tuple[float, int, TaskDef, str]] = []
    dropped: list[Decision] = []
    for index, task in enumerate(catalog):
        total, breakdown = score(task, rules, signals, at)
        kind, why, wait = _filter(task, rules, signals, at)
        if kind:
            dropped.append(Decision(task.slug, False, total, breakdown, why, kind, wait))
        else:
            eligible.append((total, index, task, breakdown))
    eligible.sort(key=lambda c: (-c[0], c[1]))
    if rng is not None:
        chosen = rng.sample(eligible, min(rules.max_tasks, len(eligible)))
        eligible = chosen + [c for c in eligible if c not in chosen]
    decisions = [
        Decision(task.slug, True, total, breakdown, "") if rank < rules.max_tasks else
        Decision(task.slug, False, total, breakdown,
                 f"ranked {rank + 1}; schedule.max_tasks is {rules.max_tasks}", "rank")
        for rank, (total, _, task, breakdown) in enumerate(eligible)
    ]
    return decisions + dropped


def none_picked_reason(decisions: list[Decision]) -> str:
    """A specific reason when nothing can run, e.g. '3 tasks on cooldown (next ready: ...)'."""
    parts = []
    cooling = sorted((d for d in decisions if d.kind == "cooldown"), key=lambda d: d.ready_in)
    if cooling:
        parts.append(f"{len(cooling)} task(s) on cooldown (next ready: {cooling[0].slug} in "
                     f"{format_duration(cooling[0].ready_in)})")
    budget = [d for d in decisions if d.kind == "budget"]
    if budget:
        reason = budget[0].reason
        parts.append(f"{len(budget)} over budget ({reason[reason.index('allowance'):]})")
    assigned = sum(d.kind == "assigned" for d in decisions)
    if assigned:
        parts.append(f"{assigned} assigned to a run in progress")
    return "no task can run: " + ("; ".join(parts) if parts else "every task is disabled")
