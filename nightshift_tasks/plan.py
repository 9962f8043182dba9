"""Per project: which provider, which tasks, or why it is skipped. Pure data.

This is the only place the plan is computed; `doit list` and `doit run` both show it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime

from nightshift_tasks import agents, state
from nightshift_tasks.catalog import TaskDef
from nightshift_tasks.config import Config
from nightshift_tasks.projects import ProjectRef, resolve_projects
from nightshift_tasks.select import Decision, TaskRules, select_tasks


@dataclass(frozen=True)
class ProjectPlan:
    name: str
    path: str
    provider: str | None
    tasks: list[str]
    skip_reason: str | None = None
    done: list[str] = field(default_factory=list)  # tasks already finished in today's chain
    decisions: list[Decision] = field(default_factory=list)

    @property
    def finished_today(self) -> bool:
        return bool(self.tasks) and set(self.tasks) <= set(self.done)

    def doc(self) -> str:
        """The one line `doit list` shows for the project."""
        if self.skip_reason:
            return f"skipped: {self.skip_reason}"
        line = f"{', '.join(self.tasks)} via {self.provider}"
        if self.finished_today:
            return f"{line} (done today; `doit run -a {self.name}` forces it)"
        if self.done:
            return f"{line} (resuming: {len(self.done)}/{len(self.tasks)} done today)"
        return line


@dataclass(frozen=True)
class Plan:
    projects: list[ProjectPlan]

    def runnable(self) -> list[ProjectPlan]:
        return [p for p in self.projects if p.tasks]


def choose_provider(config: Config) -> tuple[str | None, str]:
    """First provider in preference order that is enabled and whose CLI is present."""
    providers = config.section("providers")
    notes = []
    for name in providers["preference"]:
        settings = providers[name]
        if not settings.get("enabled"):
            notes.append(f"{name} not enabled")
            continue
        missing = agents.unavailable(name, settings)
        if missing:
            notes.append(f"{name} {missing}")
            continue
        return name, ""
    return None, "no provider: " + "; ".join(notes)


def _rules(config: Config, ref: ProjectRef) -> TaskRules:
    tasks = config.section("tasks")
    return TaskRules(enabled=ref.tasks if ref.tasks is not None else tasks["enabled"],
                     disabled=tasks["disabled"], priorities=tasks["priorities"],
                     intervals=tasks["intervals"],
                     max_tasks=config.section("schedule")["max_tasks"])


def build_plan(config: Config, catalog: list[TaskDef], conn: sqlite3.Connection,
               at: datetime) -> Plan:
    day = at.date().isoformat()
    refs = resolve_projects(config.data["projects"], state.project_last_runs(conn))
    provider, no_provider = choose_provider(config)
    max_projects = config.section("schedule")["max_projects"]
    planned = 0
    plans = []
    for ref in refs:
        if ref.missing:
            plans.append(ProjectPlan(ref.name, ref.path, None, [], f"{ref.missing}: {ref.path}"))
            continue
        chain = state.chain_for_day(conn, ref.path, day)
        if chain is not None:
            # Today's chain is kept as planned: resumed if interrupted, shown done if finished.
            done = [t for t in chain.tasks if chain.status.get(t) in state.TERMINAL]
            plans.append(ProjectPlan(ref.name, ref.path, chain.provider, chain.tasks, done=done))
            if len(done) < len(chain.tasks):
                planned += 1
            continue
        decisions = select_tasks(catalog, _rules(config, ref), state.task_last_runs(conn, ref.path),
                                 state.assigned_tasks(conn, ref.path), at)
        picked = [d.slug for d in decisions if d.picked]
        if provider is None:
            plans.append(ProjectPlan(ref.name, ref.path, None, [], no_provider, decisions=decisions))
        elif not picked:
            plans.append(ProjectPlan(ref.name, ref.path, None, [], _why_none(decisions),
                                     decisions=decisions))
        elif max_projects and planned >= max_projects:
            plans.append(ProjectPlan(ref.name, ref.path, None, [],
                                     f"schedule.max_projects ({max_projects}) reached",
                                     decisions=decisions))
        else:
            planned += 1
            plans.append(ProjectPlan(ref.name, ref.path, provider, picked, decisions=decisions))
    return Plan(plans)


def _why_none(decisions: list[Decision]) -> str:
    cooling = sum(d.reason.startswith("cooldown") for d in decisions)
    if cooling:
        return f"no task ready ({cooling} on cooldown)"
    return "no task enabled"
