"""Config -> plan -> doit tasks. The only module (with guard and summary) that knows doit.

Both entry points use it: `dodo.py` for `doit ...` in a checkout, and `python -m
nightshift_tasks` through a ModuleTaskLoader for an installed package.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import doit

from nightshift_tasks import db, execute, guard, mirrors, shutdown, spec, state, storage, summary
from nightshift_tasks.catalog import TaskDef, build_catalog, catalog_data
from nightshift_tasks.config import ConfigError, open_config
from nightshift_tasks.durations import parse_duration
from nightshift_tasks.engine import Engine
from nightshift_tasks.paths import nightshift_home, pin_home
from nightshift_tasks.plan import build_plan
from nightshift_tasks.plan_data import Options, Plan, ProjectPlan

EXIT_CONFIG = 2
# The name doit loads task_projects under. A creator that yields nothing (no projects) is
# listed by doit as an empty task of its own name; the "_" keeps it out of `doit list`.
CREATOR = "task__projects"
TRUE_WORDS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


_engine: Engine | None = None


def load_engine() -> Engine:
    """Find and validate the config and build the plan; exit 2 on any config problem.

    Nothing is written before the config is known to be good.
    """
    global _engine
    if _engine is not None:
        return _engine
    cwd = Path(doit.get_initial_workdir() or os.getcwd())
    pin_home(cwd)  # doit has already moved to the dodo's directory
    try:
        config = open_config(doit.get_var("config"), cwd)
        catalog = build_catalog(config.section("tasks")["custom"])
        options = run_options(catalog)
        db_path, log_dir = config.state_location(), config.log_dir()
        at = state.now()
        with storage.or_exit(db_path):
            plan = build_plan(config, catalog, guard.connection(db_path, config.db_lock_wait()),
                              at, options)
    except ConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    if config.section("logging")["level"] != "error":
        print_warnings(plan)
        if not plan.projects:
            print(f"nightshift: warning: {config.path} lists no projects; add your repositories "
                  "under `projects:` (`nightshift-tasks init DIR` finds them)", file=sys.stderr)
    _engine = Engine(config, catalog, plan, db_path, log_dir, options,
                     run_id=db.run_id(at, db_path))
    return _engine


def print_warnings(plan: Plan) -> None:
    """Each warning once: one that several projects share (a missing `gh`) names them all."""
    projects: dict[str, list[str]] = {}
    for project in plan.projects:
        for warning in project.warnings:
            projects.setdefault(warning, []).append(project.name)
    for warning, names in projects.items():
        if len(names) == 1:
            print(f"nightshift: warning: {names[0]}: {warning}", file=sys.stderr)
        else:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            print(f"nightshift: warning: {warning} (for {len(names)} projects: {shown})", file=sys.stderr)


def _flag(name: str) -> bool:
    raw = doit.get_var(name)
    if raw is None:
        return False
    if raw.lower() not in TRUE_WORDS:
        raise ConfigError([f"argument error: {name}={raw}: not a yes/no value; use {name}=1 or {name}=0"])
    return TRUE_WORDS[raw.lower()]


def doit_command(args: list[str]) -> str:
    """The doit command a command line names, as doit finds it: the first argument that is
    not an option, the value of -f/-d, or a name=value variable; `run` when none is left."""
    values = iter(args)
    for arg in values:
        if arg in ("-f", "--file", "-d", "--dir"):
            next(values, None)
        elif not arg.startswith("-") and "=" not in arg:
            return arg
    return "run"


def run_options(catalog: list[TaskDef]) -> Options:
    """The command-line variables task=<slug>, random_task=1, ignore_budget=1 and sources=1."""
    force = doit.get_var("task")
    span = doit.get_var("window")
    if span not in (None, "ignore"):
        raise ConfigError([f"argument error: window={span}: the only value is window=ignore"])
    # `doit list` does not ask gh or td, one call per project, unless sources=1 says so.
    ask = _flag("sources") if doit.get_var("sources") is not None else doit_command(sys.argv[1:]) != "list"
    options = Options(force_task=force, random_task=_flag("random_task"),
                      ignore_budget=_flag("ignore_budget"), ignore_window=span == "ignore",
                      ask_sources=ask)
    slugs = [t.slug for t in catalog]
    if force is not None and force not in slugs:
        close = difflib.get_close_matches(force, slugs, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError([f"argument error: task={force}: unknown task; {hint}"
                           "`python -m nightshift_tasks tasks list` shows every task"])
    if force and options.random_task:
        raise ConfigError(["argument error: task= and random_task=1 both given; use one of them"])
    return options


def doit_config() -> dict[str, Any]:
    """DOIT_CONFIG: what a user should never have to type."""
    shutdown.guard_main()
    engine = load_engine()
    dep_file = nightshift_home() / "doit.sqlite"
    with storage.or_exit(dep_file):
        storage.private_file(dep_file)  # doit's SQLite keeps the mode we create it with
        storage.private_dir(dep_file.parent / "worktrees")  # else git creates it 0755
    return {
        "dep_file": str(dep_file),
        "backend": "sqlite3",
        "continue": True,
        "par_type": "process",
        "verbosity": 0,
        "reporter": summary.reporter(engine),
        "minversion": "0.37.0",
        "sort": "definition",  # `doit list` in plan order, not by name
    }


class Explanation(dict[str, list[str]]):
    """A project's selection reasons as the group task's `meta`. `doit info` pprints meta,
    and pprint falls back to this repr, so the reasons print as plain lines."""

    def __repr__(self) -> str:
        return "\n" + "\n".join(self["selection"])


def _candidate(engine: Engine, name: str) -> spec.Candidate:
    settings = engine.config.section("providers")[name]
    return spec.Candidate(name, spec.Section(settings), parse_duration(settings["timeout"]),
                          parse_duration(settings["retry_delay"]), settings["max_retries"],
                          settings.get("max_concurrent"))


def run_spec(engine: Engine) -> spec.RunSpec:
    """What every task of the run shares (built once, like the engine)."""
    home, span = nightshift_home(), engine.config.section("schedule").get("window")
    return spec.RunSpec(
        run_id=engine.run_id,
        forced=engine.options.force_task is not None,
        db_path=str(engine.db_path),
        db_lock_wait=engine.config.db_lock_wait(),
        log_dir=str(engine.log_dir),
        worktrees_dir=str(home / "worktrees"),
        reports_dir=str(home / "reports"),
        window=None if engine.options.ignore_window or not span else spec.Section(span),
        log_level=engine.config.section("logging")["level"])


def publish_settings(engine: Engine) -> spec.PublishSettings:
    """The `publish` section, as the projects of a checkout share it."""
    publish = engine.config.section("publish")
    owners = publish.get("allowed_owners")
    return spec.PublishSettings(
        mode=publish["mode"], remote=publish["remote"], branch_prefix=publish["branch_prefix"],
        analysis=publish["analysis"], max_open_prs_per_project=publish["max_open_prs_per_project"],
        max_prs_per_hour=publish["max_prs_per_hour"],
        allowed_owners=None if owners is None else tuple(owners))


def project_spec(engine: Engine, project: ProjectPlan, candidates: dict[str, spec.Candidate],
                 settings: spec.PublishSettings) -> spec.ProjectSpec:
    """What a project's tasks share; `candidates` keeps each provider's, built once a run."""
    providers = [p for p in [project.provider, *project.fallbacks] if p]
    for name in providers:
        if name not in candidates:
            candidates[name] = _candidate(engine, name)
    return spec.ProjectSpec(
        name=project.name, path=project.path, repo=project.mirror or project.path, url=project.url,
        chain=tuple(project.tasks), providers=tuple(candidates[name] for name in providers),
        notes=tuple(project.notes), base_branch=project.base_branch,
        publish=mirrors.publish_settings(settings, project.url))


def task_spec(run: spec.RunSpec, project: ProjectPlan, shared: spec.ProjectSpec,
              task: TaskDef) -> spec.TaskSpec:
    """The action's single argument: frozen and typed, so it pickles under any start method."""
    return spec.TaskSpec(
        run=run, project=shared, slug=task.slug, name=task.name, description=task.description,
        category=task.category, cost_label=catalog_data()["cost_tiers"][task.cost]["label"],
        sources=tuple(project.sources.get(task.slug, [])),
        pools=None if project.allowance is None else {
            name: spec.BudgetPool(pool.allowance, pool.estimates[task.slug])
            for name, pool in project.pools.items()})


def task_projects() -> Iterator[dict[str, Any]]:
    """One group task per project, one chained subtask per planned maintenance task."""
    engine = load_engine()
    by_slug = {t.slug: t for t in engine.catalog}
    run, settings = run_spec(engine), publish_settings(engine)
    candidates: dict[str, spec.Candidate] = {}
    forced = run.forced  # task=<slug> bypasses the daily guard
    for project in engine.plan.projects:
        yield {"basename": project.name, "name": None, "doc": project.doc(),
               "meta": Explanation(selection=project.explain()),
               "uptodate": [None] if forced else [guard.DailyGuard(str(engine.db_path), project.path,
                                                                   tuple(project.tasks))]}
        previous: str | None = None
        shared = project_spec(engine, project, candidates, settings)
        for slug in project.tasks:
            task = by_slug.get(slug)
            if task is None:  # a resumed chain naming a task that has since left the config
                continue
            yield {
                "basename": project.name,
                "name": slug,
                "doc": task.name,
                "actions": [(execute.run_task, [task_spec(run, project, shared, task)])],
                "task_dep": [previous] if previous else [],
                "uptodate": [None] if forced else [guard.DailyGuard(str(engine.db_path), project.path,
                                                                    (slug,))],
                # The worker prints a line per agent call: shown at debug, as with `-v 2`.
                "verbosity": 2 if engine.config.section("logging")["level"] == "debug" else 0,
            }
            previous = f"{project.name}:{slug}"
