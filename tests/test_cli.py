"""The front door: `python -m nightshift_tasks` (what the `nightshift-tasks` script runs) with
no arguments, help, version, every command's --help, and output into a closed pipe."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from nightshift_tasks import __version__
from tests.conftest import ROOT, Env

OURS = ["run", "list", "info", "demo", "init", "tasks", "budget", "status", "report", "doctor", "cron"]


def ns(env: Env, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nightshift_tasks", *args], cwd=env.tmp,
                          env=env.environ(**extra), capture_output=True, text=True, timeout=120)


def test_no_arguments_prints_help_and_runs_nothing(env: Env) -> None:
    env.projects(["alpha"])
    result = ns(env, NIGHTSHIFT_CONFIG=str(env.config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: nightshift-tasks <command>")
    assert result.stdout == ns(env, "--help").stdout
    assert not env.record.exists() and not env.home.exists()


def test_help_lists_our_commands_one_line_each_then_doits(env: Env) -> None:
    outputs = {flag: ns(env, flag) for flag in ("--help", "-h", "help")}
    assert {r.returncode for r in outputs.values()} == {0}
    assert len({r.stdout for r in outputs.values()}) == 1
    lines = outputs["--help"].stdout.splitlines()
    assert len(lines) <= 40
    ours = lines.index("commands:")
    doits = lines.index("doit's commands, on the same tasks (https://pydoit.org):")
    listed = [line.split()[0] for line in lines[ours + 1:doits] if line.strip()]
    assert sorted(listed) == sorted(OURS)
    assert [line.split()[0] for line in lines[doits + 1:] if line.startswith("  ") and
            not line.startswith("   ")][:3] == ["clean", "forget", "ignore"]
    assert "-h" not in outputs["-h"].stderr and "CmdOption" not in outputs["-h"].stdout


def test_version_is_ours_then_doits_and_pythons(env: Env) -> None:
    result = ns(env, "--version")
    assert result.stdout.splitlines() == [f"nightshift-tasks {__version__}", "doit 0.37.0",
                                          f"Python {platform.python_version()}"]


@pytest.mark.parametrize("name", [*OURS, "clean", "forget"])
def test_every_command_help_works_and_touches_nothing(env: Env, name: str) -> None:
    for args in ([name, "--help"], [name, "-h"], ["help", name]):
        result = ns(env, *args)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith((f"usage: nightshift-tasks {name}", "PURPOSE")), result.stdout
        assert "Traceback" not in result.stderr
    if name in ("run", "list", "info", "clean", "forget"):  # doit's help, under our name
        assert f"nightshift-tasks {name}" in result.stdout and "__main__" not in result.stdout
    # No config exists, yet nothing complained; and nothing was written (demo recreates its
    # directory, init writes a config, run would run).
    assert not env.home.exists() and not (env.tmp / "xdg").exists()


def test_a_command_is_required_and_unknown_ones_are_named(env: Env) -> None:
    env.projects(["alpha"])
    option = ns(env, "-n", "3", f"config={env.config}")
    assert option.returncode == 2
    assert option.stderr.startswith("nightshift-tasks: -n: the command comes first, e.g. "
                                    f"`nightshift-tasks run -n 3 config={env.config}`")
    typo = ns(env, "lst", f"config={env.config}")
    assert typo.returncode == 2
    assert "unknown command 'lst': did you mean `nightshift-tasks list`?" in typo.stderr
    project = ns(env, "alpha", f"config={env.config}")
    assert "to run one project: `nightshift-tasks run alpha`" in project.stderr
    assert not env.record.exists()


@pytest.mark.parametrize("args", [["tasks", "list", "--json"], ["list", "--all"]])
def test_a_closed_pipe_ends_quietly(env: Env, args: list[str]) -> None:
    """`... | head`: the reader is gone before we write; no traceback, no "Exception ignored"."""
    env.projects(["alpha"])
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "nightshift_tasks", *args, f"config={env.config}"],
                                cwd=env.tmp, env=env.environ(), stdout=write_end, stderr=subprocess.PIPE,
                                text=True, timeout=60)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (0, "")


def test_report_before_any_run_says_so(env: Env) -> None:
    result = ns(env, "report")
    assert result.returncode == 0
    assert result.stdout == f"no runs recorded yet (each run writes its report to {env.home / 'reports'})\n"
    dated = ns(env, "report", "--date", "2026-11-28")
    assert dated.returncode == 1
    assert dated.stderr == f"error: no report at {env.home / 'reports' / 'summary-2026-11-28.md'}\n"


def test_readme_first_screen_shows_init_list_run_and_cron_in_order() -> None:
    screen = (ROOT / "README.md").read_text().splitlines()[:40]
    wanted = ["nightshift-tasks init", "nightshift-tasks list", "nightshift-tasks run -n",
              "nightshift-tasks cron install"]
    found = [next(i for i, line in enumerate(screen) if line.lstrip().startswith(w)) for w in wanted]
    assert found == sorted(found)


def test_python_m_list_shows_the_plan_as_doit_list_does(env: Env) -> None:
    env.projects(["alpha", "beta"])
    env.write_config({"projects": [{"path": str(env.tmp / "repos" / "alpha")},
                                   {"path": str(env.tmp / "missing")}]})
    elsewhere = env.tmp / "elsewhere"
    elsewhere.mkdir()
    listed = subprocess.run([sys.executable, "-m", "nightshift_tasks", "list", f"config={env.config}"],
                            cwd=elsewhere, env=env.environ(), capture_output=True, text=True, timeout=120)
    assert (listed.returncode, listed.stderr) == (0, "")
    assert listed.stdout == ("alpha     lint-fix via command\n"
                             f"missing   skipped: path does not exist: {env.tmp / 'missing'}\n")
    assert listed.stdout == env.doit("list").stdout
    assert not env.record.exists() and not list(elsewhere.iterdir())
