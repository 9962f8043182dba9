"""`python -m nightshift_tasks budget [--provider P] [--json]`: each provider's budget, what
its own files say it used, the allowance and the equation behind it, and what running
tasks hold reserved."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tabulate import tabulate

from nightshift_tasks import agents, budget, guard, state, storage
from nightshift_tasks.config import Config, ConfigError, open_config, split_variables
from nightshift_tasks.plan import provider_readings

EXIT_USAGE = 2


def budget_rows(config: Config, provider: str | None) -> list[dict[str, object]]:
    conn = guard.connection(str(config.state_db()), config.db_lock_wait())
    at = state.now()
    rows = []
    for name, reading in provider_readings(config, conn, at).items():
        if provider not in (None, name):
            continue
        figures = budget.compute(config.section("budget"), name, reading, at).as_dict()
        figures["reserved"] = budget.open_reserved(conn, name)
        figures["skipped_lines"] = reading.skipped_lines
        figures["requests_this_month"] = reading.requests_this_month
        rows.append(figures)
    return rows


def show_budget(config: Config, provider: str | None, as_json: bool) -> int:
    rows = budget_rows(config, provider)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    mode = config.section("budget")["mode"]
    table = [[r["provider"], f"{r['weekly']:,}", r["weekly_source"], f"{r['used_today']:,}",
              f"{r['used_week']:,}", r["reader"], f"{r['allowance']:,}", f"{r['reserved']:,}"]
             for r in rows]
    print(f"budget mode: {mode}\n")
    print(tabulate(table, headers=["provider", "weekly", "from", "used today", "used this week",
                                   "read from", "allowance", "reserved"]))
    print("\n" + "\n".join(f"{r['provider']}: {r['equation']}" for r in rows))
    return 0


def main(argv: list[str]) -> int:
    variables, args = split_variables(argv)
    parser = argparse.ArgumentParser(prog="nightshift-tasks budget",
                                     description="Provider budgets. Add config=PATH to pick a config.")
    parser.add_argument("--provider", choices=list(agents.PROVIDERS))
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args(args)
    try:
        config = open_config(variables.get("config"), Path.cwd())
    except ConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return EXIT_USAGE
    with storage.or_exit(config.state_db()):
        return show_budget(config, opts.provider, opts.json)
