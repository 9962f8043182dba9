"""Computes the plan (plan_data.py): per project, which provider and which tasks, from the
config, the catalogue, the ledger, each provider's usage and the project's own files.

This is the only place the plan is computed; `doit list`, `doit info` and `doit run` all
show it.
"""

from __future__ import annotations

import os
import random
from datetime import datetime
from pathlib import Path
from typing import Any

from nightshift_tasks import agents, budget, git, state, window
from nightshift_tasks.catalog import TaskDef
from nightshift_tasks.config import Config, ConfigError
from nightshift_tasks.context import read_context
from nightshift_tasks.db import Conn
from nightshift_tasks.plan_data import Options, Plan, Pool, ProjectPlan
from nightshift_tasks.project_config import project_data
from nightshift_tasks.projects import ProjectRef, resolve_projects
from nightshift_tasks.prompts import PROJECT_RULES, bounded
from nightshift_tasks.select import Decision, Signals, TaskRules, estimate, none_picked_reason, select_tasks
from nightshift_tasks.sources import Sources, gather
from nightshift_tasks.usage import Reading, read_usage


def usable_providers(data: dict[str, Any], allowances: dict[str, budget.Allowance],
                     ignore_budget: bool) -> tuple[list[tuple[str, int | None]], str]:
    """Providers in preference order that are enabled, installed and have allowance: the
    first runs the project, the others are its fail-over. Returns them, or why none is."""
    providers = data["providers"]
    usable: list[tuple[str, int | None]] = []
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
        allowance = allowances[name].allowance
        if not ignore_budget and allowance <= 0:
            notes.append(f"{name} budget exhausted ({allowances[name].used_percent:.0f}% used)")
            continue
        usable.append((name, None if ignore_budget else allowance))
    return usable, "" if usable else "no provider: " + "; ".join(notes)


def provider_readings(config: Config, conn: Conn, at: datetime) -> dict[str, Reading]:
    """What each provider's own files (or our ledger) show it has used."""
    providers = config.section("providers")
    return {name: read_usage(conn, name, providers[name], at) for name in providers["preference"]}


def _rules(data: dict[str, Any], ref: ProjectRef) -> TaskRules:
    tasks = data["tasks"]
    return TaskRules(enabled=ref.tasks if ref.tasks is not None else tasks["enabled"],
                     disabled=tasks["disabled"], priorities=tasks["priorities"],
                     intervals=tasks["intervals"], max_tasks=data["schedule"]["max_tasks"])


def invalid_project_config(ref: ProjectRef, lines: list[str]) -> ProjectPlan:
    """A project whose own nightshift.yaml is unusable is skipped with its problems, so one
    repository's file cannot stop the others; every line is shown as a warning."""
    first = lines[0].removeprefix("config error: ").replace(f"{ref.path}/", "", 1)
    more = f" (+{len(lines) - 1} more, listed as warnings)" if len(lines) > 1 else ""
    return ProjectPlan(ref.name, ref.path, None, [], f"invalid config: {first}{more}",
                       warnings=tuple(lines))


class Planner:
    """Builds the plan; one instance per doit invocation."""

    def __init__(self, config: Config, catalog: list[TaskDef], conn: Conn,
                 at: datetime, options: Options) -> None:
        self.config, self.catalog, self.conn, self.at, self.options = config, catalog, conn, at, options
        self.rng = random.Random() if options.random_task else None
        self.readings = provider_readings(config, conn, at)
        self.allowances = self.allowances_for(config.section("budget"))
        self.learned: dict[str, dict[str, tuple[int, int]]] = {}
        self.ledger = state.plan_reads(conn, at.date().isoformat())

    def estimates(self, provider: str) -> dict[str, tuple[int, int]]:
        """Learned estimates per provider, read once per plan rather than once per project."""
        if provider not in self.learned:
            self.learned[provider] = budget.estimates(self.conn, provider)
        return self.learned[provider]

    def allowances_for(self, settings: dict[str, Any]) -> dict[str, budget.Allowance]:
        return {name: budget.compute(settings, name, reading, self.at)
                for name, reading in self.readings.items()}

    def build(self) -> Plan:
        refs = resolve_projects(self.config.data["projects"], state.project_last_runs(self.conn))
        slugs = [t.slug for t in self.catalog]
        cap = self.config.section("schedule")["max_projects"]
        plans, planned = [], 0
        closed = self.window_closed()
        for ref in refs:
            # A url project is planned without a network call; its task fetches the mirror.
            problem = ref.missing or closed or (None if ref.url else git.unusable(ref.path))
            if problem:
                where = "" if problem == closed else f": {ref.path}"
                plans.append(ProjectPlan(ref.name, ref.path, None, [], f"{problem}{where}",
                                         mirror=ref.mirror))
                continue
            try:
                data, notes = project_data(self.config, ref, slugs)
            except ConfigError as exc:
                plans.append(invalid_project_config(ref, exc.lines))
                continue
            plan = self.plan_project(ref, data, notes, over_cap=bool(cap) and planned >= cap)
            planned += bool(plan.tasks) and not plan.finished_today
            plans.append(plan)
        return Plan(plans, self.allowances)

    def window_closed(self) -> str | None:
        """Outside schedule.window nothing is planned (window=ignore overrides)."""
        span = self.config.section("schedule").get("window")
        if not span or self.options.ignore_window or window.is_open(span, self.at):
            return None
        opens = window.next_open(span, self.at)
        return (f"outside the time window {window.describe(span)}; it opens "
                f"{opens:%Y-%m-%d %H:%M %Z}")

    def plan_project(self, ref: ProjectRef, data: dict[str, Any], notes: list[str],
                     over_cap: bool) -> ProjectPlan:
        integrations = data["integrations"]
        context = read_context(Path(ref.repo), self.catalog, integrations["claude_md"],
                               integrations["agents_md"])
        chain = None
        if self.options.force_task is None:
            chain = self.ledger.chains.get(ref.path)
        if chain is not None:
            # Today's chain is kept as planned: resumed if interrupted, shown done if finished.
            done = [t for t in chain.tasks if t in chain.done]
            found = self._sources(data, ref) if len(done) < len(chain.tasks) else Sources((), (), ())
            usable, no_provider = usable_providers(data, self.allowances, True)
            # The chain's provider, unless it has been disabled or removed since: then the
            # first usable one (the budget is not asked again: the run's reservation is).
            names = [n for n, _ in usable]
            provider = chain.provider if chain.provider in names else next(iter(names), None)
            if provider is None:
                return self._plan(ref, context.notes, found, notes, provider=None, tasks=[],
                                  skip_reason=no_provider)
            names = [n for n in names if n != provider]
            pools = None if self.options.ignore_budget else {
                n: self.allowances[n].allowance for n in [provider, *names]}
            return self._plan(ref, context.notes, found, notes, provider=provider,
                              tasks=chain.tasks, done=done, fallbacks=names, retried=chain.retried,
                              allowance=pools[provider] if pools else None, pools=pools,
                              equations=self.equations(self.allowances, pools))
        allowances = (self.allowances if data["budget"] == self.config.section("budget")
                      else self.allowances_for(data["budget"]))  # the project's own max_percent
        usable, no_provider = usable_providers(data, allowances, self.options.ignore_budget)
        provider, allowance = usable[0] if usable else (None, None)
        rules = _rules(data, ref)

        def decide(found: Sources) -> tuple[list[Decision], list[str]]:
            signals = Signals(self.ledger.task_last_runs.get(ref.path, {}),
                              self.ledger.assigned.get(ref.path, set()), context.mentioned,
                              found.sourced, allowance, provider or "",
                              self.estimates(provider) if provider else {})
            decisions = select_tasks(self.catalog, rules, signals, self.at, self.rng)
            return decisions, [self.options.force_task] if self.options.force_task else [
                d.slug for d in decisions if d.picked]

        found = Sources((), (), ())
        decisions, picked = decide(found)
        reason = (no_provider if provider is None else
                  none_picked_reason(decisions) if not picked else
                  self.forced_over_budget(provider, allowance) or (
                      f"schedule.max_projects ({data['schedule']['max_projects']}) reached"
                      if over_cap else None))
        if reason is None:
            # Sources only reorder the tasks that can run, never decide whether any can: only a
            # project that will run asks them (a `gh` call each).
            found = self._sources(data, ref)
            if found.sourced:
                decisions, picked = decide(found)
        pools = None if self.options.ignore_budget else {n: a or 0 for n, a in usable}
        return self._plan(ref, context.notes, found, notes, provider=None if reason else provider,
                          tasks=[] if reason else picked, skip_reason=reason, decisions=decisions,
                          allowance=allowance, fallbacks=[n for n, _ in usable[1:]], pools=pools,
                          equations=self.equations(allowances, pools))

    @staticmethod
    def equations(allowances: dict[str, budget.Allowance],
                  pools: dict[str, int] | None) -> dict[str, str]:
        """How each candidate provider's allowance is computed, for `doit info`."""
        return {name: allowances[name].equation for name in pools or {}}

    def forced_over_budget(self, provider: str, allowance: int | None) -> str | None:
        """task= passes the selection filters and the daily guard, never the budget: why the
        run would skip the forced task, said by the plan before anything runs."""
        slug = self.options.force_task
        if slug is None or allowance is None:
            return None
        need, basis = estimate(next(t for t in self.catalog if t.slug == slug),
                               self.estimates(provider))
        if need <= allowance:
            return None
        return (f"task={slug} needs ~{need:,} tokens ({basis}), over the allowance of "
                f"{allowance:,} ({provider}); ignore_budget=1 runs it anyway")

    def _sources(self, data: dict[str, Any], ref: ProjectRef) -> Sources:
        entries = data["integrations"]["task_sources"]
        if not self.options.ask_sources:  # a file is read; `gh` and `td` are not asked
            entries = [entry for entry in entries if "file" in entry]
        if not os.path.isdir(ref.repo):  # a url project's mirror, before its first task
            return Sources((), (), ())
        return gather(entries, Path(ref.repo), self.catalog)

    def _plan(self, ref: ProjectRef, context_notes: tuple[str, ...], found: Sources,
              warnings: list[str], **kw: Any) -> ProjectPlan:
        # nightshift's own guidance first, so the project's rules cannot crowd it out.
        notes, cut = bounded(found.notes + context_notes, PROJECT_RULES)
        cuts = [cut]
        texts = {}
        for slug in kw["tasks"]:
            texts[slug], cut = bounded(tuple(f"{item.origin}: {item.text}" for item in found.items
                                             if slug in item.slugs), f"requests for {slug}")
            cuts.append(cut)
        allowances: dict[str, int] | None = kw.pop("pools", None)
        if kw.get("provider") and allowances is not None:
            by_slug = {t.slug: t for t in self.catalog}
            kw["pools"] = {name: Pool(allowance, {s: estimate(by_slug[s], self.estimates(name))[0]
                                                  for s in kw["tasks"] if s in by_slug})
                           for name, allowance in allowances.items()}
        return ProjectPlan(ref.name, ref.path, notes=notes, base_branch=ref.base_branch,
                           url=ref.url, mirror=ref.mirror,
                           sources={k: list(v) for k, v in texts.items() if v},
                           warnings=found.warnings + tuple(warnings) + tuple(c for c in cuts if c),
                           **kw)


def build_plan(config: Config, catalog: list[TaskDef], conn: Conn, at: datetime,
               options: Options | None = None) -> Plan:
    return Planner(config, catalog, conn, at, options or Options()).build()
