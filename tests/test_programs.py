"""The programs the tests need beyond Python: a missing one fails its test with one line saying
how to install it, and the README, .ci/run and tests/programs.txt say the same thing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import INSTALL, REQUIRE_ALL, ROOT

# Run by a pytest of its own, with a PATH that has only a `node` in it.
TINY = '''
import sys

from tests.conftest import require_npm_cli, require_program


def test_missing():
    require_program("crontab")


def test_present():
    assert require_program("node") == NODE


def test_elsewhere(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")  # as if on a Mac
    require_program("git", only_on="linux")


def test_unlisted():
    require_program("psql")


def test_not_pinned():
    require_npm_cli("aider")
'''


def run_tiny(tmp_path: Path, **extra: str) -> tuple[int, list[str]]:
    """Exit status and short test summary lines of pytest on TINY, crontab and git missing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "node").write_text("#!/bin/sh\n")
    (bin_dir / "node").chmod(0o755)
    (tmp_path / "test_tiny.py").write_text(TINY.replace("NODE", repr(str(bin_dir / "node"))))
    env = {"PATH": str(bin_dir), "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
           "COLUMNS": "400", **extra}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider",
                           "test_tiny.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert "Traceback" not in done.stdout and "FileNotFoundError" not in done.stdout, done.stdout
    summary = done.stdout.split(" short test summary info ", 1)[1].splitlines()[1:-1]
    return done.returncode, summary


MISSING = f"FAILED test_tiny.py::test_missing - Failed: needs `crontab`: install it with: {INSTALL}"
UNLISTED = ("FAILED test_tiny.py::test_unlisted - Failed: require_program('psql'): add "
            "`psql` and its Debian package to tests/programs.txt and the README's install line")
NOT_PINNED = (f"FAILED test_tiny.py::test_not_pinned - Failed: needs the pinned `aider` CLI "
              f"({ROOT}/tests/npm/node_modules/.bin/aider is missing): run `npm install --prefix tests/npm`")
ELSEWHERE = "unavailable on this platform: `git` exists only on linux, this is darwin"


def test_a_missing_program_fails_in_one_line_and_one_the_platform_lacks_is_skipped(tmp_path: Path) -> None:
    code, (skipped, *failed) = run_tiny(tmp_path)
    assert (code, failed) == (1, [MISSING, UNLISTED, NOT_PINNED])
    assert re.fullmatch(rf"SKIPPED \[1\] \S*tests/conftest\.py:\d+: {re.escape(ELSEWHERE)}", skipped), skipped


def test_ci_fails_what_would_be_skipped(tmp_path: Path) -> None:
    assert run_tiny(tmp_path, **{REQUIRE_ALL: "1"}) == (1, [
        MISSING, f"FAILED test_tiny.py::test_elsewhere - Failed: {ELSEWHERE}; {REQUIRE_ALL}=1 allows no "
                 "such skip", UNLISTED, NOT_PINNED])


def test_the_readme_lists_what_ci_installs_and_ci_runs_its_command() -> None:
    section = (ROOT / "README.md").read_text().split("## Run the tests\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line for line in block if "apt-get" in line] == [INSTALL] == [block[0]]
    assert INSTALL == "sudo apt-get install -y cron git nodejs npm systemd"
    assert "`crontab`" in section and "`systemd-analyze`" in section and f"`{REQUIRE_ALL}=1`" in section
    ci = (ROOT / ".ci" / "run").read_text()
    assert "done < tests/programs.txt" in ci
    assert ci.splitlines()[-2:] == [f"export {REQUIRE_ALL}=1", block[-1]]
    assert block[-1] == "python3 -m pytest -n auto"

