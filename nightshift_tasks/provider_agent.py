"""The agent of one task as the loop calls it: one provider candidate after another, each
call retried with backoff and jitter, its usage and failures recorded in the ledger, and the
task's budget reservation on the provider it runs on now. execute.py wraps it in the task's
ledger transitions and worktree.
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

from nightshift_tasks import agents, budget, db, leases, state, usage_report, window
from nightshift_tasks.db import Conn
from nightshift_tasks.durations import format_duration
from nightshift_tasks.loop import AgentFailure
from nightshift_tasks.process import ProcResult, append_log, run_process
from nightshift_tasks.spec import Candidate, TaskSpec

LEASE_GRACE_SECONDS = 60.0


class ProviderExhausted(Exception):
    """Retries used up on a transient failure, or a quota / hard limit / missing login: try
    the next provider."""


class SkipTask(Exception):
    """The task is skipped: the window closed or a publish check refused before it started,
    or the provider it runs on (or fails over to) has too little allowance left."""


def note(log: Path, text: str) -> None:
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
                note(self.log, f"switching to {self.provider} for the rest of the chain: {exc}")
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
            note(self.log, f"waiting for running tasks to settle their {self.provider} "
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
            note(self.log, f"{cand.name} transient failure ({failure.message}); retry "
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
                    lambda text: note(self.log, text)):
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
            note(self.log, f"{phase} prompt:\n{prompt}")
        output = level in ("debug", "info") or not result.ok
        done = append_log(self.log, f"{phase} via {name}", result, output)
        print(f"   {self.spec.project.name}:{self.spec.slug} {done}", flush=True)  # seen at -v 2
        reply = agents.parse_reply(name, result.stdout, usage_text)
        unknown = None if result.error else reply.usage_unknown  # nothing ran: it used nothing
        if unknown:
            note(self.log, f"warning: {phase} via {name}: {unknown}; its usage counts as "
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
