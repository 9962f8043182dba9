"""Issue sources with stand-in `gh` and `td` CLIs that print the real JSON shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nightshift_tasks.catalog import build_catalog
from nightshift_tasks.sources import TD_TEACHING, gather
from tests.conftest import Env, require_program

CATALOG = build_catalog([])

GH_ISSUES = [
    {"body": "Several modules under src/ are never imported.", "labels": [
        {"id": "LA_1", "name": "nightshift", "description": "", "color": "ededed"},
        {"id": "LA_2", "name": "dead-code", "description": "", "color": "ff0000"}],
     "number": 12, "state": "OPEN", "title": "Remove unused helpers"},
    {"body": "", "labels": [{"id": "LA_1", "name": "nightshift", "description": "", "color": "x"}],
     "number": 13, "state": "OPEN", "title": "The docs-backfill task should cover cli.py"},
    {"body": "nothing to match", "labels": [], "number": 14, "state": "OPEN", "title": "Misc"},
]
TD_TASKS = {"tasks": [
    {"id": "td-a1", "subject": "Fix flaky login test", "description": "see test-flakiness",
     "status": "open", "priority": "high", "owner": "", "labels": ["test-flakiness"]},
    {"id": "td-a2", "subject": "old", "description": "lint-fix", "status": "done",
     "priority": "low", "owner": "me", "labels": []},
]}


def fake_cli(bin_dir: Path, name: str, output: object, exit_code: int = 0) -> Path:
    record = bin_dir / f"{name}.args"
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\necho \"$@\" > {record}\ncat <<'EOF'\n{json.dumps(output)}\nEOF\n"
                      f"exit {exit_code}\n")
    script.chmod(0o755)
    return record


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    require_program("git")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    path = tmp_path / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    subprocess.run(["git", "remote", "add", "origin", "git@github.com:me/repo.git"], cwd=path, check=True)
    return path


def test_github_issues_name_tasks_by_label_or_text(repo: Path) -> None:
    args = fake_cli(repo.parent / "bin", "gh", GH_ISSUES)
    found = gather([{"github_issues": True}], repo, CATALOG)
    assert args.read_text().split() == ["issue", "list", "--label", "nightshift", "--state", "open",
                                        "--json", "number,title,body,labels,state"]
    assert found.sourced == {"dead-code", "docs-backfill"}
    assert [i.origin for i in found.items] == ["GitHub issue #12", "GitHub issue #13"]
    assert found.items[0].text == "Remove unused helpers\nSeveral modules under src/ are never imported."
    assert found.warnings == ()


def test_td_tasks_skip_closed_ones_and_can_teach(repo: Path) -> None:
    fake_cli(repo.parent / "bin", "td", TD_TASKS)
    found = gather([{"td": {"enabled": True, "teach_agent": True}}], repo, CATALOG)
    assert found.sourced == {"test-flakiness"}
    assert found.notes == (TD_TEACHING,)


def test_file_source(repo: Path) -> None:
    (repo / "MAINTENANCE.md").write_text("please run lint-fix\n\nand nothing else\n")
    found = gather([{"file": "MAINTENANCE.md"}], repo, CATALOG)
    assert [(i.origin, i.text) for i in found.items] == [("MAINTENANCE.md:1", "please run lint-fix")]


def test_missing_or_failing_cli_is_a_warning(repo: Path) -> None:
    found = gather([{"github_issues": True}, {"td": {"enabled": True}}], repo, CATALOG)
    assert found.warnings == tuple(
        f"task source {kind}: `{program}` is not installed (not on PATH; `nightshift-tasks doctor` "
        "explains); skipped" for kind, program in (("github_issues", "gh"), ("td", "td")))
    fake_cli(repo.parent / "bin", "gh", "HTTP 401: Bad credentials", exit_code=1)
    found = gather([{"github_issues": True}], repo, CATALOG)
    assert found.warnings == ('task source github_issues: `gh issue list` exited 1: '
                              '"HTTP 401: Bad credentials"; skipped',)
    subprocess.run(["git", "remote", "set-url", "origin", "https://gitlab.com/me/r"], cwd=repo, check=True)
    assert gather([{"github_issues": True}], repo, CATALOG).warnings == (
        "task source github_issues: no github.com `origin` remote; skipped",)


def test_a_missing_gh_is_one_warning_per_command_and_doctor_explains(env: Env) -> None:
    env.projects(["alpha", "beta", "gamma"], integrations={"task_sources": [{"github_issues": True}]})
    shell = {"PATH": "/usr/bin:/bin", "HOME": str(env.tmp / "user")}  # no gh anywhere
    warning = ("nightshift: warning: task source github_issues: `gh` is not installed (not on PATH; "
               "`nightshift-tasks doctor` explains); skipped (for 3 projects: alpha, beta, gamma)")
    for command in (["list", "sources=1"], ["run", "-n", "3"]):
        result = env.doit(*command, **shell)
        assert result.returncode == 0, result.stderr
        assert [line for line in result.stderr.splitlines() if "warning" in line] == [warning]
    # A plain `list` asks no source, so it has nothing to warn about.
    assert "warning" not in env.doit("list", **shell).stderr
    doctor = subprocess.run([sys.executable, "-m", "nightshift_tasks", "doctor", f"config={env.config}"],
                            cwd=env.tmp, env=env.environ(**shell), capture_output=True, text=True,
                            timeout=120)
    assert ("[WARN] task source github_issues: `gh` is not installed (not on PATH): open GitHub issues "
            "labelled `nightshift` are not read; install gh (https://cli.github.com) and run `gh auth "
            "login`, or remove `github_issues` from integrations.task_sources") in doctor.stdout.splitlines()
