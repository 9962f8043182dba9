"""The doit action for one (project, task): ledger transitions around the agent loop.

It runs in a doit worker process, takes one TaskSpec (picklable, no fork needed) and
never fails at the doit level: the outcome goes to the ledger and the returned values,
so the project's next task and every other project carry on.
"""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import date
from pathlib import Path
from typing import Any

from nightshift_tasks import (
    budget,
    db,
    fleet,
    git,
    mirrors,
    publish,
    state,
    storage,
    urls,
    window,
)
from nightshift_tasks.db import Conn
from nightshift_tasks.loop import LoopResult, run_loop
from nightshift_tasks.prompts import TaskBrief
from nightshift_tasks.provider_agent import ProviderAgent, SkipTask, note
from nightshift_tasks.signals import die_with_parent, interrupt_on_term
from nightshift_tasks.spec import TaskSpec


def _in_worktree(spec: TaskSpec, conn: Conn, agent: ProviderAgent,
                 brief: TaskBrief, log: Path) -> tuple[LoopResult, publish.Published | None]:
    """The loop in a fresh worktree of the task's branch, then publishing a passed review.

    The worktree goes away afterwards; the branch stays.
    """
    project = spec.project
    settings, path, url = project.publish, project.repo, project.url
    started = state.now()
    if settings.mode != "local" and not url:  # a url project's mirror is fetched
        git.git(path, "fetch", "--quiet", settings.remote, check=False)
    base, label = git.base_commit(path, project.base_branch, settings.remote)
    worktree = Path(spec.run.worktrees_dir) / f"{project.name}--{spec.slug}--{os.getpid()}"
    box = None
    try:
        box = git.add_worktree(path, worktree, base, mirrors.git_env(url) if url else None)
        agent.cwd = str(worktree)
        result = run_loop(agent, brief)
        if result.status != "completed":
            return result, None  # failed or abandoned work publishes nothing
        meta = {"task-id": f"{spec.slug}:{project.path}", "task-type": spec.slug,
                "task-title": spec.name, "provider": agent.provider,
                "cost-tier": spec.cost_label, "branch": publish.branch_name(spec),
                "base": label, "iterations": result.iterations,
                "duration": f"{(state.now() - started).total_seconds():.0f}s",
                "run-started": state.stamp(started),
                "tokens": int(state.attempt_usage(conn, agent.attempt_id)["tokens"])}
        try:
            done = publish.publish(spec, conn, box, label, result, meta)
        except (git.GitError, publish.PublishError) as exc:
            error = str(exc) if isinstance(exc, publish.Refused) else f"publish failed: {exc}"
            error = urls.redact(error, url)
            return dataclasses.replace(result, status="failed", error=error), None
        note(log, done.note)
        return result, done
    finally:
        git.remove_worktree(path, worktree, box)


def _begin(spec: TaskSpec, conn: Conn, day: str, log: Path) -> ProviderAgent | str:
    """Claim the project, open today's chain and start the task's attempt, in one
    transaction (each is a turn at the ledger's write lock, which 16 workers queue for).
    A string says why this run may not work the task: then there is no ledger row."""
    run, project = spec.run, spec.project
    with db.write(conn, f"claim {project.path}"):
        taken = fleet.claim(conn, project.path, day, run.run_id, spec.slug, run.forced)
        if taken:
            return taken
        chain_id = state.open_chain(conn, project.path, day, list(project.chain),
                                    project.providers[0].name, run.run_id)
        agent = ProviderAgent(spec, conn, chain_id, log)
        agent.attempt_id = state.start_attempt(
            conn, chain_id, run.run_id, project.path, spec.slug, agent.provider, os.getpid(),
            str(log))
    return agent


def _end(spec: TaskSpec, conn: Conn, day: str, attempt: int, outcome: state.Outcome) -> None:
    """Free what the task held (its budget reservations, an unused PR slot) and record its
    outcome, in one transaction; the chain's last task frees the project too."""
    with db.write(conn):
        budget.release(conn, attempt)
        publish.release_slot(conn, attempt)
        if state.finish_attempt(conn, attempt, outcome):
            fleet.unclaim(conn, spec.project.path, day, spec.run.run_id)


def _outcome(result: LoopResult | None, published: publish.Published | None) -> state.Outcome:
    """What the ledger records of the task; no result: interrupted (Ctrl-C, TERM) first."""
    if result is None:
        return state.Outcome("interrupted", error="interrupted")
    return state.Outcome(result.status, result.iterations, result.error,
                         published.output_ref if published else None, result.failure)


def run_task(spec: TaskSpec) -> dict[str, Any]:
    """The doit action. A storage fault that keeps even the outcome out of the ledger (a
    full disk, a database locked past budget.db_lock_wait) comes back as a failed result
    with its one line under "storage", for the reporter: never a traceback."""
    try:
        return _run_task(spec)
    except Exception as exc:  # only storage faults: describe leaves the rest a traceback
        fault = storage.describe(exc, spec.run.db_path)
        if fault is None:
            raise
        return {"status": "failed", "provider": spec.project.providers[0].name, "error": str(fault),
                "storage": str(fault)}


def _run_task(spec: TaskSpec) -> dict[str, Any]:
    """Run one task through plan -> implement -> review and record every transition."""
    interrupt_on_term()
    die_with_parent()
    started = time.monotonic()
    day = date.today().isoformat()
    run, project = spec.run, spec.project
    log = Path(run.log_dir) / day / f"{project.name}--{spec.slug}--{run.run_id}.log"
    storage.private_file(log)
    conn = state.connect(run.db_path, run.db_lock_wait)
    fault = None
    try:
        agent = _begin(spec, conn, day, log)
        if isinstance(agent, str):  # another machine works the project, or did the task
            return {"status": "skipped", "provider": project.providers[0].name, "error": agent,
                    "duration": time.monotonic() - started}
        attempt = agent.attempt_id
        brief = TaskBrief(spec.slug, spec.name, spec.description, project.name, project.path,
                          project.notes, spec.sources)
        span = run.window
        reason = (f"the time window {window.describe(span)} closed before this task could start"
                  if span and not window.is_open(span, state.now()) else None)
        result, published = None, None  # None: interrupted (Ctrl-C, TERM) before an outcome
        try:
            if project.url and not reason:
                mirrors.sync(project.url, Path(project.repo))
            reason = reason or publish.preflight(spec, conn, attempt) or agent.reserve()
            if reason:  # the reservation may have waited for running tasks: interruptible
                raise SkipTask(reason)
            result, published = _in_worktree(spec, conn, agent, brief, log)
        except mirrors.MirrorError as exc:  # nothing spent: the next run of the day tries again
            result = LoopResult("failed", 0, error=f"mirror of {project.path}: {exc}",
                                failure=state.NOT_STARTED)
        except SkipTask as exc:  # before the task spent a token, the next run tries again
            spent = state.attempt_usage(conn, attempt)["tokens"]
            result = LoopResult("skipped", 0, error=str(exc),
                                failure=None if spent else state.NOT_STARTED)
        except Exception as exc:  # a bug of ours must not stop the chain, nor a full disk
            fault = storage.describe(exc, run.db_path)
            result = LoopResult("failed", 0, error=str(fault) if fault else f"internal error: {exc!r}")
        finally:
            _end(spec, conn, day, attempt, _outcome(result, published))
        used = state.attempt_usage(conn, attempt)
    finally:
        conn.close()
    overran = run.window is not None and result.status != "skipped" and not window.is_open(
        run.window, state.now())
    return {"status": result.status, "provider": "→".join(agent.path), "overran": overran,
            "iterations": result.iterations, "error": result.error, "log": str(log),
            "published": published.note if published else "", "storage": str(fault or ""),
            "duration": time.monotonic() - started, "tokens": int(used["tokens"]),
            "cost_usd": float(used["cost_usd"]), "unknown_calls": int(used["unknown_calls"])}
