"""The doit reporter: one line per task as it starts, then the budget, the summary table
(summary_table.py), the results, the skipped projects and the problems.

It runs only in doit's main process. Exit status: 0 when no task failed, 1 when any task
failed or was abandoned, 4 (storage.EXIT_STORAGE) on a storage fault (raised here, after
doit has saved its state).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from doit.reporter import ConsoleReporter

from nightshift_tasks import (
    budget,
    db,
    fleet,
    guard,
    leftovers,
    report,
    runlock,
    shutdown,
    signals,
    state,
    storage,
)
from nightshift_tasks import terminal as term
from nightshift_tasks.durations import format_duration
from nightshift_tasks.engine import Engine
from nightshift_tasks.paths import nightshift_home
from nightshift_tasks.process import alive
from nightshift_tasks.progress import LiveLine
from nightshift_tasks.recovery import interrupt_leftovers, recover_orphans
from nightshift_tasks.summary_table import COUNTED, Row, joined, render
from nightshift_tasks.text import one_line

STALE_ASSIGNMENT = timedelta(hours=2)
EXIT_FAILED = 1
EXIT_LOCKED = 0  # another run is working: nothing went wrong, so cron stays quiet
LISTED = ("failed", "abandoned", "interrupted")  # each listed under the table with its log


def _subtask(name: str) -> tuple[str, str] | None:
    project, sep, slug = name.partition(":")
    return (project, slug) if sep else None


def _storage_exits(method: Callable[..., None]) -> Callable[..., None]:
    """A storage fault in the reporter (run lock, ledger, reports) ends the run with its one
    line and EXIT_STORAGE; nothing is summarised after a failed start."""

    @functools.wraps(method)
    def wrapper(self: SummaryReporter, *args: Any) -> None:
        try:
            with storage.faults(self.engine.db_path):
                method(self, *args)
        except storage.StorageError as exc:
            self.halted = True
            storage.fail(exc)

    return wrapper


class SummaryReporter(ConsoleReporter):  # type: ignore[misc]
    """doit makes the reporter itself, from (outstream, options) only: the run's engine is a
    class attribute, set by `reporter`."""

    engine: Engine

    def __init__(self, outstream: Any, options: dict[str, Any]) -> None:
        super().__init__(outstream, options)
        self.rows: dict[str, Row] = {}
        self.problems: list[tuple[str, str, str, str]] = []  # task, status, reason, log
        self.planned = 0  # subtasks selected for this run
        self.colour = term.colour_on(outstream)
        # logging.level warn or error: no line per task, only the summary and its problems
        self.chatty = self.engine.config.section("logging")["level"] in ("debug", "info")
        self.results: list[str] = []
        self.skipped: list[str] = []  # projects the plan skipped, with why
        self.locked_out = False
        self.halted = False  # a storage fault stopped the start of the run
        self.storage_fault = ""  # a task's storage fault: the run exits EXIT_STORAGE
        self.live: LiveLine | None = None
        self.heartbeat: fleet.Heartbeat | None = None
        self.started = time.monotonic()
        self.started_at = state.now()

    def write(self, text: str) -> None:
        """Every line doit or we print goes above the live status line, if there is one.
        Each is a task event, so it is also the run's heartbeat."""
        runlock.beat()
        if self.live:
            self.live.write(text)
        else:
            self.outstream.write(text)

    def _row(self, project: str) -> Row:
        return self.rows.setdefault(project, Row(project))

    @_storage_exits
    def initialize(self, tasks: dict[str, Any], selected_tasks: list[str]) -> None:
        """The start of a `doit run` (never of `list`): take the run lock, then clean up
        after any crashed run before the first task is dispatched."""
        engine = self.engine
        lock, bound = nightshift_home() / "run.lock", shutdown.progress_bound(engine.config)
        held_by = runlock.acquire(lock, bound)
        reason = shutdown.stuck(lock) if held_by else None
        if reason:
            self.write(f"nightshift: the run holding the lock ({held_by}) is stuck: {reason}; "
                       "stopping it and taking over\n")
            shutdown.take_over(lock)
            held_by = runlock.acquire(lock, bound)
        if held_by:
            self.locked_out = True
            self.write(f"nightshift: another run ({held_by.strip()}) holds the lock; "
                       "nothing to do\n")
            sys.exit(EXIT_LOCKED)
        signals.set_phase("running")
        conn = guard.connection(str(engine.db_path))
        lease = engine.config.state_lease()
        fleet.begin_run(conn, engine.run_id, lease)
        if db.is_server(engine.db_path):  # other machines judge this one by its lease
            self.heartbeat = fleet.Heartbeat(engine.db_path, engine.run_id, lease)
            self.heartbeat.start()
        for note in recover_orphans(conn):
            self.write(f"nightshift: {note}\n")
        cleared = state.clear_stale_assignments(conn, STALE_ASSIGNMENT)
        if cleared:
            self.write(f"nightshift: cleared {cleared} stale assignment(s)\n")
        keep = engine.config.section("logging")["retention_days"]
        for old in report.prune_logs(engine.log_dir, keep, state.now().date()):
            self.write(f"nightshift: removed logs older than {keep} days: {old}\n")
        repos = [p.mirror or p.path for p in engine.plan.projects if not p.skip_reason]
        for leftover in leftovers.prune(nightshift_home() / "worktrees", repos, alive):
            self.write(f"nightshift: removed worktree left by a crashed run: {leftover}\n")
        selected = set(selected_tasks)
        for plan in engine.plan.projects:
            if plan.name in selected or any(f"{plan.name}:{t}" in selected for t in plan.tasks):
                row = self._row(plan.name)
                row.provider = plan.provider or "-"
                self.planned += sum(plan.name in selected or f"{plan.name}:{t}" in selected
                                    for t in plan.tasks)
                if plan.skip_reason:
                    row.reasons.append(f"skipped: {plan.skip_reason}")
                    self.skipped.append(f"{plan.name}: {plan.skip_reason}")
        if term.is_terminal(self.outstream):
            self.live = LiveLine(self.outstream, engine.db_path, engine.run_id, self.progress)
            self.live.start()

    def progress(self) -> str:
        """The live line's counts: the same numbers the table's TOTAL row will show."""
        rows = list(self.rows.values())  # called from the live line's thread
        totals = {k: sum(r.counts[k] for r in rows) for k in COUNTED}
        counted = ", ".join(f"{n} {k}" for k, n in totals.items() if n)
        return f"{sum(totals.values())}/{self.planned} done" + (f": {counted}" if counted else "")

    def execute_task(self, task: Any) -> None:
        if _subtask(task.name) and self.chatty:
            super().execute_task(task)

    def skip_uptodate(self, task: Any) -> None:
        parsed = _subtask(task.name)
        if parsed:
            self._row(parsed[0]).counts["skipped"] += 1
            if self.chatty:
                super().skip_uptodate(task)
            note = "done today"
            if note not in self._row(parsed[0]).reasons:
                self._row(parsed[0]).reasons.append(note)

    def add_success(self, task: Any) -> None:
        parsed = _subtask(task.name)
        if not parsed:
            return
        values = task.values or {}
        row = self._row(parsed[0])
        status = values.get("status", "completed")
        row.counts[status] = row.counts.get(status, 0) + 1
        row.provider = joined(row.provider, values.get("provider") or "")
        row.seconds += float(values.get("duration", 0.0))
        row.tokens += int(values.get("tokens", 0))
        unknown = int(values.get("unknown_calls", 0))
        if unknown:  # a command that did not report its usage: its 0 is not the truth
            row.reasons.append(f"{parsed[1]}: usage of {unknown} call(s) unknown")
        if self.chatty:
            self.write(f"   {task.name} {term.paint(status, self.colour)} in "
                       f"{format_duration(float(values.get('duration', 0)))}"
                       f", {int(values.get('tokens', 0)):,} tokens"
                       f"{f' (+ {unknown} call(s) of unknown usage)' if unknown else ''}\n")
        if values.get("overran"):  # in full under the table too: the cell may be cut
            row.reasons.append(f"{parsed[1]} ran past the end of the time window")
            self.results.append(f"{task.name}: ran past the end of the time window")
        if values.get("published"):
            row.reasons.append(f"{parsed[1]}: {values['published']}")
            self.results.append(f"{task.name}: {values['published']}")
        self.storage_fault = values.get("storage") or self.storage_fault
        if values.get("error"):
            row.reasons.append(f"{parsed[1]} {status}: {values['error']}")
            self.problems.append((task.name, status, values["error"], values.get("log") or ""))

    def add_failure(self, task: Any, fail: Any) -> None:
        parsed = _subtask(task.name) or (task.name, "")
        message = fail.get_msg().strip().splitlines()[-1] if fail.get_msg().strip() else "error"
        self._row(parsed[0]).counts["failed"] += 1
        self._row(parsed[0]).reasons.append(f"{parsed[1]} failed: {message}")
        self.problems.append((task.name, "failed", message, ""))
        self.write(f"   {task.name} {term.paint('failed', self.colour)}: {one_line(message, 200)}\n")

    @_storage_exits
    def complete_run(self) -> None:
        signals.set_phase("finishing")  # a signal from here on only makes the exit 130
        if self.locked_out or not runlock.held():
            return
        shutdown.stop_workers()  # before the report, so it shows what they recorded
        if self.live:
            self.live.stop()
            self.live = None
        if self.halted:
            return
        interrupted = isinstance(sys.exc_info()[1], KeyboardInterrupt) or bool(signals.signalled())
        engine = self.engine
        conn = guard.connection(str(engine.db_path))
        interrupt_leftovers(conn, engine.run_id)  # a worker killed before it could say so
        fleet.end_run(conn, engine.run_id)
        if self.heartbeat:
            self.heartbeat.stop()
        record = report.run_record(conn, engine.plan, engine.run_id, self.started_at, state.now(),
                                   engine.log_dir)
        self._count_interrupted(record)
        self.outstream.write(self.budget_header() + self.table(interrupted) + "\n")
        run_md = report.write_reports(nightshift_home() / "reports", record,
                                      engine.config.section("reporting")["morning_summary"])
        self.results.append(f"report: {run_md}")
        for title, lines in (("Results", self.results), ("Skipped", self.skipped)):
            if lines:
                self.outstream.write(f"\n{title}:\n" + "".join(f"  {one_line(line)}\n" for line in lines))
        if self.problems:
            self.outstream.write("\nProblems:\n" + "".join(self._problem(*p) for p in self.problems))
        if interrupted:
            # Replaces the KeyboardInterrupt: a clean stop, after doit saved its state.
            sys.exit(signals.EXIT_INTERRUPTED)
        if self.storage_fault:
            sys.exit(storage.EXIT_STORAGE)
        if any(r.counts["failed"] + r.counts["abandoned"] for r in self.rows.values()):
            sys.exit(EXIT_FAILED)

    def budget_header(self) -> str:
        """Each provider this run used: its allowance, the equation, what the run spent."""
        engine = self.engine
        used = {p for row in self.rows.values() for p in row.provider.split("→")}
        conn = guard.connection(str(engine.db_path))
        lines = []
        for name, figures in engine.plan.allowances.items():
            if name in used:
                end = budget.standing(conn, engine.run_id, name)
                lines.append(f"budget {name}: {figures.equation}; this run used {end.settled:,}"
                             + (f", {end.held:,} still reserved" if end.held else "")
                             + (f", {end.kept:,} kept for calls of unknown usage" if end.kept else ""))
        return "\n" + "\n".join(lines) + "\n" if lines else ""

    def _count_interrupted(self, record: dict[str, Any]) -> None:
        """Interrupted tasks never reach doit's reporter: the ledger, once the workers are
        gone, is where they are counted."""
        for task in record["tasks"]:
            if task["status"] == "interrupted":
                row = self._row(task["project"])
                row.counts["interrupted"] += 1
                row.reasons.append(f"{task['task_type']} interrupted")
                self.problems.append((f"{task['project']}:{task['task_type']}", "interrupted",
                                      task["reason"] or "interrupted", task["log"] or ""))

    def _problem(self, name: str, status: str, reason: str, log: str) -> str:
        """One problem in full: the reason is never cut, and the log says the rest."""
        line = f"  {one_line(name)}: {term.paint(status, self.colour)}: {one_line(reason)}\n"
        return line + (f"    log: {one_line(log)}\n" if log and status in LISTED else "")

    def table(self, interrupted: bool) -> str:
        wall = format_duration(time.monotonic() - self.started)
        note = "interrupted" if interrupted else f"{len(self.rows)} project(s), wall {wall}"
        return render(list(self.rows.values()), note, term.columns(self.outstream), self.colour)


def reporter(engine: Engine) -> type[SummaryReporter]:
    """The reporter class for DOIT_CONFIG, given the run's engine. doit names the class to
    spawned workers, so it must be this module's own: the engine is set on it."""
    SummaryReporter.engine = engine
    return SummaryReporter
