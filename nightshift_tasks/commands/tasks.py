"""`python -m nightshift_tasks tasks list|show`: the catalogue, custom tasks included, and
the prompts a task would send. Each command is a function that returns an exit code."""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from tabulate import tabulate

from nightshift_tasks import prompts
from nightshift_tasks.catalog import TaskDef, build_catalog, catalog_data
from nightshift_tasks.config import Config, ConfigError, open_config, split_variables
from nightshift_tasks.config_checks import canonical_choice
from nightshift_tasks.config_schema import schema_defaults
from nightshift_tasks.context import read_context
from nightshift_tasks.durations import format_interval
from nightshift_tasks.sources import gather

EXIT_USAGE = 2


def _choice(value: str, choices: list[str]) -> str:
    """Filters ignore case and dashes, as the original did: --category PR, --cost veryhigh."""
    return canonical_choice(value, choices) or value


def _config(var: str | None) -> Config | None:
    """The user's config if there is one (for custom tasks); none found is fine here."""
    try:
        return open_config(var, Path.cwd())
    except ConfigError as exc:
        if var is None and exc.lines[0].startswith("nightshift: no config found"):
            return None
        raise


def _catalog(config: Config | None) -> list[TaskDef]:
    return build_catalog(config.section("tasks")["custom"] if config else [])


def list_tasks(config: Config | None, category: str | None, cost: str | None, as_json: bool) -> int:
    order = list(catalog_data()["categories"])
    tasks = [t for t in _catalog(config) if category in (None, t.category) and cost in (None, t.cost)]
    tasks.sort(key=lambda t: order.index(t.category))
    if as_json:
        print(json.dumps([asdict(t) for t in tasks], indent=2))
        return 0
    tiers = catalog_data()["cost_tiers"]
    rows = [[t.slug, t.name, t.category, tiers[t.cost]["label"], t.risk,
             format_interval(t.interval_s), "off" if t.disabled_by_default else "on",
             "custom" if t.custom else "built-in"] for t in tasks]
    print(tabulate(rows, headers=["slug", "name", "category", "cost", "risk", "interval", "default",
                                  "source"]))
    print(f"\n{len(tasks)} task(s)")
    return 0


def show_task(config: Config | None, slug: str, project: Path, prompt_only: bool) -> int:
    by_slug = {t.slug: t for t in _catalog(config)}
    task = by_slug.get(slug)
    if task is None:
        close = difflib.get_close_matches(slug, list(by_slug), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(f"error: tasks show: unknown task '{slug}'{hint}", file=sys.stderr)
        return EXIT_USAGE
    integrations = (config.data if config else schema_defaults())["integrations"]
    catalog = list(by_slug.values())
    context = read_context(project, catalog, integrations["claude_md"], integrations["agents_md"])
    found = gather(integrations["task_sources"], project, catalog)
    notes, cut_notes = prompts.bounded(found.notes + context.notes, prompts.PROJECT_RULES)
    requests, cut_requests = prompts.bounded(
        tuple(f"{i.origin}: {i.text}" for i in found.items if slug in i.slugs), f"requests for {slug}")
    brief = prompts.TaskBrief(task.slug, task.name, task.description, project.name, str(project),
                              notes, requests)
    if not prompt_only:
        tier = catalog_data()["cost_tiers"][task.cost]["label"]
        print(f"{task.name} [{task.slug}]{' (custom)' if task.custom else ''}\n"
              f"category {task.category}, cost {tier}, risk {task.risk}, interval "
              f"{format_interval(task.interval_s)}, {'off' if task.disabled_by_default else 'on'} "
              f"by default\n\n{task.description}\n")
        for warning in [*found.warnings, cut_notes, cut_requests]:
            if warning:
                print(f"warning: {warning}", file=sys.stderr)
    phases = [("plan", prompts.plan_prompt(brief)),
              ("implement", prompts.implement_prompt(brief, "<the plan phase's description>",
                                                     ["<the plan phase's steps>"], 1, [])),
              ("review", prompts.review_prompt(brief, "<the implement phase's summary>",
                                               ["<the files it changed>"]))]
    for name, text in phases:
        print(f"===== {name} prompt =====\n{text}")
    return 0


def main(argv: list[str]) -> int:
    variables, args = split_variables(argv)
    parser = argparse.ArgumentParser(prog="nightshift-tasks tasks",
                                     description="The task catalogue. Add config=PATH to pick a config.")
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list built-in and custom tasks")
    for flag, section in (("--category", "categories"), ("--cost", "cost_tiers")):
        choices = list(catalog_data()[section])
        listing.add_argument(flag, choices=choices, type=functools.partial(_choice, choices=choices))
    listing.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="a task's details and the prompts of each phase")
    show.add_argument("slug")
    show.add_argument("--project", type=Path, default=Path(os.getcwd()),
                      help="project directory whose context goes into the prompts (default: .)")
    show.add_argument("--prompt-only", action="store_true")
    opts = parser.parse_args(args)
    try:
        config = _config(variables.get("config"))
    except ConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return EXIT_USAGE
    if opts.command == "list":
        return list_tasks(config, opts.category, opts.cost, opts.json)
    return show_task(config, opts.slug, opts.project.resolve(), opts.prompt_only)
