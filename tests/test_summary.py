"""The run summary as a user sees it: the table fits the terminal (80 columns off one), every
failed, abandoned or interrupted task is listed in full with its log, status words are
coloured only on a terminal without NO_COLOR, the live line counts what the table counts, and
an interrupted run reports what its workers recorded once they stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.conftest import DODO, STATUSES, Env, on_terminal, summary_table

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
LONG = "a-project-whose-directory-name-is-rather-long"


def table_lines(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("project "))
    end = lines.index("", start)
    return lines[start:end]


def ledger(env: Env) -> dict[str, sqlite3.Row]:
    conn = sqlite3.connect(env.home / "state.db")
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM attempts WHERE status != 'planned'").fetchall()
    finally:
        conn.close()
    return {f"{Path(r['project_path']).name}:{r['task']}": r for r in rows}


def problem_lines(stdout: str) -> list[str]:
    return stdout.split("\nProblems:\n")[1].split("\n\n")[0].splitlines()


def test_off_a_terminal_the_table_fits_80_columns_and_problems_are_listed_in_full(env: Env) -> None:
    alpha, beta, _, _ = env.projects(["alpha", "beta", "gamma", LONG])
    (alpha / ".agent-fail-lint-fix").write_text("")
    (beta / ".agent-reject").write_text("")
    env.write_config({"projects": [*yaml_projects(env), {"path": str(env.tmp / "gone")}]})
    result = env.doit("run", "-n", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "\x1b[" not in result.stdout
    lines = table_lines(result.stdout)
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    rows = summary_table(result.stdout)
    assert {k: rows["TOTAL"][k] for k in STATUSES} == {
        "completed": "2", "failed": "1", "abandoned": "1", "skipped": "0", "interrupted": "0"}
    assert rows["gamma"]["completed"] == "1"  # a name that fits is never cut
    (cut,) = [name for name in rows if name.endswith("…")]  # the long one, shown in full above
    assert LONG.startswith(cut[:-1]) and f"   {LONG}:lint-fix completed in " in result.stdout
    attempts = ledger(env)
    failed, abandoned = attempts["alpha:lint-fix"], attempts["beta:lint-fix"]
    assert len(failed["error"]) > 80  # longer than any table cell could hold
    assert problem_lines(result.stdout) == [
        f"  alpha:lint-fix: failed: {failed['error']}", f"    log: {failed['log_path']}",
        f"  beta:lint-fix: abandoned: {abandoned['error']}", f"    log: {abandoned['log_path']}"]
    assert Path(failed["log_path"]).is_file() and Path(abandoned["log_path"]).is_file()


def yaml_projects(env: Env) -> list[dict[str, str]]:
    return [{"path": str(p)} for p in sorted((env.tmp / "repos").iterdir())]


@pytest.mark.parametrize("no_color", ["", "1"], ids=["colour", "NO_COLOR"])
def test_on_a_terminal_the_table_fits_its_width_and_the_live_line_agrees(env: Env, no_color: str) -> None:
    alpha, _ = env.projects(["alpha", "beta"], schedule={"max_tasks": 2})
    (alpha / ".agent-fail-docs-backfill").write_text("")
    extra = {"NO_COLOR": no_color} if no_color else {}
    code, shown = on_terminal(env, 100, "-n", "2", **extra)
    assert code == 1, shown
    plain = ANSI.sub("", shown)
    lines = table_lines(plain)
    assert max(len(line) for line in lines) <= 100, "\n".join(lines)
    total = summary_table(plain)["TOTAL"]
    assert {k: total[k] for k in STATUSES} == {
        "completed": "3", "failed": "1", "abandoned": "0", "skipped": "0", "interrupted": "0"}
    *_, last = re.findall(r"(\d+)/(\d+) done: ([a-z0-9, ]+)", plain)  # the counts once all ended
    counted = dict(reversed(part.split()) for part in last[2].split(", "))
    assert (last[0], last[1]) == ("4", "4")
    assert counted == {k: v for k, v in total.items() if k in STATUSES and v != "0"}
    coloured = "\x1b[32mcompleted\x1b[0m" in shown and "\x1b[31mfailed\x1b[0m" in shown
    assert coloured == (not no_color)
    if no_color:
        assert not re.search(r"\x1b\[3\dm", shown)


def wait_for(condition: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)  # polling for a file or a ledger row, not a timing guess


@pytest.mark.parametrize("worker", ["stops", "killed"])
def test_an_interrupted_run_reports_what_its_workers_recorded(env: Env, worker: str) -> None:
    """SIGTERM to doit while alpha's agent hangs and beta works. "killed": alpha's worker is
    SIGKILLed first, so it never records its end; the report must not say `running`."""
    alpha, _ = env.projects(["alpha", "beta"], schedule={"max_tasks": 2})
    (alpha / ".agent-hang").write_text("")
    proc = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), "run", "-n", "2",
                             f"config={env.config}"], cwd=env.tmp, env=env.environ(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    shown = []  # until the reporter has beta's last task: its ledger row comes before that
    for line in proc.stdout:
        shown.append(line)
        if line.startswith("   beta:docs-backfill completed"):
            break
    wait_for(Path(f"{env.record}.child").exists)
    if worker == "killed":
        os.kill(ledger(env)["alpha:lint-fix"]["pid"], signal.SIGKILL)
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=60)
    out = "".join(shown) + rest
    assert proc.returncode == 130, out + err
    interrupted = ledger(env)["alpha:lint-fix"]
    assert interrupted["status"] == "interrupted"
    (record_file,) = (env.home / "reports").glob("run-*.json")
    record = json.loads(record_file.read_text())
    assert sorted((t["project"], t["task_type"], t["status"]) for t in record["tasks"]) == [
        ("alpha", "lint-fix", "interrupted"), ("beta", "docs-backfill", "completed"),
        ("beta", "lint-fix", "completed")]
    markdown = record_file.with_suffix(".md").read_text()
    assert "- Tasks: 2 completed, 1 interrupted\n" in markdown
    assert "## Interrupted\n\n- alpha: lint-fix — " in markdown
    rows = summary_table(out)
    assert (rows["alpha"]["interrupted"], rows["TOTAL"]["interrupted"], rows["TOTAL"]["completed"]) \
        == ("1", "1", "2")
    # The stand-in agent reports no usage: its reservation is kept for that, not "reserved"
    # by a task still running.
    assert "still reserved" not in out
    assert problem_lines(out) == [f"  alpha:lint-fix: interrupted: {interrupted['error']}",
                                  f"    log: {interrupted['log_path']}"]


def test_a_run_with_nothing_to_do_says_so_in_its_report(env: Env) -> None:
    env.projects(["alpha"])
    assert env.doit("run").returncode == 0
    again = env.doit("run")
    assert again.returncode == 0
    newest = max((env.home / "reports").glob("run-*.md"))
    assert "- Tasks: none\n" in newest.read_text()


def test_morning_summary_off_writes_only_the_run_reports(env: Env) -> None:
    env.projects(["alpha"], reporting={"morning_summary": False})
    assert env.doit("run").returncode == 0
    assert [p.suffix for p in sorted((env.home / "reports").iterdir())] == [".json", ".md"]


def per_call_lines(stdout: str) -> list[str]:
    return [line.split(" (")[0] for line in stdout.splitlines()
            if re.match(r"   alpha:lint-fix [a-z]+( \d+)? via command \(exit 0, [0-9.]+s\)$", line)]


CALLS = [f"   alpha:lint-fix {phase} via command" for phase in ("plan", "implement 1", "review 1")]


def test_logging_level_changes_the_task_log_and_the_terminal(env: Env) -> None:
    env.projects(["alpha"])
    quiet = env.doit("run")
    assert quiet.returncode == 0 and per_call_lines(quiet.stdout) == []
    assert ".  alpha:lint-fix" in quiet.stdout
    loud = env.doit("run", "-v", "2", "-a", "alpha")  # doit's -v 2 shows each agent call
    assert loud.returncode == 0 and per_call_lines(loud.stdout) == CALLS
    env.write_config({"logging": {"level": "debug"}})
    debug = env.doit("run", "-a", "alpha")
    assert debug.returncode == 0 and per_call_lines(debug.stdout) == CALLS
    log = Path(ledger(env)["alpha:lint-fix"]["log_path"]).read_text()
    assert "----- nightshift: plan prompt:\n# nightshift: plan phase" in log
    env.write_config({"logging": {"level": "warn"}})
    warn = env.doit("run", "-a", "alpha")
    assert warn.returncode == 0 and summary_table(warn.stdout)["alpha"]["completed"] == "1"
    assert ".  alpha:lint-fix" not in warn.stdout and "completed in" not in warn.stdout
    log = Path(ledger(env)["alpha:lint-fix"]["log_path"]).read_text()
    assert "===== plan via command (exit 0, " in log and "----- stdout -----" not in log


def test_a_run_removes_the_task_logs_past_logging_retention_days(env: Env) -> None:
    env.projects(["alpha"], logging={"retention_days": 2})
    logs = env.home / "logs"
    today = date.today()
    for days in (2, 3):
        day = logs / str(today - timedelta(days=days))
        day.mkdir(parents=True)
        (day / "alpha--lint-fix--old.log").write_text("old\n")
    (logs / "cron.log").write_text("kept\n")
    result = env.doit("run")
    assert result.returncode == 0, result.stdout + result.stderr
    old = logs / str(today - timedelta(days=3))
    assert f"nightshift: removed logs older than 2 days: {old}\n" in result.stdout
    assert sorted(p.name for p in logs.iterdir()) == [
        str(today - timedelta(days=2)), str(today), "cron.log"]
