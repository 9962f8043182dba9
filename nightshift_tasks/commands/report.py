"""`nightshift-tasks report [--date YYYY-MM-DD]`: the last run's report, or a day's summary."""

from __future__ import annotations

import argparse
import sys

from nightshift_tasks.commands.shared import reports_dir
from nightshift_tasks.config import split_variables


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


def main(argv: list[str]) -> int:
    _, args = split_variables(argv)
    parser = argparse.ArgumentParser(prog="nightshift-tasks report")
    parser.add_argument("--date", metavar="YYYY-MM-DD", help="that day's summary, not the last run")
    return show_report(parser.parse_args(args).date)
