from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from nightshift_tasks import agents, usage_report
from nightshift_tasks.usage_report import REPORT_BYTES, parse, read
from tests.conftest import Env, summary_rows
from tests.test_agents import LONG_TASK

USAGE = {"input_tokens": 1000, "output_tokens": 200, "cache_read_tokens": 5000,
         "cache_write_tokens": 300, "reasoning_tokens": 50, "cost_usd": 0.25}
PER_CALL = 1000 + 300 + 200 + 50  # input + cache writes + output + reasoning
LOW_TIER = 50_000  # what a low-cost task reserves before any measured run

# A `command` agent that reports its usage as $USAGE_MODE says. Its implement reply is plain
# text, so the review prompt shows whether the usage line was taken out of the reply.
AGENT = r"""#!/bin/sh
case "$1" in
  *"# nightshift: plan phase"*) phase=plan ;;
  *"# nightshift: implement phase"*) phase=implement ;;
  *) phase=review ;;
esac
task=$(printf '%s\n' "$1" | sed -n 's/^Task: .* \[\(.*\)\]$/\1/p')
printf '%s' "$1" > "$RECORD.prompt.$task.$phase"
case $phase in
  plan) echo '{"description": "tidy one thing", "steps": ["edit"], "files": []}' ;;
  implement) echo 'edited one file' ;;
  review) echo 'Reviewed. {"passed": true, "feedback": "fine", "issues": []}' ;;
esac
case "$USAGE_MODE" in
  file) printf '%s' "$USAGE" > "$NIGHTSHIFT_USAGE_FILE" ;;
  line) printf 'NIGHTSHIFT_USAGE %s\n\n' "$USAGE" ;;
  malformed-line) echo 'NIGHTSHIFT_USAGE {"input_tokens": "many", "output_tokens": 2}' ;;
  malformed-file) printf '{"input_tokens": 5' > "$NIGHTSHIFT_USAGE_FILE" ;;
esac
"""


def protocol_env(env: Env) -> None:
    """Two low-cost tasks in one chain, and a daily allowance of 80,000: the first task's
    reservation (50,000) leaves room for the second only if the first's usage is known."""
    env.agent.write_text(AGENT)
    env.projects(["alpha"], tasks={"enabled": ["lint-fix", "docs-backfill"]},
                 schedule={"max_tasks": 2},
                 budget={"weekly_tokens": 7 * 80_000, "max_percent": 100, "reserve_percent": 0})


def ledger(env: Env) -> list[sqlite3.Row]:
    conn = sqlite3.connect(env.home / "state.db")
    conn.row_factory = sqlite3.Row
    return conn.execute("SELECT c.*, a.task, a.log_path FROM calls c JOIN attempts a "
                        "ON a.id = c.attempt_id ORDER BY c.id").fetchall()


def used_today(env: Env) -> int:
    view = subprocess.run([sys.executable, "-m", "nightshift_tasks", "budget", "--json",
                           f"config={env.config}"], env=env.environ(), capture_output=True,
                          text=True, check=True)
    (command,) = json.loads(view.stdout)
    return int(command["used_today"])


@pytest.mark.parametrize("mode", ["file", "line"])
def test_reported_usage_is_recorded_and_settles_the_reservation(env: Env, mode: str) -> None:
    protocol_env(env)
    result = env.doit("run", USAGE_MODE=mode, USAGE=json.dumps(USAGE))
    assert result.returncode == 0, result.stdout + result.stderr
    # Settled at 4,650 measured, the first task left 75,350 of 80,000: the second ran too.
    assert summary_rows(result.stdout)["alpha"][:6] == ["command", "2", "0", "0", "0",
                                                        str(6 * PER_CALL)]
    assert f"budget command: 80,000 daily x (1 - 0.0% used) x 100% - 0 reserve = 80,000; " \
           f"this run used {6 * PER_CALL:,}\n" in result.stdout
    rows = ledger(env)
    assert len(rows) == 6
    for row in rows:
        assert {k: row[k] for k in USAGE} == USAGE
        assert (row["tokens"], row["usage_known"], row["outcome"]) == (PER_CALL, 1, "ok")
    for task in ("lint-fix", "docs-backfill"):  # the loop never saw the usage line
        review = Path(f"{env.record}.prompt.{task}.review").read_text()
        assert "## The implementation to review\nedited one file\n\n" in review
        assert "NIGHTSHIFT_USAGE" not in review
    assert "warning" not in Path(rows[0]["log_path"]).read_text()
    assert used_today(env) == 6 * PER_CALL


@pytest.mark.parametrize(("mode", "problem"), [
    ("malformed-line", "malformed usage report in the last NIGHTSHIFT_USAGE line: input_tokens "
                       "must be a non-negative integer, not str"),
    ("malformed-file", "malformed usage report in $NIGHTSHIFT_USAGE_FILE: not JSON (Expecting "
                       "',' delimiter)"),
    ("none", "no usage reported (neither $NIGHTSHIFT_USAGE_FILE nor a last NIGHTSHIFT_USAGE "
             "line)"),
])
def test_unknown_usage_keeps_the_reservation(env: Env, mode: str, problem: str) -> None:
    protocol_env(env)
    result = env.doit("run", USAGE_MODE=mode)
    assert result.returncode == 0, result.stdout + result.stderr
    # The first task's 50,000 stay charged, so the second no longer fits: skipped, not run.
    assert summary_rows(result.stdout)["alpha"][:6] == ["command", "1", "0", "0", "1", "0"]
    assert "usage of 3 call(s) unknown" in result.stdout
    assert f"budget: needs ~{LOW_TIER:,} tokens, 30,000 left of 80,000 (command)" in result.stdout
    assert f"this run used 0, {LOW_TIER:,} still reserved\n" in result.stdout
    rows = ledger(env)
    assert [(r["phase"], r["tokens"], r["usage_known"], r["outcome"]) for r in rows] == [
        ("plan", 0, 0, "ok"), ("implement 1", 0, 0, "ok"), ("review 1", 0, 0, "ok")]
    warnings = [line for line in Path(rows[0]["log_path"]).read_text().splitlines()
                if line.startswith("----- nightshift: warning")]
    assert warnings == [f"----- nightshift: warning: {phase} via command: {problem}; its usage "
                        "counts as unknown, not as zero: the task's reservation stays charged"
                        for phase in ("plan", "implement 1", "review 1")]
    # The next run's allowance counts the kept reservation as used today.
    assert used_today(env) == LOW_TIER


def test_a_call_that_never_started_used_nothing(env: Env) -> None:
    """A prompt too long for the argv slot: no process ran, so zero is the truth; no
    warning, and the usage counts as known."""
    env.projects(["alpha"], tasks=LONG_TASK)
    result = env.doit("run")
    assert result.returncode == 1
    (row,) = ledger(env)
    assert (row["outcome"], row["usage_known"], row["tokens"]) == ("agent", 1, 0)
    assert "warning" not in Path(row["log_path"]).read_text()


FULL = json.dumps(USAGE)


@pytest.mark.parametrize(("stdout", "file_text", "text", "problem"), [
    (f"answer\nNIGHTSHIFT_USAGE {FULL}\n", "", "answer\n", None),
    (f"answer\n  NIGHTSHIFT_USAGE {FULL}  \n\n", "", "answer\n", None),
    (f"NIGHTSHIFT_USAGE {FULL}", "", "", None),
    (f"answer\nNIGHTSHIFT_USAGE\t{FULL}", "", "answer\n", None),
    ("answer\nNIGHTSHIFT_USAGE\n", "", "answer\n", "malformed usage report in the last "
     "NIGHTSHIFT_USAGE line: not JSON (Expecting value)"),
    ("", "", "", "no usage reported (neither $NIGHTSHIFT_USAGE_FILE nor a last NIGHTSHIFT_USAGE "
     "line)"),
    ("answer\n", FULL, "answer\n", None),
    # the file wins; a usage line is still taken out of the reply
    ("answer\nNIGHTSHIFT_USAGE {}\n", FULL, "answer\n", None),
    # only the last non-empty line is a report
    (f"NIGHTSHIFT_USAGE {FULL}\nanswer\n", "", f"NIGHTSHIFT_USAGE {FULL}\nanswer\n",
     "no usage reported (neither $NIGHTSHIFT_USAGE_FILE nor a last NIGHTSHIFT_USAGE line)"),
    ("answer\n", None, "answer\n",
     f"malformed usage report: $NIGHTSHIFT_USAGE_FILE was removed, replaced by something other "
     f"than a regular file, or holds more than {REPORT_BYTES:,} bytes"),
])
def test_report_sources(stdout: str, file_text: str | None, text: str,
                        problem: str | None) -> None:
    report = parse(stdout, file_text)
    assert (report.text, report.problem) == (text, problem)
    assert report.fields == ({} if problem else USAGE)


@pytest.mark.parametrize(("doc", "problem"), [
    ("[1, 2]", "a JSON object is expected, not list"),
    ("{", "not JSON (Expecting property name enclosed in double quotes)"),
    ('{"input_tokens": 1}', "missing output_tokens"),
    ("{}", "missing input_tokens and output_tokens"),
    ('{"input_tokens": 1, "output_tokens": 2, "prompt_tokens": 3, "x\\ny": 1}',
     'unknown key(s) "prompt_tokens", "x\\ny"; allowed: input_tokens, output_tokens, '
     "cache_read_tokens, cache_write_tokens, reasoning_tokens, cost_usd"),
    ('{"input_tokens": -1, "output_tokens": 2}', "input_tokens must be an integer from 0 to "
                                                 "1,000,000,000,000"),
    ('{"input_tokens": 1.5, "output_tokens": 2}', "input_tokens must be a non-negative integer, "
                                                  "not float"),
    ('{"input_tokens": true, "output_tokens": 2}', "input_tokens must be a non-negative integer, "
                                                   "not bool"),
    ('{"input_tokens": null, "output_tokens": 2}', "input_tokens must be a non-negative integer, "
                                                   "not NoneType"),
    ('{"input_tokens": 1, "output_tokens": 2, "cost_usd": NaN}', "cost_usd must be a number "
                                                                 "from 0 to 1,000,000,000,000"),
    ('{"input_tokens": 1, "output_tokens": 2, "cost_usd": Infinity}', "cost_usd must be a number "
                                                                      "from 0 to 1,000,000,000,000"),
    ('{"input_tokens": 1, "output_tokens": 2, "cost_usd": "1"}', "cost_usd must be a non-negative "
                                                                 "number, not str"),
    (f'{{"input_tokens": 1{"0" * 30}, "output_tokens": 2}}', "input_tokens must be an integer "
                                                              "from 0 to 1,000,000,000,000"),
    (f'{{"input_tokens": 1{"0" * 5000}, "output_tokens": 2}}',
     "not usable JSON (a huge number or deep nesting)"),
    ("[" * 100_000, "not usable JSON (a huge number or deep nesting)"),
])
def test_malformed_reports_say_what_is_wrong(doc: str, problem: str) -> None:
    report = parse("answer", doc)
    assert (report.fields, report.problem) == ({}, f"malformed usage report in "
                                                   f"$NIGHTSHIFT_USAGE_FILE: {problem}")


def test_optional_fields_default_to_zero_and_billable_tokens() -> None:
    reply = agents.parse_reply("command", 'NIGHTSHIFT_USAGE {"input_tokens": 7, "output_tokens": 3}', "")
    assert (reply.text, reply.usage_unknown) == ("", None)
    assert reply.usage == agents.Usage(input_tokens=7, output_tokens=3, tokens=10)
    reply = agents.parse_reply("command", "answer\n", FULL)
    assert reply.usage == agents.Usage(1000, 200, 5000, 300, 50, tokens=PER_CALL, cost_usd=0.25)
    assert agents.parse_reply("command", "answer\n", "").usage_unknown is not None


def test_read_refuses_what_the_agent_may_have_put_there(tmp_path: Path) -> None:
    good = tmp_path / "report.json"
    good.write_text(FULL)
    assert read(str(good)) == FULL
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes to it: a blocking open would hang
    link = tmp_path / "link"
    link.symlink_to(good)
    big = tmp_path / "big"
    big.write_bytes(b" " * (REPORT_BYTES + 1))
    exact = tmp_path / "exact"
    exact.write_bytes(b" " * REPORT_BYTES)
    assert [read(str(p)) for p in (fifo, link, big, tmp_path, tmp_path / "gone")] == [None] * 5
    assert read(str(exact)) == " " * REPORT_BYTES


def test_only_a_command_gets_the_usage_file() -> None:
    inherited = {"PATH": "/bin", usage_report.USAGE_ENV: "/stale"}
    assert agents.agent_env("command", inherited, "/u.json")[usage_report.USAGE_ENV] == "/u.json"
    assert usage_report.USAGE_ENV not in agents.agent_env("command", inherited)
    assert usage_report.USAGE_ENV not in agents.agent_env("claude", inherited, "/u.json")
