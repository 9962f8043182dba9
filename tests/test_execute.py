"""The doit action's retries, fail-over and budget skips, through the real doit command
line: a `command` agent that fails as told before it does its work, then the Copilot
stand-in of tests/test_real_clis.py as the next provider."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime
from itertools import pairwise

from tests.conftest import Env, summary_rows
from tests.test_real_clis import copilot_standin

OK = [("plan", "ok"), ("implement", "ok"), ("review", "ok")]


def failing_first(env: Env, failures: list[str], retries: int = 3) -> None:
    """The command agent prints each of `failures` (one per call, on stderr, exit 1) before
    it works; copilot (the stand-in) is the next provider."""
    queue = env.tmp / "failures"
    queue.write_text("".join(f"{line}\n" for line in failures))
    agent = env.tmp / "failing-first-agent"
    agent.write_text(f'#!/bin/sh\nq="{queue}"\nif [ -s "$q" ]; then\n  head -n 1 "$q" >&2\n'
                     f'  tail -n +2 "$q" > "$q.next"; mv "$q.next" "$q"; exit 1\nfi\n'
                     f'exec "{env.agent}" "$@"\n')
    agent.chmod(0o755)
    env.projects(["alpha"])
    env.write_config({"providers": {
        "preference": ["command", "copilot"],
        "command": {"enabled": True, "timeout": "1m", "max_retries": retries, "retry_delay": "50ms",
                    "argv": [str(agent), "{prompt}"]},
        "copilot": {"enabled": True, "binary": str(copilot_standin(env))}}})


def calls(env: Env) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(env.home / "state.db")
    return [(p, phase.split()[0], o) for p, phase, o in
            conn.execute("SELECT provider, phase, outcome FROM calls ORDER BY id")]


def task_log(env: Env) -> str:
    (log,) = (env.home / "logs").rglob("alpha--lint-fix--*.log")
    return log.read_text()


def test_a_quota_fails_over_at_once(env: Env) -> None:
    failing_first(env, ["Error: you have reached your usage limit for this month"])
    result = env.doit("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls(env) == [("command", "plan", "quota"), *(("copilot", p, o) for p, o in OK)]
    assert summary_rows(result.stdout)["alpha"][:2] == ["command→copilot", "1"]
    assert ("switching to copilot for the rest of the chain: command: exit 1: Error: you have "
            "reached your usage limit for this month") in task_log(env)


def test_a_stated_reset_past_the_calls_timeout_fails_over_at_once(env: Env) -> None:
    failing_first(env, ["rate limit exceeded: try again in 2 minutes"])
    result = env.doit("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls(env) == [("command", "plan", "transient"), *(("copilot", p, o) for p, o in OK)]
    assert "retry" not in task_log(env)


def test_a_stated_reset_within_the_timeout_is_waited_for(env: Env) -> None:
    failing_first(env, ["rate limit exceeded: try again in 1s"])
    result = env.doit("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls(env) == [("command", "plan", "transient"), *(("command", p, o) for p, o in OK)]
    assert ("command transient failure (exit 1: rate limit exceeded: try again in 1s); retry 1/3 "
            "in 1.0s") in task_log(env)
    assert gaps(env)[0] >= 1.0


def gaps(env: Env) -> list[float]:
    """Seconds from the end of each agent call to the start of the next, from the ledger
    (its stamps are to the millisecond)."""
    conn = sqlite3.connect(env.home / "state.db")
    spans = [(datetime.fromisoformat(a).timestamp(), datetime.fromisoformat(b).timestamp())
             for a, b in conn.execute("SELECT started_at, ended_at FROM calls ORDER BY id")]
    return [round(nxt[0] - prev[1], 3) for prev, nxt in pairwise(spans)]


def test_transient_failures_back_off_exponentially_with_jitter(env: Env) -> None:
    failing_first(env, ["HTTP 429 too many requests"] * 3)
    result = env.doit("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls(env) == [("command", "plan", "transient")] * 3 + [("command", p, o) for p, o in OK]
    delays = [int(ms) for ms in re.findall(r"; retry \d/3 in (\d+)ms", task_log(env))]
    # retry_delay 50ms x 2**attempt x a factor drawn from [0.5, 1.5] (printed to the ms)
    nominal = [50, 100, 200]
    assert len(delays) == 3, delays
    assert all(n // 2 <= d <= n * 3 // 2 for d, n in zip(delays, nominal, strict=True)), delays
    assert delays != nominal  # the same three draws all within 1% of 1.0: odds 1 in 10**6
    assert all(gap >= (d - 1) / 1000 for gap, d in zip(gaps(env), delays, strict=False))


def test_after_a_budget_skip_the_projects_next_task_may_still_fit(env: Env) -> None:
    """a spends 120,000 of the 200,000 allowance; b's first task (~150,000) no longer fits,
    its second (~50,000) still does."""
    agent = env.tmp / "reporting-agent"
    agent.write_text(f'#!/bin/sh\n"{env.agent}" "$@" || exit\n'
                     'echo \'NIGHTSHIFT_USAGE {"input_tokens": 30000, "output_tokens": 10000}\'\n')
    agent.chmod(0o755)
    a, b = env.projects(["a", "b"], schedule={"max_tasks": 2},
                        budget={"weekly_tokens": 1_400_000, "max_percent": 100, "reserve_percent": 0})
    env.write_config({"projects": [{"path": str(a), "tasks": ["dead-code"]},
                                   {"path": str(b), "tasks": ["dead-code", "lint-fix"]}],
                      "tasks": {"enabled": ["dead-code", "lint-fix"], "priorities": {"dead-code": 1}},
                      "providers": {"preference": ["command"], "command": {
                          "enabled": True, "timeout": "1m", "argv": [str(agent), "{prompt}"]}}})
    assert "b   dead-code, lint-fix via command" in env.doit("list").stdout
    result = env.doit("run", "-n", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [(c.project, c.task) for c in env.calls()][::3] == [("a", "dead-code"), ("b", "lint-fix")]
    rows = summary_rows(result.stdout)
    assert (rows["a"][:6], rows["b"][:6]) == (["command", "1", "0", "0", "0", "120000"],
                                              ["command", "1", "0", "0", "1", "120000"])
    assert ("  b:dead-code: skipped: budget: needs ~150,000 tokens, 80,000 left of 200,000 (command)\n"
            in result.stdout)
