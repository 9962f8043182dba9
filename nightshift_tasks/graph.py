"""Config -> plan -> doit tasks. The only module (with guard and summary) that knows doit.

Both entry points use it: `dodo.py` for `doit ...` in a checkout, and `python -m
nightshift_tasks` through a ModuleTaskLoader for an installed package.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import doit

from nightshift_tasks import execute, guard, state
from nightshift_tasks.catalog import TaskDef, build_catalog, builtin_slugs
from nightshift_tasks.config import Config, ConfigError, load_config
from nightshift_tasks.durations import parse_duration
from nightshift_tasks.paths import find_config, nightshift_home
from nightshift_tasks.plan import Plan, ProjectPlan, build_plan
from nightshift_tasks.process import interrupt_on_term

EXIT_CONFIG = 2
NO_CONFIG = """\
nightshift: no config found. It looks for `config=PATH` on the doit command line, then
$NIGHTSHIFT_CONFIG, then ./nightshift.yaml, then $XDG_CONFIG_HOME/nightshift/config.yaml
(~/.config/nightshift/config.yaml). To start, copy the commented example and list your
repositories under `projects:`, e.g. `mkdir -p ~/.config/nightshift && cp config.example.yaml
~/.config/nightshift/config.yaml`, then run `doit list` to see the plan; or try
`python -m nightshift_tasks demo` for an offline demo."""


@dataclass(frozen=True)
class Engine:
    """Everything one doit invocation needs, loaded once per process."""

    config: Config
    catalog: list[TaskDef]
    plan: Plan
    db_path: Path
    log_dir: Path
    run_id: str


_engine: Engine | None = None


def load_engine() -> Engine:
    """Find and validate the config and build the plan; exit 2 on any config problem.

    Nothing is written before the config is known to be good.
    """
    global _engine
    if _engine is not None:
        return _engine
    cwd = Path(doit.get_initial_workdir() or os.getcwd())
    path, why = find_config(doit.get_var("config"), cwd)
    if path is None:
        print(f"config error: {why}" if why else NO_CONFIG, file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    try:
        config = load_config(path, builtin_slugs())
    except ConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    home = nightshift_home()
    db_path = Path(config.section("budget").get("db_path") or home / "state.db")
    log_dir = Path(config.section("logging").get("path") or home / "logs")
    catalog = build_catalog(config.section("tasks")["custom"])
    at = state.now()
    plan = build_plan(config, catalog, guard.connection(str(db_path)), at)
    _engine = Engine(config, catalog, plan, db_path, log_dir,
                     run_id=f"{at:%Y%m%d-%H%M%S}-{os.getpid()}")
    return _engine


def doit_config() -> dict[str, Any]:
    """DOIT_CONFIG: what a user should never have to type."""
    from nightshift_tasks.summary import SummaryReporter

    load_engine()
    interrupt_on_term()
    home = nightshift_home()
    home.mkdir(parents=True, exist_ok=True)
    return {
        "dep_file": str(home / "doit.sqlite"),
        "backend": "sqlite3",
        "continue": True,
        "par_type": "process",
        "verbosity": 0,
        "reporter": SummaryReporter,
        "minversion": "0.37.0",
    }


def task_spec(engine: Engine, project: ProjectPlan, task: TaskDef) -> dict[str, Any]:
    """The action's single argument: plain data, so it pickles under any start method."""
    settings = dict(engine.config.section("providers")[project.provider or "command"])
    return {
        "run_id": engine.run_id,
        "db_path": str(engine.db_path),
        "log_dir": str(engine.log_dir),
        "project": project.name,
        "path": project.path,
        "slug": task.slug,
        "name": task.name,
        "description": task.description,
        "chain": list(project.tasks),
        "provider": project.provider,
        "settings": settings,
        "timeout_s": parse_duration(settings["timeout"]),
    }


def task_projects() -> Iterator[dict[str, Any]]:
    """One group task per project, one chained subtask per planned maintenance task."""
    engine = load_engine()
    by_slug = {t.slug: t for t in engine.catalog}
    for project in engine.plan.projects:
        guard_args = [str(engine.db_path), project.path]
        yield {"basename": project.name, "name": None, "doc": project.doc(),
               "uptodate": [(guard.done_today, [*guard_args, *project.tasks], {})]}
        previous: str | None = None
        for slug in project.tasks:
            task = by_slug.get(slug)
            if task is None:  # a resumed chain naming a task that has since left the config
                continue
            yield {
                "basename": project.name,
                "name": slug,
                "doc": task.name,
                "actions": [(execute.run_task, [task_spec(engine, project, task)])],
                "task_dep": [previous] if previous else [],
                "uptodate": [(guard.done_today, [*guard_args, slug], {})],
                "verbosity": 0,
            }
            previous = f"{project.name}:{slug}"
