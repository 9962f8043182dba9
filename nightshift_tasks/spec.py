"""What the plan hands the doit worker for one (project, task): frozen, typed, picklable.

graph.py builds a TaskSpec per task at plan time and execute.py, publish.py and branches.py
read it in the worker, so mypy checks every field they use; a missing field fails at plan
time, not halfway through a night. The run-wide and per-project parts are built once and
shared by the tasks that use them. This module knows neither doit nor the config.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


class Section(Mapping[str, Any]):
    """A config section the worker hands on unread (a provider's settings to its module in
    `agents/`, the time window to window.py): read-only, and unlike MappingProxyType it
    pickles for doit's process workers."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Section({self._data!r})"


@dataclass(frozen=True)
class Candidate:
    """A provider the task may run on, in preference order."""

    name: str
    settings: Section  # providers.<name>, for the provider's own module
    timeout_s: float
    retry_delay_s: float
    max_retries: int
    max_concurrent: int | None


@dataclass(frozen=True)
class BudgetPool:
    """A candidate provider's allowance for the run, and what this task reserves from it."""

    allowance: int
    estimate: int


@dataclass(frozen=True)
class PublishSettings:
    """The `publish` section."""

    mode: str
    remote: str
    branch_prefix: str
    analysis: str
    max_open_prs_per_project: int
    max_prs_per_hour: int
    allowed_owners: tuple[str, ...] | None


@dataclass(frozen=True)
class RunSpec:
    """What every task of one doit invocation shares."""

    run_id: str
    forced: bool  # task=<slug>: the fleet's claim lets it redo a task done today
    db_path: str
    db_lock_wait: float
    log_dir: str
    worktrees_dir: str
    reports_dir: str
    window: Section | None  # None: any time, or window=ignore
    log_level: str


@dataclass(frozen=True)
class ProjectSpec:
    """What the tasks of one project share."""

    name: str
    path: str  # the project's identity in the ledger, branch records and the prompt
    repo: str  # where git and gh run: the checkout, or a url project's mirror
    url: str | None  # a url project's URL, credentials included: never shown
    chain: tuple[str, ...]  # the project's planned tasks, in order
    providers: tuple[Candidate, ...]
    notes: tuple[str, ...]
    base_branch: str | None
    publish: PublishSettings  # a url project's mirror has one remote, the URL


@dataclass(frozen=True)
class TaskSpec:
    """The doit action's single argument."""

    run: RunSpec
    project: ProjectSpec
    slug: str
    name: str
    description: str
    category: str
    cost_label: str
    sources: tuple[str, ...]
    # Per candidate provider (None when the budget is ignored): the task reserves its
    # estimate from the provider it runs on, again when it fails over.
    pools: Mapping[str, BudgetPool] | None
