"""`nightshift-tasks status [--last N]`: what ran today, or the last N runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tabulate import tabulate

from nightshift_tasks import db, fleet, guard, state, storage
from nightshift_tasks.commands.cron import next_run_note
from nightshift_tasks.commands.shared import EXIT_USAGE, lock_check, reports_dir
from nightshift_tasks.config import Config, ConfigError, open_config, split_variables
from nightshift_tasks.db import Conn
from nightshift_tasks.text import cells


def show_status(config: Config, last: int | None) -> int:
    if last:
        runs = sorted(reports_dir().glob("run-*.json"))[-last:]
        rows = []
        for path in runs:
            record = json.loads(path.read_text(encoding="utf-8"))
            count = {k: sum(t["status"] == k for t in record["tasks"])
                     for k in ("completed", "failed", "skipped")}
            rows.append([record["start_time"], f"{record['duration_s']:.0f}s", *count.values(),
                         record["tokens_used"]])
        print(tabulate(rows, headers=["run started", "took", "completed", "failed", "skipped",
                                      "tokens"]) if rows else "no runs recorded yet")
        return 0
    conn = guard.connection(config.state_location(), config.db_lock_wait())
    today = state.now().date().isoformat()
    rows = [cells(r["project_path"], r["task"], r["status"], r["host"] or "-", r["provider"],
                  r["tokens"], r["output_ref"] or r["error"] or "")
            for r in conn.execute("SELECT a.* FROM attempts a JOIN chains c ON c.id = a.chain_id "
                                  "WHERE c.day = ? ORDER BY a.id", (today,))]
    print(tabulate(rows, headers=["project", "task", "status", "host", "provider", "tokens",
                                  "result or reason"]) if rows else f"nothing ran on {today}")
    if db.on_server(conn):
        print(f"\n{fleet_table(conn, today)}")
    print(f"\n{next_run_note(config)}")
    _, _, detail = lock_check()
    if detail != "free":
        print(f"\nrun lock: {detail}")
    return 0


def fleet_table(conn: Conn, day: str) -> str:
    """Per machine of the fleet: its tasks of the day by status, its tokens, and whether its
    run is alive (its lease unexpired)."""
    live = fleet.live_hosts(conn)
    rows = [[r["host"] or "-", "running" if r["host"] in live else "-", r["completed"], r["failed"],
             r["skipped"], r["interrupted"], r["tokens"]] for r in conn.execute(
        "SELECT a.host, SUM(CASE WHEN a.status = 'completed' THEN 1 ELSE 0 END) AS completed, "
        "SUM(CASE WHEN a.status IN ('failed', 'abandoned') THEN 1 ELSE 0 END) AS failed, "
        "SUM(CASE WHEN a.status = 'skipped' THEN 1 ELSE 0 END) AS skipped, "
        "SUM(CASE WHEN a.status = 'interrupted' THEN 1 ELSE 0 END) AS interrupted, "
        "SUM(a.tokens) AS tokens FROM attempts a JOIN chains c ON c.id = a.chain_id "
        "WHERE c.day = ? AND a.status != 'planned' GROUP BY a.host ORDER BY a.host", (day,))]
    return tabulate(rows, headers=["host", "run", "completed", "failed", "skipped", "interrupted",
                                   "tokens"]) if rows else "no machine of the fleet ran a task today"


def main(argv: list[str]) -> int:
    variables, args = split_variables(argv)
    parser = argparse.ArgumentParser(prog="nightshift-tasks status")
    parser.add_argument("--last", type=int, metavar="N", help="the last N runs instead of today")
    opts = parser.parse_args(args)
    try:
        config = open_config(variables.get("config"), Path(os.getcwd()))
    except ConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return EXIT_USAGE
    with storage.or_exit(config.state_location()):
        return show_status(config, opts.last)
