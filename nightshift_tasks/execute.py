"""The doit action for one (project, task): ledger transitions around the agent loop.

It runs in a doit worker process, takes one TaskSpec (picklable, no fork needed) and
never fails at the doit level: the outcome goes to the ledger and the returned values,
so the project's next task and every other project carry on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from nightshift_tasks import (
    agents,
    budget,
    db,
    fleet,
    git,
    leases,
    mirrors,
    publish,
    state,
    storage,
    urls,
    usage_report,
    window,
)
from nightshift_tasks.db import Conn
from nightshift_tasks.durations import format_duration
from nightshift_tasks.loop import AgentFailure, LoopResult, run_loop
from nightshift_tasks.process import ProcResult, append_log, run_process
from nightshift_tasks.prompts import TaskBrief
from nightshift_tasks.signals import die_with_parent, interrupt_on_term
from nightshift_tasks.spec import Candidate, TaskSpec

LEASE_GRACE_SECONDS = 60.0


class ProviderExhausted(Exception):
    """Retries used up on a transient failure, or a quota / hard limit / missing login: try
    the next provider."""


class SkipTask(Exception):
    """The task is skipped: the window closed or a publish check refused before it started,
    or the provider it runs on (or fails over to) has too little allowance left."""


def _note(log: Path, text: str) -> None:
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"----- nightshift: {text}\n")


class ProviderAgent:
    """The agent of one task: retries transient failures with backoff and jitter, and fails
    over to the next provider for the rest of the project's chain on a hard limit."""

    def __init__(self, spec: TaskSpec, conn: Conn, chain_id: int,
                 log: Path) -> None:
        self.spec, self.conn, self.chain_id, self.log = spec, conn, chain_id, log
        self.attempt_id = 0  # set once the ledger row exists
        self.cwd = spec.project.path  # the task's worktree, once it exists
        self.candidates = spec.project.providers
        names = [c.name for c in self.candidates]
        current = state.chain_provider(conn, chain_id)  # a fail-over earlier in the chain sticks
        self.index = names.index(current) if current in names else 0
        self.path = [names[self.index]]

    @property
    def provider(self) -> str:
        return self.candidates[self.index].name

    def __call__(self, phase: str, prompt: str) -> str:
        while True:
            try:
                return self._with_retries(self.candidates[self.index], phase, prompt)
            except ProviderExhausted as exc:
                if self.index + 1 >= len(self.candidates):
                    raise AgentFailure(f"{phase}: {exc}; no other provider to fail over to",
                                       kind="provider") from None
                budget.release(self.conn, self.attempt_id, self.provider)
                self.index += 1
                self.path.append(self.provider)
                _note(self.log, f"switching to {self.provider} for the rest of the chain: {exc}")
                state.fail_over(self.conn, self.chain_id, self.attempt_id, self.path)
                reason = self.reserve()
                if reason:
                    raise SkipTask(reason) from None

    def reserve(self) -> str | None:
        """Reserve the task's estimate from the allowance of the provider it runs on now; why
        it must be skipped, if it can't. While other tasks' open reservations are all that
        stand in the way, wait for them to settle (at most the provider's timeout, and not
        past the time window)."""
        pools = self.spec.pools
        if pools is None:
            return None  # the budget is ignored
        cand, pool = self.candidates[self.index], pools[self.provider]
        ask = budget.Ask(self.attempt_id, self.spec.run.run_id, self.provider, pool.estimate,
                         pool.allowance, os.getpid(),
                         date.today().isoformat() if db.is_server(self.spec.run.db_path) else None)
        until, span = time.monotonic() + cand.timeout_s, self.spec.run.window

        def patience() -> bool:
            return time.monotonic() < until and (not span or window.is_open(span, state.now()))

        def waiting(now: budget.Standing) -> None:
            _note(self.log, f"waiting for running tasks to settle their {self.provider} "
                  f"reservations: needs ~{ask.estimate:,} tokens, {now.left(ask.allowance):,} "
                  f"left of {ask.allowance:,} while they hold {now.held:,}")
            state.set_phase(self.conn, self.attempt_id, f"waiting for {self.provider} budget")

        fits, now = budget.reserve_waiting(self.conn, ask, patience, waiting)
        if fits:
            return None
        held = (f"; running tasks still hold {now.held:,}" if now.held else "") + (
            f"; {now.kept:,} kept for calls of unknown usage" if now.kept else "")
        return (f"budget: needs ~{ask.estimate:,} tokens, {now.left(ask.allowance):,} left of "
                f"{ask.allowance:,} ({self.provider}){held}")

    def _with_retries(self, cand: Candidate, phase: str, prompt: str) -> str:
        for attempt in range(cand.max_retries + 1):
            failure = self._once(cand, phase, prompt)
            if isinstance(failure, str):
                return failure
            if failure.kind == "agent":
                raise AgentFailure(f"{phase}: {failure.message}; see {self.log}")
            if failure.kind in ("quota", "auth") or attempt == cand.max_retries:
                raise ProviderExhausted(f"{cand.name}: {failure.message}")
            delay = cand.retry_delay_s * 2 ** attempt * random.uniform(0.5, 1.5)
            if failure.reset_in is not None:
                if failure.reset_in > cand.timeout_s:
                    raise ProviderExhausted(f"{cand.name}: {failure.message}")
                delay = failure.reset_in
            _note(self.log, f"{cand.name} transient failure ({failure.message}); retry "
                  f"{attempt + 1}/{cand.max_retries} in {format_duration(delay)}")
            time.sleep(delay)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _once(self, cand: Candidate, phase: str, prompt: str) -> str | agents.Failure:
        """One agent call: the reply text, or the classified failure."""
        name, settings = cand.name, cand.settings
        report = None  # the file the provider reports its usage in, if it does
        if agents.uses_usage_file(name):
            fd, report = tempfile.mkstemp(prefix="nightshift-usage-", suffix=".json")
            os.close(fd)
        started = state.now()
        try:
            ttl = cand.timeout_s + LEASE_GRACE_SECONDS
            with agents.invocation(name, settings, prompt, report) as call, leases.slot(
                    self.conn, name, cand.max_concurrent, ttl,
                    lambda text: _note(self.log, text)):
                result = run_process(call.argv, self.cwd, cand.timeout_s,
                                     agents.agent_env(name, usage_file=report), stdin=call.stdin,
                                     started=lambda pgid: state.set_agent_pgid(
                                         self.conn, self.attempt_id, pgid, f"{phase} via {name}"))
            usage_text = usage_report.read(report) if report else None
        except agents.PromptTooLong as exc:  # a config that cannot carry this prompt
            result, usage_text = ProcResult(-1, "", "", 0.0, error=str(exc)), None
        finally:
            if report:
                with contextlib.suppress(OSError):  # the agent may have removed it
                    os.unlink(report)
        level = self.spec.run.log_level
        if level == "debug":
            _note(self.log, f"{phase} prompt:\n{prompt}")
        output = level in ("debug", "info") or not result.ok
        done = append_log(self.log, f"{phase} via {name}", result, output)
        print(f"   {self.spec.project.name}:{self.spec.slug} {done}", flush=True)  # seen at -v 2
        reply = agents.parse_reply(name, result.stdout, usage_text)
        unknown = None if result.error else reply.usage_unknown  # nothing ran: it used nothing
        if unknown:
            _note(self.log, f"warning: {phase} via {name}: {unknown}; its usage counts as "
                  "unknown, not as zero: the task's reservation stays charged")
        failure = None if result.ok and not reply.error else self._classify(cand, result, reply)
        state.record_call(self.conn, self.attempt_id, phase, name, started, result.exit_code,
                          failure.kind if failure else "ok", failure.message if failure else None,
                          dataclasses.asdict(reply.usage), usage_known=unknown is None)
        return failure or reply.text

    @staticmethod
    def _classify(cand: Candidate, result: ProcResult, reply: agents.Reply) -> agents.Failure:
        if result.error:
            return agents.Failure("agent", result.error)
        if result.timed_out:
            return agents.Failure("agent", f"timed out after {cand.timeout_s:g}s "
                                  "(process group stopped)")
        output = reply.error or result.stderr.strip() or result.stdout.strip()
        failure = agents.classify(cand.name, output, reply.status)
        if reply.error or result.exit_code == 0:
            return failure
        return dataclasses.replace(failure, message=f"exit {result.exit_code}: {failure.message}")


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
    box = git.add_worktree(path, worktree, base, mirrors.git_env(url) if url else None)
    agent.cwd = str(worktree)
    try:
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
        _note(log, done.note)
        return result, done
    finally:
        git.remove_worktree(path, worktree)


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
        taken = fleet.claim(conn, project.path, day, run.run_id, spec.slug, run.forced)
        if taken:  # another machine works the project, or did the task: no ledger row here
            return {"status": "skipped", "provider": project.providers[0].name, "error": taken,
                    "duration": time.monotonic() - started}
        chain_id = state.open_chain(conn, project.path, day, list(project.chain),
                                    project.providers[0].name, run.run_id)
        agent = ProviderAgent(spec, conn, chain_id, log)
        attempt = agent.attempt_id = state.start_attempt(
            conn, chain_id, run.run_id, project.path, spec.slug, agent.provider, os.getpid(),
            str(log))
        brief = TaskBrief(spec.slug, spec.name, spec.description, project.name, project.path,
                          project.notes, spec.sources)
        span = run.window
        reason = (f"the time window {window.describe(span)} closed before this task could start"
                  if span and not window.is_open(span, state.now()) else None)
        published = None
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
        except KeyboardInterrupt:
            state.finish_attempt(conn, attempt, state.Outcome("interrupted", error="interrupted"))
            raise
        except Exception as exc:  # a bug of ours must not stop the chain, nor a full disk
            fault = storage.describe(exc, run.db_path)
            result = LoopResult("failed", 0, error=str(fault) if fault else f"internal error: {exc!r}")
        finally:
            budget.release(conn, attempt)
            publish.release_slot(conn, attempt)
        if state.finish_attempt(conn, attempt, state.Outcome(
                result.status, result.iterations, result.error,
                published.output_ref if published else None, result.failure)):
            fleet.unclaim(conn, project.path, day, run.run_id)
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
