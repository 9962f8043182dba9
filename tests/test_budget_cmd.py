"""`python -m nightshift_tasks budget [--provider P] [--json]`: the table, the equations, and
one provider alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import Env


@pytest.fixture
def spent(env: Env) -> Env:
    """command spent 120,000 tokens today (its agent reports them); copilot nothing."""
    agent = env.tmp / "reporting-agent"
    agent.write_text(f'#!/bin/sh\n"{env.agent}" "$@" || exit\n'
                     'echo \'NIGHTSHIFT_USAGE {"input_tokens": 30000, "output_tokens": 10000}\'\n')
    agent.chmod(0o755)
    copilot = env.tmp / "copilot"
    copilot.write_text("#!/bin/sh\nexit 1\n")
    copilot.chmod(0o755)
    env.projects(["alpha"], budget={"weekly_tokens": 1_400_000, "per_provider": {"copilot": 700_000}})
    env.write_config({"providers": {"preference": ["command", "copilot"],
                                    "command": {"enabled": True, "argv": [str(agent), "{prompt}"]},
                                    "copilot": {"enabled": True, "binary": str(copilot)}}})
    assert env.doit("run").returncode == 0
    return env


def budget(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nightshift_tasks", "budget", *args,
                           f"config={env.config}"], cwd=env.tmp, env=env.environ(),
                          capture_output=True, text=True, timeout=60)


EQUATIONS = ["command: 200,000 daily x (1 - 60.0% used) x 75% - 10,000 reserve = 50,000",
             "copilot: 100,000 daily x (1 - 0.0% used) x 75% - 5,000 reserve = 70,000"]


def test_budget_shows_every_provider_and_how_its_allowance_is_computed(spent: Env) -> None:
    shown = budget(spent)
    assert (shown.returncode, shown.stderr) == (0, "")
    assert shown.stdout.splitlines() == [
        "budget mode: daily", "",
        "provider       weekly  from                           used today    used this week  "
        "read from            allowance    reserved",
        "----------  ---------  ---------------------------  ------------  ----------------  "
        "-----------------  -----------  ----------",
        "command     1,400,000  budget.weekly_tokens              120,000           120,000  "
        "nightshift ledger       50,000           0",
        "copilot       700,000  budget.per_provider.copilot             0                 0  "
        "nightshift ledger       70,000           0",
        "", *EQUATIONS]


def test_budget_provider_shows_that_provider_alone(spent: Env) -> None:
    shown = budget(spent, "--provider", "copilot")
    assert (shown.returncode, shown.stderr) == (0, "")
    lines = shown.stdout.splitlines()
    assert lines[2].split() == ["provider", "weekly", "from", "used", "today", "used", "this", "week",
                                "read", "from", "allowance", "reserved"]
    assert lines[4:] == ["copilot      700,000  budget.per_provider.copilot             0"
                         "                 0  nightshift ledger       70,000           0", "", EQUATIONS[1]]
    (row,) = json.loads(budget(spent, "--provider", "command", "--json").stdout)
    assert row == {"provider": "command", "weekly": 1_400_000, "weekly_source": "budget.weekly_tokens",
                   "used_today": 120_000, "used_week": 120_000, "reader": "nightshift ledger",
                   "used_percent": 60.0, "allowance": 50_000, "equation": EQUATIONS[0][len("command: "):],
                   "reserved": 0, "skipped_lines": 0, "requests_this_month": 3}
    bad = budget(spent, "--provider", "nope")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines()[-1] == (
        "nightshift-tasks budget: error: argument --provider: invalid choice: 'nope' (choose from "
        "'claude', 'codex', 'copilot', 'gemini', 'opencode', 'command')")
