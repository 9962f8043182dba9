"""The doit action's retries, fail-over and budget skips, through the real doit command
line: a `command` agent that fails as told before it does its work, then the Copilot
stand-in of tests/test_real_clis.py as the next provider."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest

from tests.conftest import Env, summary_rows, summary_table
from tests.test_real_clis import copilot_standin

OK = [("plan", "ok"), ("implement", "ok"), ("review", "ok")]


def failing_first(env: Env, failures: list[str], retries: int = 3, timeout: str = "1m") -> None:
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
        "command": {"enabled": True, "timeout": timeout, "max_retries": retries, "retry_delay": "50ms",
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


def test_a_forced_rerun_starts_where_the_chain_failed_over_unless_that_provider_is_dropped(env: Env) -> None:
    """A forced rerun the same day (`task=<slug>`) starts on the provider the chain failed
    over to; once the config drops that provider, on the first of the project's providers."""
    failing_first(env, ["Error: you have reached your usage limit for this month"])
    assert env.doit("run").returncode == 0
    forced = env.doit("run", "task=lint-fix")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert calls(env)[4:] == [("copilot", p, o) for p, o in OK]
    env.write_config({"providers": {"preference": ["command", "claude"],
                                    "copilot": {"enabled": False},
                                    "claude": {"enabled": True, "binary": str(env.agent)}}})
    dropped = env.doit("run", "task=lint-fix")
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    assert calls(env)[7:] == [("command", p, o) for p, o in OK]
    assert summary_rows(dropped.stdout)["alpha"][:2] == ["command", "1"]


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


def test_a_stated_reset_equal_to_the_calls_timeout_is_waited_for(env: Env) -> None:
    """Only a reset past the timeout fails over: one that ends as the timeout would is waited."""
    failing_first(env, ["rate limit exceeded: try again in 3s"], timeout="3s")
    result = env.doit("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls(env) == [("command", "plan", "transient"), *(("command", p, o) for p, o in OK)]
    assert ("command transient failure (exit 1: rate limit exceeded: try again in 3s); retry 1/3 "
            "in 3.0s") in task_log(env)


def test_an_agent_killed_by_a_signal_reports_its_negative_exit(env: Env) -> None:
    """A CLI that dies of a signal (exit -9) after printing a usage limit: the failure names
    the signal's exit status like any other non-zero one, and the chain fails over. KILL,
    because a signal that can be ignored may be (under nohup, HUP is)."""
    agent = env.tmp / "killed-agent"
    agent.write_text('#!/bin/sh\necho "Error: you have reached your usage limit for this month" >&2\n'
                     'kill -KILL $$\n')
    agent.chmod(0o755)
    failing_first(env, [])
    env.write_config({"providers": {"command": {"enabled": True, "timeout": "1m",
                                                "argv": [str(agent), "{prompt}"]}}})
    result = env.doit("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls(env) == [("command", "plan", "quota"), *(("copilot", p, o) for p, o in OK)]
    error = sqlite3.connect(env.home / "state.db").execute("SELECT error FROM calls").fetchone()
    assert error == ("exit -9: Error: you have reached your usage limit for this month",)
    assert ("switching to copilot for the rest of the chain: command: exit -9: Error: you have "
            "reached your usage limit for this month") in task_log(env)


@pytest.mark.parametrize(("level", "outputs", "prompts"), [("debug", 4, 4), ("info", 4, 0),
                                                            ("warn", 1, 0)])
def test_the_task_log_keeps_prompts_and_agent_output_by_logging_level(
        env: Env, level: str, outputs: int, prompts: int) -> None:
    """debug logs each call's prompt and output, info every call's output, warn only the
    failed call's."""
    failing_first(env, ["HTTP 429 too many requests"])
    env.write_config({"logging": {"level": level}})
    result = env.doit("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls(env) == [("command", "plan", "transient"), *(("command", p, o) for p, o in OK)]
    log = task_log(env)
    assert log.count("----- stdout -----") == outputs
    assert "----- stderr -----\nHTTP 429 too many requests\n" in log
    assert re.findall(r"^----- nightshift: (.*) prompt:\n# nightshift: (\w+) phase", log, re.M) == [
        ("plan", "plan"), ("plan", "plan"), ("implement 1", "implement"),
        ("review 1", "review")][:prompts]
    assert log.count("# nightshift: ") == prompts


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


def probing_agent(env: Env, probe: str, out: Path) -> Path:
    """The fake agent, after running `probe` (Python, given the ledger's path) with its
    output appended to `out`: what the ledger holds while each call runs."""
    script = env.tmp / f"probe-{out.name}.py"
    script.write_text(probe)
    agent = env.tmp / f"probing-agent-{out.name}"
    agent.write_text(f'#!/bin/sh\n"{sys.executable}" "{script}" "{env.home / "state.db"}" '
                     f'>> "{out}"\nexec "{env.agent}" "$@"\n')
    agent.chmod(0o755)
    return agent


LEASE_PROBE = """import sqlite3, sys
from datetime import datetime
conn = sqlite3.connect(sys.argv[1])
for provider, acquired, expires in conn.execute(
        "SELECT provider, acquired_at, expires_at FROM leases ORDER BY id"):
    seconds = (datetime.fromisoformat(expires) - datetime.fromisoformat(acquired)).total_seconds()
    print(provider, seconds)
"""


def test_a_calls_slot_is_leased_for_its_timeout_and_a_minute_of_grace(env: Env) -> None:
    """While a capped provider's call runs, it holds one lease that outlives the call's
    timeout by a minute: the slot stays taken while the call may still be running."""
    agent = probing_agent(env, LEASE_PROBE, env.tmp / "leases")
    env.projects(["alpha"])
    env.write_config({"providers": {"command": {"enabled": True, "timeout": "90s", "max_concurrent": 1,
                                                "argv": [str(agent), "{prompt}"]}}})
    result = env.doit("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (env.tmp / "leases").read_text() == "command 150.0\n" * 3
    conn = sqlite3.connect(env.home / "state.db")
    assert conn.execute("SELECT COUNT(*) FROM leases").fetchone() == (0,)


def test_the_usage_report_file_is_private_to_the_call_and_removed_after_it(env: Env) -> None:
    """Each call of a command gets a fresh $NIGHTSHIFT_USAGE_FILE in the temp directory, and
    none is left behind once the call is over."""
    tmp = env.tmp / "tmpdir"
    tmp.mkdir()
    seen = env.tmp / "usage-files"
    agent = env.tmp / "usage-file-agent"
    agent.write_text(f'#!/bin/sh\nls -l "$NIGHTSHIFT_USAGE_FILE" | cut -c1-10 >> "{seen}"\n'
                     f'echo "$NIGHTSHIFT_USAGE_FILE" >> "{seen}"\nexec "{env.agent}" "$@"\n')
    agent.chmod(0o755)
    env.projects(["alpha"])
    env.write_config({"providers": {"command": {"enabled": True, "timeout": "1m",
                                                "argv": [str(agent), "{prompt}"]}}})
    result = env.doit("run", TMPDIR=str(tmp))
    assert result.returncode == 0, result.stdout + result.stderr
    modes, paths = seen.read_text().splitlines()[::2], seen.read_text().splitlines()[1::2]
    assert modes == ["-rw-------"] * 3
    assert len(set(paths)) == 3
    assert all(re.fullmatch(rf"{re.escape(str(tmp))}/nightshift-usage-\w+\.json", p) for p in paths)
    assert list(tmp.glob("nightshift-usage-*")) == []


def test_a_task_waits_for_other_tasks_reservations_at_most_the_providers_timeout(env: Env) -> None:
    """The first task holds its reservation while its agent answers "try again in 1s" (until
    the test lets it work); the other, which only fits once the first settles, waits the
    provider's timeout (3s), not longer, and is skipped. Then the first completes."""
    works = env.tmp / "works"
    agent = env.tmp / "limited-agent"
    agent.write_text(f'#!/bin/sh\n[ -e "{works}" ] || {{ echo "rate limit exceeded: try again in 1s" >&2;'
                     f' exit 1; }}\nexec "{env.agent}" "$@"\n')
    agent.chmod(0o755)
    env.projects(["alpha", "beta"], tasks={"enabled": ["lint-fix"]},
                 budget={"weekly_tokens": 7 * 70_000, "max_percent": 100, "reserve_percent": 0})
    env.write_config({"providers": {"command": {"enabled": True, "timeout": "3s", "max_retries": 1000,
                                                "argv": [str(agent), "{prompt}"]}}})
    done: list[subprocess.CompletedProcess[str]] = []
    runner = threading.Thread(target=lambda: done.append(env.doit("run", "-n", "2")))
    runner.start()
    skipped: list[tuple[str, str]] = []
    deadline = time.monotonic() + 60
    while not skipped and time.monotonic() < deadline:
        skipped = attempts(env, "skipped")
        time.sleep(0.05)  # polling the ledger for the second task's outcome, not a timing guess
    works.touch()
    runner.join(120)
    (result,) = done
    assert result.returncode == 0, result.stdout + result.stderr
    ((second, error),) = skipped
    (first,) = {"alpha", "beta"} - {second}
    assert error == ("budget: needs ~50,000 tokens, 20,000 left of 70,000 (command); running tasks "
                     "still hold 50,000")
    assert [c.project for c in env.calls()] == [first] * 3
    conn = sqlite3.connect(env.home / "state.db")
    started, ended, log, iterations, failure = conn.execute(
        "SELECT started_at, ended_at, log_path, iterations, failure FROM attempts WHERE "
        "status = 'skipped'").fetchone()
    assert (iterations, failure) == (0, "not-started")  # no token spent: the next run retries it
    assert (datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds() >= 3
    assert ("waiting for running tasks to settle their command reservations: needs ~50,000 "
            "tokens, 20,000 left of 70,000 while they hold 50,000") in Path(log).read_text()
    rows = summary_rows(result.stdout)
    assert (rows[first][:5], rows[second][:5]) == (["command", "1", "0", "0", "0"],
                                                   ["command", "0", "0", "0", "1"])


def attempts(env: Env, status: str) -> list[tuple[str, str]]:
    """(project, error) of the attempts with `status`, once the ledger exists."""
    try:
        conn = sqlite3.connect(f"file:{env.home / 'state.db'}?mode=ro", uri=True)
        rows = conn.execute("SELECT project_path, error FROM attempts WHERE status = ?",
                            (status,)).fetchall()
    except sqlite3.OperationalError:  # not created or not migrated yet
        return []
    return [(path.rsplit("/", 1)[1], error) for path, error in rows]



def test_the_summary_times_a_task_from_its_start_to_its_end(env: Env) -> None:
    """The agent time of a task: at least its three calls (the stand-in sleeps 0.2 s in
    each), at most the whole run."""
    env.projects(["alpha"])
    began = time.monotonic()
    result = env.doit("run")
    took = time.monotonic() - began
    assert result.returncode == 0, result.stdout + result.stderr
    cell = summary_table(result.stdout)["alpha"]["agent time"]
    shown = re.fullmatch(r"(\d+)ms|(\d+\.\d)s", cell)
    assert shown, cell
    seconds = int(shown[1]) / 1000 if shown[1] else float(shown[2])
    assert 0.6 <= seconds <= took


def test_a_task_another_host_did_today_is_skipped_even_when_forced_by_doit(env: Env) -> None:
    """`doit run -a` on another host (a fleet's machine, here the same ledger under a second
    host id) skips the task that host did today: the claim says why, nothing runs, and the
    row shows the project's first provider and next to no time."""
    failing_first(env, [])  # command, then copilot: the first provider is the one shown
    repo = env.tmp / "repos" / "alpha"
    assert env.doit("run", NIGHTSHIFT_HOST_ID="first").returncode == 0
    result = env.doit("run", "-a", "alpha", NIGHTSHIFT_HOST_ID="second")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(env.calls()) == 3
    assert (f"  alpha:lint-fix: skipped: lint-fix was already done today in {repo} on first "
            "(completed)\n") in result.stdout
    row = summary_table(result.stdout)["alpha"]
    assert (row["provider"], row["skipped"]) == ("command", "1")
    assert re.fullmatch(r"\d+ms", row["agent time"]), row["agent time"]


CLAIM_PROBE = """import sqlite3, sys
print(*sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM claims").fetchone())
"""


def test_a_project_is_unclaimed_once_its_chain_is_done(env: Env) -> None:
    """One worker, two projects of one task each: while the second works, the first's
    finished chain no longer holds its claim (another machine may take it up at once)."""
    agent = probing_agent(env, CLAIM_PROBE, env.tmp / "claims")
    env.projects(["alpha", "beta"])
    env.write_config({"providers": {"command": {"enabled": True, "timeout": "1m",
                                                "argv": [str(agent), "{prompt}"]}}})
    result = env.doit("run", "-n", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (env.tmp / "claims").read_text() == "1\n" * 6
