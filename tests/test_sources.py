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
# What `td list --format json` prints: a JSON array of td's Issue objects (marcus/td,
# internal/models: the fields tagged omitempty may be missing). `td list` leaves closed issues
# out unless asked (--all); the closed one checks that nightshift would skip it anyway.
TD_REQUIRED = {"id", "title", "status", "type", "priority", "points", "implementer_session",
               "creator_session", "reviewer_session", "created_at", "updated_at", "minor", "defer_count"}
TD_OPTIONAL = {"description", "labels", "parent_id", "acceptance", "sprint", "closed_at", "deleted_at",
               "created_branch", "defer_until", "due_date"}
TD_ISSUES = [
    {"id": "td-a1b2", "title": "Fix flaky login test", "description": "see test-flakiness",
     "status": "open", "type": "bug", "priority": "P1", "points": 0, "labels": ["test-flakiness"],
     "implementer_session": "", "creator_session": "ses_1", "reviewer_session": "",
     "created_at": "2026-11-20T09:00:00Z", "updated_at": "2026-11-20T09:00:00Z", "minor": False,
     "defer_count": 0},
    {"id": "td-c3d4", "title": "Tidy the lint-fix leftovers", "status": "in_progress", "type": "chore",
     "priority": "P3", "points": 1, "implementer_session": "ses_2", "creator_session": "ses_1",
     "reviewer_session": "", "created_at": "2026-11-21T09:00:00Z",
     "updated_at": "2026-11-22T09:00:00Z", "minor": True, "defer_count": 0},
    {"id": "td-e5f6", "title": "old", "description": "dead-code", "status": "closed", "type": "task",
     "priority": "P2", "points": 0, "implementer_session": "ses_2", "creator_session": "ses_1",
     "reviewer_session": "ses_3", "created_at": "2026-11-01T09:00:00Z",
     "updated_at": "2026-11-02T09:00:00Z", "closed_at": "2026-11-02T09:00:00Z", "minor": False,
     "defer_count": 0},
]
FAKE_GH = Path(__file__).with_name("fake_gh.py")


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


def test_github_issues_name_tasks_by_label_or_text(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the gh stand-in, which refuses flags and --json fields gh does not have."""
    gh_state = repo.parent / "gh-state.json"
    Path(f"{gh_state}.issues").write_text(json.dumps(GH_ISSUES))
    gh = repo.parent / "bin" / "gh"
    gh.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_GH} "$@"\n')
    gh.chmod(0o755)
    monkeypatch.setenv("GH_STATE", str(gh_state))
    found = gather([{"github_issues": True}], repo, CATALOG)
    assert found.warnings == ()
    assert json.loads(Path(f"{gh_state}.log").read_text()) == [
        "issue", "list", "--label", "nightshift", "--state", "open", "--json",
        "number,title,body,labels,state"]
    assert found.sourced == {"dead-code", "docs-backfill"}
    assert [i.origin for i in found.items] == ["GitHub issue #12", "GitHub issue #13"]
    assert found.items[0].text == "Remove unused helpers\nSeveral modules under src/ are never imported."


def test_the_td_stand_in_prints_tds_issue_shape() -> None:
    for issue in TD_ISSUES:
        assert TD_REQUIRED <= set(issue) <= TD_REQUIRED | TD_OPTIONAL, issue
        assert issue["status"] in {"open", "in_progress", "blocked", "in_review", "closed"}
        assert issue["type"] in {"bug", "feature", "task", "epic", "chore"}
        assert issue["priority"] in {"P0", "P1", "P2", "P3", "P4"}
        assert all(isinstance(label, str) for label in issue.get("labels", []))  # type: ignore[attr-defined]


def test_td_issues_name_tasks_skip_closed_ones_and_can_teach(repo: Path) -> None:
    args = fake_cli(repo.parent / "bin", "td", TD_ISSUES)
    found = gather([{"td": {"enabled": True, "teach_agent": True}}], repo, CATALOG)
    assert args.read_text().split() == ["list", "--format", "json"]
    assert found.sourced == {"test-flakiness", "lint-fix"}
    assert [(i.origin, i.text) for i in found.items] == [
        ("td task td-a1b2", "Fix flaky login test\nsee test-flakiness"),
        ("td task td-c3d4", "Tidy the lint-fix leftovers")]
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


def test_the_gh_stand_in_refuses_flags_and_fields_gh_does_not_have(tmp_path: Path) -> None:
    def gh(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(FAKE_GH), *args], cwd=tmp_path, capture_output=True,
                              text=True, env={"GH_STATE": str(tmp_path / "gh.json")})

    field = gh("pr", "list", "--state", "open", "--json", "number,nope")
    assert (field.returncode, field.stdout) == (1, "")
    assert field.stderr.startswith('Unknown JSON field: "nope"\nAvailable fields:\n  additions\n'
                                   '  assignees\n')
    assert "\n  headRefName\n" in field.stderr and field.stderr.endswith("\n  url\n")
    pr_only = gh("issue", "list", "--json", "number,headRefName")  # a PR field, not an issue's
    assert pr_only.returncode == 1 and pr_only.stderr.startswith('Unknown JSON field: "headRefName"\n')
    flag = gh("pr", "create", "--head", "b", "--fill-everything")
    assert (flag.returncode, flag.stderr) == (1, "unknown flag: --fill-everything\n\nUsage:  gh pr create "
                                                 "[flags]\n\n")
    short = gh("pr", "list", "-Z")
    assert (short.returncode, short.stderr.splitlines()[0]) == (1, "unknown shorthand flag: 'Z' in -Z")
    assert gh("pr", "list", "--json", "number,url").stdout == "[]\n"
