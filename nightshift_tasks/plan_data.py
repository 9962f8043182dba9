"""The plan as data: per project, which provider, which tasks and why, or why it is skipped;
and the command-line options it was made under. plan.py computes it; graph.py, `doit list`,
`doit info` and the run's report read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nightshift_tasks import budget
from nightshift_tasks.select import Decision


@dataclass(frozen=True)
class Options:
    """Command-line variables of one run: task=<slug>, random_task=1, ignore_budget=1,
    sources=0/1 (whether `gh` and `td` are asked; by default by every command but `list`)."""

    force_task: str | None = None
    random_task: bool = False
    ignore_budget: bool = False
    ignore_window: bool = False
    ask_sources: bool = True


@dataclass(frozen=True)
class Pool:
    """One candidate provider's allowance for the run, and what each task reserves from it."""

    allowance: int
    estimates: dict[str, int]  # slug -> tokens


@dataclass(frozen=True)
class ProjectPlan:
    name: str
    path: str
    provider: str | None
    tasks: list[str]
    skip_reason: str | None = None
    fallbacks: list[str] = field(default_factory=list)  # next providers in preference order
    base_branch: str | None = None
    done: list[str] = field(default_factory=list)  # tasks already finished in today's chain
    retried: dict[str, str] = field(default_factory=dict)  # slug -> how it ended, run again
    decisions: list[Decision] = field(default_factory=list)
    allowance: int | None = None  # the planned provider's allowance (None: budget ignored)
    pools: dict[str, Pool] = field(default_factory=dict)  # per candidate provider: a task
    # reserves from the pool of the provider it runs on, fail-over included
    equations: dict[str, str] = field(default_factory=dict)  # per candidate: its allowance, worked out
    notes: tuple[str, ...] = ()  # conventions and constraints for every prompt
    sources: dict[str, list[str]] = field(default_factory=dict)  # slug -> issue texts
    warnings: tuple[str, ...] = ()
    url: str | None = None  # a url project's URL, credentials included: never shown
    mirror: str | None = None  # where git and gh run for a url project

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
        last = "".join(f"; last run {slug} {how}" for slug, how in self.retried.items())
        if self.done or last:
            return f"{line} (resuming: {len(self.done)}/{len(self.tasks)} done today{last})"
        return line

    def explain(self) -> list[str]:
        """What `doit info <project>` shows: every catalogue task and why."""
        budget_note = f", allowance {self.allowance:,} tokens" if self.allowance is not None else ""
        lines = [f"{self.path} (provider {self.provider or '-'}{budget_note})"]
        lines += [f"budget {name}: {equation}" for name, equation in self.equations.items()]
        if self.skip_reason:
            lines.append(f"skipped: {self.skip_reason}")
        if not self.decisions and self.tasks:
            lines.append(f"today's chain, planned by an earlier run: {', '.join(self.tasks)}")
        for d in self.decisions:
            verdict = "picked" if d.picked else "not picked"
            why = f"score {d.breakdown}" + (f"; {d.reason}" if d.reason else "")
            lines.append(f"  {verdict:<10} {d.slug:<22} {why}")
        lines += [f"warning: {w}" for w in self.warnings]
        return lines


@dataclass(frozen=True)
class Plan:
    projects: list[ProjectPlan]
    allowances: dict[str, budget.Allowance] = field(default_factory=dict)
