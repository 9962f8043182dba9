"""The morning report: after every run, `reports/run-<timestamp>.json` and `.md` with the
measured tokens, and (reporting.morning_summary) a `summary-<date>.md` that gathers all of
that day's runs."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime
from pathlib import Path
from typing import Any

from nightshift_tasks import budget, storage
from nightshift_tasks.db import Conn, host_id
from nightshift_tasks.durations import format_duration
from nightshift_tasks.plan_data import Plan

SECTIONS = (("completed", "Completed"), ("failed", "Failed"), ("abandoned", "Abandoned"),
            ("skipped", "Skipped"), ("interrupted", "Interrupted"))


def attempt_span(row: Any) -> tuple[datetime, datetime] | None:
    """When an attempt started and ended, once it has done both."""
    if not (row["started_at"] and row["ended_at"]):
        return None
    return datetime.fromisoformat(row["started_at"]), datetime.fromisoformat(row["ended_at"])


def run_record(conn: Conn, plan: Plan, run_id: str, started: datetime,
               ended: datetime, log_dir: Path) -> dict[str, Any]:
    """Every task this run touched, with its outcome, plus the projects the plan skipped."""
    names = {p.path: p.name for p in plan.projects}
    tasks = []
    for row in conn.execute("SELECT * FROM attempts WHERE run_id = ? AND status != 'planned' "
                            "ORDER BY id", (run_id,)):
        span = attempt_span(row)
        seconds = (span[1] - span[0]).total_seconds() if span else 0.0
        tasks.append({"project": names.get(row["project_path"], row["project_path"]),
                      "path": row["project_path"], "task_type": row["task"],
                      "status": row["status"], "provider": row["provider"],
                      "tokens_used": row["tokens"], "cost_usd": row["cost_usd"],
                      "iterations": row["iterations"], "output_ref": row["output_ref"],
                      "reason": row["error"], "duration_s": round(seconds, 3),
                      "log": row["log_path"]})
    tasks += [{"project": p.name, "path": p.path, "task_type": "", "status": "skipped",
               "provider": "", "tokens_used": 0, "cost_usd": 0.0, "iterations": 0,
               "output_ref": None, "reason": p.skip_reason, "duration_s": 0.0, "log": None}
              for p in plan.projects if p.skip_reason]
    budgets = {name: {"allowance": a.allowance, "equation": a.equation,
                      "used_by_run": budget.settled(conn, run_id, name)}  # by the provider called
               for name, a in plan.allowances.items()}
    return {"run_id": run_id, "host": host_id(), "date": started.date().isoformat(),
            "start_time": started.isoformat(timespec="seconds"),
            "end_time": ended.isoformat(timespec="seconds"),
            "duration_s": round((ended - started).total_seconds(), 3),
            "tokens_used": sum(t["tokens_used"] for t in tasks), "budget": budgets,
            "tasks": tasks, "log_dir": str(log_dir)}


def markdown(record: dict[str, Any], level: int = 1) -> str:
    head = "#" * level
    counts = {key: sum(t["status"] == key for t in record["tasks"]) for key, _ in SECTIONS}
    lines = [f"{head} Nightshift run {record['start_time']}", "",
             f"- Host: {record.get('host', '-')}",
             f"- Duration: {format_duration(record['duration_s'])}",
             f"- Tokens used (measured): {record['tokens_used']:,}",
             "- Tasks: " + (", ".join(f"{n} {key}" for key, n in counts.items() if n) or "none"),
             f"- Logs: {record['log_dir']}"]
    lines += [f"- Budget {name}: {b['equation']}; this run used {b['used_by_run']:,}"
              for name, b in record["budget"].items() if b["used_by_run"]]
    for key, title in SECTIONS:
        chosen = [t for t in record["tasks"] if t["status"] == key]
        if not chosen:
            continue
        lines += ["", f"{head}# {title}", ""]
        for t in chosen:
            what = f"{t['project']}: {t['task_type']}" if t["task_type"] else t["project"]
            extra = [f"on {t['host']}" if t.get("host") else "",
                     f"{t['tokens_used']:,} tokens via {t['provider']}" if t["provider"] else "",
                     format_duration(t["duration_s"]) if t["duration_s"] else "",
                     f"result: {t['output_ref']}" if t["output_ref"] else "",
                     f"reason: {t['reason']}" if t["reason"] else ""]
            lines.append(f"- {what}" + "".join(f" — {e}" for e in extra if e))
    return "\n".join(lines) + "\n"


def prune_logs(log_dir: Path, keep_days: int, today: date) -> list[Path]:
    """Remove logs/<YYYY-MM-DD>/ directories older than `keep_days` (0: keep everything)."""
    removed = []
    for entry in sorted(log_dir.iterdir()) if keep_days and log_dir.is_dir() else []:
        try:
            day = date.fromisoformat(entry.name)
        except ValueError:
            continue
        if (today - day).days > keep_days:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def write_reports(reports: Path, record: dict[str, Any], day_summary: bool) -> Path:
    """run-<timestamp>.json and .md, and this run appended to the day's summary when
    `day_summary`. Returns the run's Markdown."""
    storage.private_dir(reports)
    stem = reports / f"run-{record['run_id']}"  # <YYYYmmdd-HHMMSS>-<pid>: unique per run
    for suffix, text in ((".json", json.dumps(record, indent=2) + "\n"), (".md", markdown(record))):
        with storage.private_open(stem.with_suffix(suffix), "w") as fh:
            fh.write(text)
    if day_summary:
        with storage.private_open(reports / f"summary-{record['date']}.md", "a") as fh:
            if fh.tell() == 0:
                fh.write(f"# Nightshift summary {record['date']}\n\n")
            fh.write(markdown(record, level=2) + "\n")
    return stem.with_suffix(".md")
