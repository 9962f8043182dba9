from __future__ import annotations

import os
import shlex
import subprocess
import sys

from tests.conftest import Env, require_program, summary_table


def test_demo_runs_offline_and_prints_the_table(env: Env) -> None:
    require_program("git")  # the demo makes its sample repositories with git
    result = subprocess.run([sys.executable, "-m", "nightshift_tasks", "demo"], env=env.environ(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    total = summary_table(result.stdout)["TOTAL"]
    assert [total[k] for k in ("completed", "failed", "abandoned", "skipped", "tokens")] == [
        "12", "0", "0", "0", "223086"]
    # The demo agent reports its usage: the budget header, then the budget view afterwards.
    assert ("budget command: 2,857,142 daily x (1 - 0.0% used) x 75% - 142,857 reserve = "
            "1,999,999; this run used 223,086") in lines
    assert "command: 2,857,142 daily x (1 - 7.8% used) x 75% - 142,857 reserve = 1,832,684" in lines
    (view,) = [line.split() for line in lines if line.startswith("command ")]
    assert view[3:5] == ["223,086", "223,086"]  # used today, used this week
    reports = env.home / "demo/home/reports"
    (report,) = (reports / "billing-api").glob("tech-debt-classify-*.md")
    assert report.read_text().splitlines()[2] == "2 marker(s) found."
    assert "| FIXME | db.py | 1 | connection is never closed |" in report.read_text()
    (topology,) = (reports / "web-frontend").glob("repo-topology-*.md")
    assert "- src/big.js: 260 lines" in topology.read_text()
    # The sample repositories themselves are untouched: reports live in NIGHTSHIFT_HOME.
    assert not (env.home / "demo/repos/billing-api/.nightshift").exists()

    # The printed line runs the demo again, in the demo's own home: never the user's state.
    line = next(x for x in lines if x.startswith("running: ")).removeprefix("running: ")
    assignment, *cmd = shlex.split(line)
    assert assignment == f"NIGHTSHIFT_HOME={env.home / 'demo/home'}"
    assert cmd == [sys.executable, "-m", "nightshift_tasks", "run", "-a", "-n", "5",
                   f"config={env.home / 'demo/nightshift.yaml'}"]
    budget = next(x for x in lines if x.startswith("the budget afterwards: "))
    assert shlex.split(budget.removeprefix("the budget afterwards: ")) == [
        assignment, sys.executable, "-m", "nightshift_tasks", "budget", cmd[-1]]
    name, value = assignment.split("=", 1)
    again = subprocess.run(cmd, env={**env.environ(), name: value}, capture_output=True, text=True,
                           timeout=120, cwd=env.tmp)
    assert again.returncode == 0, again.stdout + again.stderr
    total = summary_table(again.stdout)["TOTAL"]
    assert [total[k] for k in ("completed", "failed", "abandoned", "skipped")] == ["12", "0", "0", "0"]
    assert sorted(os.listdir(env.home)) == ["demo"]


def test_demo_help_changes_nothing(env: Env) -> None:
    (env.home / "demo").mkdir(parents=True)
    (env.home / "demo" / "keep").write_text("x")
    result = subprocess.run([sys.executable, "-m", "nightshift_tasks", "demo", "--help"],
                            env=env.environ(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("usage: nightshift-tasks demo")
    assert os.listdir(env.home / "demo") == ["keep"]
