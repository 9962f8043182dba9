"""`nightshift-tasks report [--date YYYY-MM-DD] [--fleet]`: the last run's report, or a day's
summary; with --fleet, the day of every machine sharing the ledger, read from the ledger
itself (each machine writes its run files on its own disk)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from nightshift_tasks import guard, report, state, storage
from nightshift_tasks.commands.shared import EXIT_USAGE, reports_dir
from nightshift_tasks.config import ConfigError, open_config, split_variables
from nightshift_tasks.db import Conn


def show_report(day: str | None) -> int:
    if day:
        path = reports_dir() / f"summary-{day}.md"
    else:
        runs = sorted(reports_dir().glob("run-*.md"))
        if not runs:
            print(f"no runs recorded yet (each run writes its report to {reports_dir()})")
            return 0
        path = runs[-1]
    if not path.is_file():
        print(f"error: no report at {path}", file=sys.stderr)
        return 1
    print(path.read_text(encoding="utf-8"), end="")
    return 0


def fleet_record(conn: Conn, day: str) -> dict[str, Any]:
    """The day's tasks of every host, in the shape of a run record (report.markdown's)."""
    rows = list(conn.execute("SELECT a.* FROM attempts a JOIN chains c ON c.id = a.chain_id "
                             "WHERE c.day = ? AND a.status != 'planned' ORDER BY a.id", (day,)))
    spans = [report.attempt_span(r) for r in rows]
    tasks = [{"project": r["project_path"], "task_type": r["task"], "status": r["status"],
              "host": r["host"] or "-", "provider": r["provider"], "tokens_used": r["tokens"],
              "output_ref": r["output_ref"], "reason": r["error"],
              "duration_s": (span[1] - span[0]).total_seconds() if span else 0.0}
             for r, span in zip(rows, spans, strict=True)]
    ran = [span for span in spans if span]
    return {"start_time": day, "host": ", ".join(sorted({t["host"] for t in tasks})) or "-",
            "duration_s": (max(e for _, e in ran) - min(s for s, _ in ran)).total_seconds()
            if ran else 0.0,
            "tokens_used": sum(t["tokens_used"] for t in tasks), "budget": {}, "tasks": tasks,
            "log_dir": "on each host, under its own logging.path"}


def show_fleet(variables: dict[str, str], day: str | None) -> int:
    try:
        config = open_config(variables.get("config"), Path(os.getcwd()))
    except ConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return EXIT_USAGE
    day = day or state.now().date().isoformat()
    with storage.or_exit(config.state_location()):
        conn = guard.connection(config.state_location(), config.db_lock_wait())
        record = fleet_record(conn, day)
    if not record["tasks"]:
        print(f"no machine ran a task on {day}")
        return 0
    print(report.markdown(record).replace("# Nightshift run ", "# Nightshift fleet day ", 1), end="")
    return 0


def main(argv: list[str]) -> int:
    variables, args = split_variables(argv)
    parser = argparse.ArgumentParser(prog="nightshift-tasks report")
    parser.add_argument("--date", metavar="YYYY-MM-DD", help="that day's summary, not the last run")
    parser.add_argument("--fleet", action="store_true",
                        help="every machine's tasks of the day (default today), from the ledger")
    opts = parser.parse_args(args)
    return show_fleet(variables, opts.date) if opts.fleet else show_report(opts.date)
