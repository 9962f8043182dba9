"""`python -m nightshift_tasks budget [--provider P] [--json]`: each provider's budget, what
its own files say it used, the allowance and the equation behind it, and what running
tasks hold reserved."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tabulate import tabulate

from nightshift_tasks import agents, budget, db, guard, state, storage
from nightshift_tasks.config import Config, ConfigError, open_config, split_variables
from nightshift_tasks.plan import provider_readings

EXIT_USAGE = 2


def budget_rows(config: Config, provider: str | None) -> list[dict[str, object]]:
    conn = guard.connection(config.state_location(), config.db_lock_wait())
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
    by_host = fleet_spend(config)
    if by_host:
        print("\nfleet today (the ledger; the allowance above holds for all machines together):")
        print(tabulate(by_host, headers=["host", "provider", "used today", "reserved"]))
    return 0


def fleet_spend(config: Config) -> list[list[object]]:
    """On a fleet's ledger: per machine and provider, today's measured spend and what its
    running tasks hold reserved. Nothing on one machine's SQLite."""
    conn = guard.connection(config.state_location(), config.db_lock_wait())
    if not db.on_server(conn):
        return []
    today = state.now().date().isoformat()
    return [[r["host"] or "-", r["provider"], f"{r['used']:,}", f"{r['reserved']:,}"]
            for r in conn.execute(
                "SELECT a.host, c.provider, SUM(c.tokens) AS used, 0 AS reserved FROM calls c "
                "JOIN attempts a ON a.id = c.attempt_id WHERE substr(c.started_at, 1, 10) = ? "
                "GROUP BY a.host, c.provider UNION ALL SELECT host, provider, 0, SUM(estimate) "
                "FROM reservations WHERE open = 1 GROUP BY host, provider ORDER BY 1, 2", (today,))]


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
    with storage.or_exit(config.state_location()):
        return show_budget(config, opts.provider, opts.json)
