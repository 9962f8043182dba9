"""The doit action for one (project, task): ledger transitions around the agent loop.

It runs in a doit worker process, takes one plain dict (picklable, no fork needed) and
never fails at the doit level: the outcome goes to the ledger and the returned values,
so the project's next task and every other project carry on.
"""

from __future__ import annotations

import os
import time
from datetime import date
from pathlib import Path
from typing import Any

from nightshift_tasks import agents, state
from nightshift_tasks.loop import Agent, AgentFailure, LoopResult, run_loop
from nightshift_tasks.process import append_log, interrupt_on_term, run_process, tail
from nightshift_tasks.prompts import TaskBrief


def make_agent(spec: dict[str, Any], log: Path) -> Agent:
    provider, settings = spec["provider"], spec["settings"]
    env = agents.agent_env()

    def call(phase: str, prompt: str) -> str:
        result = run_process(agents.build_argv(provider, settings, prompt), spec["path"],
                             spec["timeout_s"], env)
        append_log(log, phase, result)
        if result.error:
            raise AgentFailure(result.error)
        if result.timed_out:
            raise AgentFailure(f"{phase}: timed out after {spec['timeout_s']:g}s "
                               f"(process group stopped); see {log}")
        if result.exit_code != 0:
            detail = tail(result.stderr) or tail(result.stdout) or "no output"
            raise AgentFailure(f"{phase}: exit {result.exit_code}: {detail}; see {log}")
        text, error = agents.reply_text(provider, result.stdout)
        if error:
            raise AgentFailure(f"{phase}: {error}; see {log}")
        return text

    return call


def run_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one task through plan -> implement -> review and record every transition."""
    interrupt_on_term()
    started = time.monotonic()
    day = date.today().isoformat()
    log = Path(spec["log_dir"]) / day / f"{spec['project']}--{spec['slug']}--{spec['run_id']}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    conn = state.connect(Path(spec["db_path"]))
    try:
        chain_id = state.open_chain(conn, spec["path"], day, spec["chain"], spec["provider"],
                                    spec["run_id"])
        attempt = state.start_attempt(conn, chain_id, spec["run_id"], spec["path"], spec["slug"],
                                      spec["provider"], os.getpid(), str(log))
        brief = TaskBrief(spec["slug"], spec["name"], spec["description"], spec["project"],
                          spec["path"], tuple(spec["notes"]), tuple(spec["sources"]))
        try:
            result = run_loop(make_agent(spec, log), brief)
        except KeyboardInterrupt:
            state.finish_attempt(conn, attempt, state.Outcome("interrupted", error="interrupted"))
            raise
        except Exception as exc:  # a bug of ours must not stop the chain
            result = LoopResult("failed", 0, error=f"internal error: {exc!r}")
        state.finish_attempt(conn, attempt, state.Outcome(result.status, result.iterations,
                                                          result.error))
    finally:
        conn.close()
    return {"status": result.status, "provider": spec["provider"], "iterations": result.iterations,
            "error": result.error, "log": str(log), "duration": time.monotonic() - started}
