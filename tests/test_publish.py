"""Worktrees and publishing with real git: a bare repository in a temp dir is `origin` and
pushes really happen; PR operations go through the `gh` stand-in in tests/fake_gh.py."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from nightshift_tasks import state
from nightshift_tasks.db import Conn, host_id
from nightshift_tasks.loop import LoopResult
from nightshift_tasks.publish import (
    CREDIT,
    MAX_REPORT_BYTES,
    PublishError,
    _take_slot,
    commit_message,
    gh,
    pr_body,
    preflight,
    save_report,
)
from nightshift_tasks.spec import ProjectSpec, PublishSettings, RunSpec, TaskSpec
from tests.conftest import Env, require_program, summary_rows

FAKE_GH = Path(__file__).with_name("fake_gh.py")


def git(cwd: Path, *args: str) -> str:
    require_program("git")
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
                          cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@dataclass
class World:
    env: Env
    origin: Path
    repo: Path
    bin: Path
    gh_state: Path

    def run(self, *args: str, gh_user: str = "alice") -> subprocess.CompletedProcess[str]:
        return self.env.doit("run", *args, PATH=f"{self.bin}:{os.environ['PATH']}",
                             GH_STATE=str(self.gh_state), GH_USER=gh_user)

    def prs(self) -> list[dict[str, object]]:
        return json.loads(self.gh_state.read_text()) if self.gh_state.exists() else []

    def config(self, **publish: object) -> None:
        self.env.write_config({"projects": [{"path": str(self.repo)}],
                               "tasks": {"enabled": ["lint-fix"]}, "publish": publish})


@pytest.fixture
def world(env: Env) -> World:
    origin = env.tmp / "remotes" / "alice" / "alpha.git"
    origin.mkdir(parents=True)
    git(origin, "init", "-q", "--bare", "-b", "main")
    seed = env.tmp / "seed"
    git(env.tmp, "clone", "-q", str(origin), str(seed))
    (seed / "README.md").write_text("# alpha\n")
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "init")
    git(seed, "push", "-q", "origin", "HEAD:main")
    repo = env.tmp / "repos" / "alpha"
    git(env.tmp, "clone", "-q", str(origin), str(repo))
    bin_dir = env.tmp / "bin"
    bin_dir.mkdir()
    shutil.copy(FAKE_GH, bin_dir / "gh")
    (bin_dir / "gh").chmod(0o755)
    (repo / ".agent-edit").write_text("")  # untracked: the agent edits files in its worktree
    found = World(env, origin, repo, bin_dir, env.tmp / "gh-state.json")
    found.config()
    return found


def snapshot(repo: Path) -> dict[str, str]:
    """Everything a user could notice: status, HEAD, stash, index bytes, every file's bytes."""
    files = {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(repo.rglob("*")) if p.is_file() and ".git" not in p.parts}
    return {"status": git(repo, "status", "--porcelain=v2", "--branch", "-uall"),
            "head": git(repo, "rev-parse", "HEAD"), "stash": git(repo, "stash", "list"),
            "index": hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest(),
            "files": json.dumps(files)}


def test_a_dirty_user_checkout_is_untouched_and_the_branch_gets_the_commit(world: World) -> None:
    repo = world.repo
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "README.md").write_text("# alpha, edited by the user\n")
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    (repo / "scratch.txt").write_text("untracked\n")
    before = snapshot(repo)
    result = world.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert snapshot(repo) == before
    log = git(repo, "log", "-1", "--format=%B", "nightshift/lint-fix")
    assert "Nightshift-Task: lint-fix" in log and "Nightshift-Run: " in log
    assert git(repo, "show", "nightshift/lint-fix:edited-by-agent.txt") == "edit by lint-fix"
    # Branched from origin's default branch, not from the user's feature branch.
    assert git(repo, "rev-parse", "nightshift/lint-fix~1") == git(repo, "rev-parse", "origin/main")
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert summary_rows(result.stdout)["alpha"][:2] == ["command", "1"]
    assert "alpha:lint-fix: committed " in result.stdout


@pytest.mark.parametrize("state", ["detached", "mid-rebase"])
def test_a_detached_or_mid_rebase_checkout_is_untouched(world: World, state: str) -> None:
    repo = world.repo
    if state == "detached":
        git(repo, "checkout", "-q", "--detach", "HEAD")
    else:
        (repo / "README.md").write_text("# ours\n")
        git(repo, "commit", "-q", "-am", "ours")
        git(repo, "checkout", "-q", "-b", "theirs", "origin/main")
        (repo / "README.md").write_text("# theirs\n")
        git(repo, "commit", "-q", "-am", "theirs")
        rebase = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@x", "rebase", "main"],
                                cwd=repo, capture_output=True, text=True)
        assert rebase.returncode != 0 and (repo / ".git" / "rebase-merge").is_dir()
    before = snapshot(repo)
    result = world.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert snapshot(repo) == before
    assert git(repo, "show", "nightshift/lint-fix:edited-by-agent.txt") == "edit by lint-fix"


def test_three_runs_leave_one_branch_and_one_updated_pr(world: World) -> None:
    world.config(mode="pr")
    for night in range(3):
        result = world.run("-a")  # -a: the same day stands in for the next night
        assert result.returncode == 0, result.stdout + result.stderr
        assert "PR created" in result.stdout if night == 0 else "PR updated" in result.stdout
    (pr,) = world.prs()
    assert (pr["state"], pr["headRefName"], pr["baseRefName"]) == ("OPEN", "nightshift/lint-fix", "main")
    reports = sorted((world.env.home / "reports").glob("run-*.json"))
    assert [t["output_ref"] for r in reports for t in json.loads(r.read_text())["tasks"]] == [pr["url"]] * 3
    assert "<!-- nightshift:metadata" in str(pr["body"]) and "task-type: lint-fix" in str(pr["body"])
    assert "**Measured usage:** 0 tokens" in str(pr["body"])
    heads = git(world.origin, "for-each-ref", "--format=%(refname)", "refs/heads/")
    assert heads.splitlines() == ["refs/heads/main", "refs/heads/nightshift/lint-fix"]
    # One commit on top of main: each night replaced the last one.
    assert git(world.origin, "rev-list", "--count", "main..nightshift/lint-fix") == "1"


def test_a_closed_pr_starts_over_with_a_new_one(world: World) -> None:
    world.config(mode="pr")
    assert world.run().returncode == 0
    prs = world.prs()
    prs[0]["state"] = "MERGED"
    world.gh_state.write_text(json.dumps(prs))
    assert world.run("-a").returncode == 0
    assert [p["state"] for p in world.prs()] == ["MERGED", "OPEN"]


def test_failed_review_publishes_nothing(world: World) -> None:
    world.config(mode="pr")
    (world.repo / ".agent-reject").write_text("")
    result = world.run()
    assert result.returncode == 1
    assert world.prs() == []
    assert git(world.origin, "for-each-ref", "--format=%(refname)", "refs/heads/") == "refs/heads/main"
    assert git(world.repo, "branch", "--list", "nightshift/*") == ""


def test_no_diff_means_no_commit(world: World) -> None:
    (world.repo / ".agent-edit").unlink()
    result = world.run()
    assert result.returncode == 0
    assert "lint-fix: no changes" in result.stdout
    assert git(world.repo, "branch", "--list", "nightshift/*") == ""
    (report,) = (world.env.home / "reports").glob("run-*.json")  # nothing to point the user at
    assert [(t["status"], t["output_ref"]) for t in json.loads(report.read_text())["tasks"]] == [
        ("completed", None)]


def test_open_pr_cap(world: World) -> None:
    world.config(mode="pr", max_open_prs_per_project=2)
    world.gh_state.write_text(json.dumps([
        {"number": n, "url": f"u{n}", "state": "OPEN", "headRefName": f"nightshift/other-{n}",
         "baseRefName": "main", "title": "t", "body": ""} for n in (1, 2)]))
    result = world.run()
    assert result.returncode == 0
    assert "alpha:lint-fix: skipped: publish.max_open_prs_per_project (2) reached: 2 open nightshift " \
        "PR(s)" in result.stdout
    assert not world.env.record.exists()  # no token was spent


def test_prs_per_hour_cap_is_fleet_wide(world: World) -> None:
    second = world.env.tmp / "repos" / "beta"
    other = world.env.tmp / "remotes" / "alice" / "beta.git"
    git(world.env.tmp, "clone", "-q", "--bare", str(world.origin), str(other))
    git(world.env.tmp, "clone", "-q", str(other), str(second))
    (second / ".agent-edit").write_text("")
    world.env.write_config({"projects": [{"path": str(world.repo)}, {"path": str(second)}],
                            "tasks": {"enabled": ["lint-fix"]},
                            "publish": {"mode": "pr", "max_prs_per_hour": 1}})
    result = world.run("-n", "1")
    results = result.stdout.split("\nResults:\n")[1].split("\n\n")[0].splitlines()
    created = [line for line in results if "; PR created: https://github.com/alice/" in line]
    assert len(created) == 1 and created[0].startswith("  alpha:lint-fix: committed ")
    assert "publish.max_prs_per_hour (1) reached: 1 opened" in result.stdout


def test_an_unowned_remote_is_refused_unless_allowed(world: World) -> None:
    world.config(mode="push")
    refused = world.run(gh_user="mallory")
    assert ("alpha:lint-fix: skipped: publish: refusing to push to origin owned by alice; allowed: "
            "mallory. Add the owner to publish.allowed_owners, or use publish.mode: local") in refused.stdout
    assert not world.env.record.exists()
    world.config(mode="push", allowed_owners=["alice"])
    allowed = world.run("-a", gh_user="mallory")
    assert allowed.returncode == 0, allowed.stdout
    assert git(world.origin, "rev-list", "--count", "main..nightshift/lint-fix") == "1"


def test_analysis_tasks_leave_a_report_and_no_commit(world: World) -> None:
    world.env.write_config({"projects": [{"path": str(world.repo)}],
                            "tasks": {"enabled": ["dead-code"]}, "publish": {"mode": "pr"}})
    result = world.run()
    assert result.returncode == 0, result.stdout
    (report,) = (world.env.home / "reports" / "alpha").glob("dead-code-*.md")
    assert report.read_text().startswith("# Dead Code Detector: alpha\n\nedited one file")
    assert f"alpha:dead-code: report: {report}" in result.stdout
    assert world.prs() == [] and git(world.repo, "branch", "--list", "nightshift/*") == ""


def test_crash_leftovers_are_pruned(world: World) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = world.env.home / "worktrees" / f"alpha--lint-fix--{dead.pid}"
    git(world.repo, "worktree", "add", "-q", "--detach", str(leftover), "HEAD")
    result = world.run()
    assert result.returncode == 0
    assert f"removed worktree left by a crashed run: {leftover}" in result.stdout
    assert not leftover.exists()
    assert str(leftover) not in git(world.repo, "worktree", "list")


def test_not_a_repository_or_no_commits_is_skipped(env: Env) -> None:
    plain = env.tmp / "plain"
    plain.mkdir()
    empty = env.tmp / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    env.write_config({"projects": [{"path": str(plain)}, {"path": str(empty)}]})
    listed = env.doit("list").stdout
    assert f"plain   skipped: not a git repository: {plain}" in listed
    assert f"empty   skipped: git repository has no commits: {empty}" in listed


def failing_agent(world: World, phase: str) -> None:
    """The fake agent, failing (exit 3) in `phase` after doing its work: implement has
    already edited the worktree by then."""
    agent = world.env.tmp / f"agent-failing-in-{phase}"
    agent.write_text(f'#!/bin/sh\n"{world.env.agent}" "$@" || exit\n'
                     f'case "$1" in *"# nightshift: {phase} phase"*)\n'
                     f'  echo "fake agent: {phase} broke" >&2; exit 3 ;;\nesac\n')
    agent.chmod(0o755)
    world.env.write_config({"providers": {"preference": ["command"], "command": {
        "enabled": True, "timeout": "1m", "argv": [str(agent), "{prompt}"]}}})


@pytest.mark.parametrize("phase", ["implement", "review"])
def test_work_that_failed_in_implement_or_review_publishes_nothing(world: World, phase: str) -> None:
    world.config(mode="pr")
    failing_agent(world, phase)
    result = world.run()
    assert result.returncode == 1, result.stdout + result.stderr
    assert summary_rows(result.stdout)["alpha"][:3] == ["command", "0", "1"]
    assert f"alpha:lint-fix: failed: iteration 1 failed: {phase} 1: exit 3: fake agent: {phase} broke" \
        in result.stdout
    assert world.prs() == []
    assert git(world.origin, "for-each-ref", "--format=%(refname)", "refs/heads/") == "refs/heads/main"
    assert git(world.repo, "for-each-ref", "--format=%(refname)", "refs/heads/nightshift/",
               "refs/nightshift/") == ""


GITHUB_URLS = ["https://github.com/{owner}/alpha.git", "git@github.com:{owner}/alpha.git",
               "ssh://git@github.com/{owner}/alpha", "ssh://git@github.com:22/{owner}/alpha.git"]


def github_remote(world: World, url: str, owner: str) -> None:
    """origin names GitHub; nothing in these tests reaches it, since the owner check and the
    PR cap are decided before anything is fetched or pushed."""
    git(world.repo, "remote", "set-url", "origin", url.format(owner=owner))
    world.gh_state.write_text(json.dumps([
        {"number": 1, "url": "u1", "state": "OPEN", "headRefName": "nightshift/other",
         "baseRefName": "main", "title": "t", "body": ""}]))


@pytest.mark.parametrize("url", GITHUB_URLS)
def test_the_owner_of_a_github_remote_is_read_from_its_url(world: World, url: str) -> None:
    world.config(mode="pr", max_open_prs_per_project=1, allowed_owners=["alice"])
    github_remote(world, url, "bob")
    refused = world.run()
    assert "alpha:lint-fix: skipped: publish: refusing to push to origin owned by bob; allowed: " \
        "alice. Add the owner to publish.allowed_owners, or use publish.mode: local" in refused.stdout
    github_remote(world, url, "alice")
    allowed = world.run("-a")
    # Past the owner check: the next check (the PR cap) is the one that stops it.
    assert "alpha:lint-fix: skipped: publish.max_open_prs_per_project (1) reached: 1 open " \
        "nightshift PR(s)" in allowed.stdout
    assert not world.env.record.exists()


def test_a_remote_whose_owner_cannot_be_told_is_refused(world: World) -> None:
    world.config(mode="pr", max_open_prs_per_project=1, allowed_owners=["alice"])
    github_remote(world, "https://example.com/alpha.git", "")
    result = world.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alpha:lint-fix: skipped: publish: refusing to push to origin owned by unknown; " \
        "allowed: alice." in result.stdout
    assert not world.env.record.exists()


def test_an_analysis_task_with_analysis_pr_opens_a_pr_on_the_configured_prefix(world: World) -> None:
    world.env.write_config({"projects": [{"path": str(world.repo)}], "tasks": {"enabled": ["dead-code"]},
                            "publish": {"mode": "pr", "analysis": "pr", "branch_prefix": "bot/night-"}})
    result = world.run()
    assert result.returncode == 0, result.stdout + result.stderr
    (report,) = (world.env.home / "reports" / "alpha").glob("dead-code-*.md")
    (pr,) = world.prs()
    assert (pr["state"], pr["headRefName"], pr["baseRefName"]) == ("OPEN", "bot/night-dead-code", "main")
    assert git(world.origin, "for-each-ref", "--format=%(refname)", "refs/heads/").splitlines() == [
        "refs/heads/bot/night-dead-code", "refs/heads/main"]
    assert git(world.origin, "show", "bot/night-dead-code:edited-by-agent.txt") == "edit by dead-code"
    assert report.read_text().startswith("# Dead Code Detector: alpha\n")


def test_the_configured_base_branch_is_where_the_work_starts(world: World) -> None:
    seed = world.env.tmp / "seed"
    git(seed, "checkout", "-q", "-b", "develop")
    (seed / "DEVELOP.md").write_text("on develop\n")
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "develop moves")
    git(seed, "push", "-q", "origin", "develop")
    world.env.write_config({"projects": [{"path": str(world.repo), "base_branch": "develop"}],
                            "publish": {"mode": "pr"}})
    result = world.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert git(world.origin, "rev-parse", "nightshift/lint-fix~1") == git(seed, "rev-parse", "develop")
    (pr,) = world.prs()
    assert pr["baseRefName"] == "develop"


def test_local_mode_never_fetches_the_remote(world: World) -> None:
    """publish.mode local: the branch only, no network. A commit pushed upstream after the
    clone stays unfetched, and the work starts from the remote branch as last fetched."""
    seed = world.env.tmp / "seed"
    before = git(world.repo, "rev-parse", "origin/main")
    (seed / "LATER.md").write_text("pushed after the clone\n")
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "later")
    git(seed, "push", "-q", "origin", "HEAD:main")
    world.config(mode="local")  # as written in a config, not the default
    result = world.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert git(world.repo, "rev-parse", "origin/main") == before
    assert git(world.repo, "rev-parse", "nightshift/lint-fix~1") == before


def test_an_unreachable_remote_still_lets_the_work_run_and_fails_only_its_publishing(
        world: World) -> None:
    """push mode fetches the remote first, but a failed fetch only means an older base: the
    task works from the remote branch as last fetched, and pushing is what fails."""
    before = git(world.repo, "rev-parse", "origin/main")
    world.config(mode="push")
    world.origin.rename(world.origin.with_name("gone.git"))
    result = world.run()
    assert result.returncode == 1
    assert [c.phase for c in world.env.calls()] == ["plan", "implement", "review"]
    assert "alpha:lint-fix: failed: publish failed: git ls-remote: " in result.stdout
    kept = re.search(r"; the work is kept at (refs/nightshift/kept/\S+)\n", result.stdout)
    assert kept, result.stdout
    assert git(world.repo, "rev-parse", f"{kept[1]}~1") == before


def gh_spec(tmp_path: Path, url: str | None = None, open_prs: int = 3, per_hour: int = 10,
            mode: str = "pr") -> TaskSpec:
    """A task of project alpha (a url project when `url` is given), for calling publish's
    functions directly."""
    run = RunSpec("run", False, "", 0.0, "", "", str(tmp_path / "out"), None, "info")
    settings = PublishSettings(mode, "origin", "nightshift/", "report", open_prs, per_hour, None)
    path = "github.com/alice/alpha" if url else str(tmp_path)
    project = ProjectSpec("alpha", path, str(tmp_path), url, ("lint-fix",), (), (), None, settings)
    return TaskSpec(run, project, "lint-fix", "Linter Fixes", "", "pr", "low", (), None)


def stand_in_gh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """A `gh` that runs `script`, alone on PATH with the system's programs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(f"#!/bin/sh\n{script}\n")
    (bin_dir / "gh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


@pytest.mark.parametrize(("script", "error"), [
    ("echo 'gh: first' >&2; echo 'retrying' >&2; echo 'HTTP 502: Bad Gateway' >&2; exit 1",
     "gh pr list: HTTP 502: Bad Gateway"),
    ("echo 'nothing on stderr'; echo 'not a git repository'; exit 1", "gh pr list: not a git repository"),
    ("exit 4", "gh pr list: exit 4"),
    ("kill -9 $$", "gh pr list: exit -9"),
], ids=["stderr", "stdout", "silent", "killed"])
def test_a_failing_gh_is_its_last_line_after_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         script: str, error: str) -> None:
    stand_in_gh(tmp_path, monkeypatch, script)
    with pytest.raises(PublishError) as raised:
        gh(gh_spec(tmp_path), "pr", "list", "--state", "open")
    assert str(raised.value) == error


def test_a_missing_gh_says_pr_mode_needs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.local/bin gh either
    with pytest.raises(PublishError) as raised:
        gh(gh_spec(tmp_path), "pr", "list")
    assert str(raised.value) == "`gh` is not installed; publish.mode pr needs it"


def test_gh_is_told_a_url_projects_repository_and_runs_in_a_checkouts_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A url project's mirror has no work tree for gh to find the repository from."""
    stand_in_gh(tmp_path, monkeypatch, 'echo "repo=${GH_REPO:-} cwd=$PWD"')
    monkeypatch.delenv("GH_REPO", raising=False)
    assert gh(gh_spec(tmp_path, url="https://github.com/alice/alpha.git"), "repo", "view") == \
        f"repo=github.com/alice/alpha cwd={tmp_path}"
    assert gh(gh_spec(tmp_path), "repo", "view") == f"repo= cwd={tmp_path}"


def test_the_commit_message_is_the_plan_or_else_the_summary_cut_at_2000_characters(tmp_path: Path) -> None:
    spec = gh_spec(tmp_path)
    planned = LoopResult("completed", 1, summary="edited", plan=" " + "p" * 2000 + "cut off\n")
    assert commit_message(spec, planned) == (
        f"nightshift: Linter Fixes\n\n{'p' * 2000}\n\nNightshift-Task: lint-fix\nNightshift-Run: run\n")
    unplanned = LoopResult("completed", 1, summary=" edited one file \n")
    assert commit_message(spec, unplanned) == (
        "nightshift: Linter Fixes\n\nedited one file\n\nNightshift-Task: lint-fix\nNightshift-Run: run\n")


def test_the_pr_body_has_the_summary_review_cut_at_1500_usage_credit_and_metadata(tmp_path: Path) -> None:
    result = LoopResult("completed", 2, summary=" tidied one thing\n", review=" " + "r" * 1500 + "cut off")
    body = pr_body(gh_spec(tmp_path), result, {"task-type": "lint-fix", "tokens": 12345})
    assert body == (f"tidied one thing\n\n**Review:** passed after 2 iteration(s). {'r' * 1500}\n\n"
                    f"**Measured usage:** 12,345 tokens\n\n---\n{CREDIT}\n\n<!-- nightshift:metadata\n"
                    "task-type: lint-fix\ntokens: 12345\nnightshift:metadata -->\n")


def pr_ledger(tmp_path: Path, rows: list[tuple[str, str, str, int, int]]) -> Conn:
    """The prs table with (project, branch, action, minutes ago, pid) rows of this host."""
    conn = state.connect(tmp_path / "state.db")
    with conn:
        for project, branch, action, minutes, pid in rows:
            conn.execute("INSERT INTO prs (project_path, branch, url, action, at, host, pid) VALUES "
                         "(?, ?, '', ?, ?, ?, ?)", (project, branch, action, state.stamp(
                             state.now() - timedelta(minutes=minutes)), host_id(), pid))
    return conn


def test_the_hourly_pr_cap_counts_the_last_hours_prs_and_live_reservations(tmp_path: Path) -> None:
    spec, now = gh_spec(tmp_path, per_hour=3), state.stamp(state.now())
    conn = pr_ledger(tmp_path, [("beta", "nightshift/a", "created", 59, 0),
                                ("beta", "nightshift/b", "created", 61, 0),
                                ("beta", "nightshift/c", "reserved", 1, os.getpid())])
    assert _take_slot(spec, conn, 7, set(), now) is None  # 59 minutes ago and the live hold: 2 of 3
    assert [tuple(r) for r in conn.execute("SELECT project_path, branch, action, attempt_id, host, pid "
                                           "FROM prs WHERE attempt_id IS NOT NULL")] == [
        (str(tmp_path), "nightshift/lint-fix", "reserved", 7, host_id(), os.getpid())]
    assert _take_slot(spec, conn, 8, set(), now) == (
        "publish.max_prs_per_hour (3) reached: 1 opened in the last hour and 2 being opened")
    assert _take_slot(gh_spec(tmp_path, per_hour=2), conn, 8, set(), now) == (  # lowered since
        "publish.max_prs_per_hour (2) reached: 1 opened in the last hour and 2 being opened")


def test_a_pr_opened_after_an_old_list_but_over_an_hour_ago_is_not_in_the_hourly_count(
        tmp_path: Path) -> None:
    """A list taken over an hour ago (a long task) fetches older rows, for the open-PR cap;
    the hourly cap still counts the last hour only."""
    conn = pr_ledger(tmp_path, [("beta", "nightshift/a", "created", 90, 0)])
    listed = state.stamp(state.now() - timedelta(hours=2))
    assert _take_slot(gh_spec(tmp_path, per_hour=1), conn, 7, set(), listed) is None


def test_a_pr_opened_by_a_process_still_running_counts_once(tmp_path: Path) -> None:
    """A created row is no reservation, whoever made it and whether or not it still runs."""
    conn = pr_ledger(tmp_path, [("beta", "nightshift/a", "created", 5, os.getpid())])
    assert _take_slot(gh_spec(tmp_path, per_hour=2), conn, 7, set(), state.stamp(state.now())) is None


def test_the_open_pr_cap_counts_this_projects_listed_held_and_newly_opened_prs(tmp_path: Path) -> None:
    spec = gh_spec(tmp_path, open_prs=3)
    listed = state.stamp(state.now() - timedelta(minutes=5))
    conn = pr_ledger(tmp_path, [(str(tmp_path), "nightshift/held", "reserved", 10, os.getpid()),
                                (str(tmp_path), "nightshift/new", "created", 1, 0),
                                (str(tmp_path), "nightshift/listed", "created", 20, 0),
                                (str(tmp_path), "nightshift/merged", "created", 30, 0),  # not open now
                                (str(tmp_path), "nightshift/closed", "created", 40, 0),  # nor this one
                                ("beta", "nightshift/elsewhere", "reserved", 1, os.getpid()),
                                ("/a", "nightshift/sorted-before", "reserved", 1, os.getpid())])
    assert _take_slot(spec, conn, 7, {"nightshift/listed"}, listed) == (
        "publish.max_open_prs_per_project (3) reached: 3 open nightshift PR(s)")
    assert _take_slot(gh_spec(tmp_path, open_prs=2), conn, 7, {"nightshift/listed"}, listed) == (
        "publish.max_open_prs_per_project (2) reached: 3 open nightshift PR(s)")  # a cap lowered since
    assert _take_slot(gh_spec(tmp_path, open_prs=4), conn, 7, {"nightshift/listed"}, listed) is None


def test_a_dead_processs_pr_reservation_is_no_open_pr(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    listed = state.stamp(state.now() - timedelta(minutes=5))
    conn = pr_ledger(tmp_path, [(str(tmp_path), "nightshift/gone", "reserved", 1, dead.pid)])
    assert _take_slot(gh_spec(tmp_path, open_prs=1), conn, 7, set(), listed) is None


@pytest.mark.parametrize(("size", "cut"), [(5, False), (MAX_REPORT_BYTES, False),
                                           (MAX_REPORT_BYTES + 1, True)])
def test_the_agents_report_is_saved_as_written_up_to_the_limit(tmp_path: Path, size: int,
                                                               cut: bool) -> None:
    worktree = tmp_path / "wt"
    (worktree / ".nightshift" / "reports").mkdir(parents=True)
    written = (b"r" * (size - 1) + b"\n")
    (worktree / ".nightshift" / "reports" / "lint-fix.md").write_bytes(written)
    saved = save_report(gh_spec(tmp_path), worktree, LoopResult("completed", 1, summary="s"))
    assert saved.read_bytes() == (written[:MAX_REPORT_BYTES] + b"\n\n(cut short by nightshift)\n"
                                  if cut else written)


# Answers `gh api user` with $ANSWERS/user and `gh pr list` with $ANSWERS/prs, each failing
# when its file is missing; every call is logged to $ANSWERS/log.
ANSWERING_GH = """echo "$1 $2" >> "$ANSWERS/log"
case "$1 $2" in
  "api user") file="$ANSWERS/user" ;;
  "pr list") file="$ANSWERS/prs" ;;
esac
[ -f "$file" ] || { echo "HTTP 401: Bad credentials" >&2; exit 1; }
cat "$file"
"""


def test_preflight_asks_who_you_are_and_which_prs_are_open(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    git(tmp_path, "init", "-q")
    git(tmp_path, "remote", "add", "origin", "https://github.com/alice/alpha.git")
    answers = tmp_path / "answers"
    answers.mkdir()
    stand_in_gh(tmp_path, monkeypatch, ANSWERING_GH)
    monkeypatch.setenv("ANSWERS", str(answers))
    conn = pr_ledger(tmp_path, [])
    spec = gh_spec(tmp_path)
    assert preflight(spec, conn, 7) == ("publish: cannot tell who you are on GitHub (gh api user: HTTP 401: "
                                        "Bad credentials); set publish.allowed_owners")
    (answers / "user").write_text("alice\n")
    assert preflight(spec, conn, 7) == "publish: cannot list open PRs: gh pr list: HTTP 401: Bad credentials"
    (answers / "prs").write_text("not json")
    assert preflight(spec, conn, 7) == ("publish: cannot list open PRs: Expecting value: line 1 column 1 "
                                        "(char 0)")
    (answers / "prs").write_text(json.dumps([{"number": 1, "headRefName": "nightshift/lint-fix"}]))
    assert preflight(gh_spec(tmp_path, open_prs=1), conn, 7) is None  # updating its own PR takes no slot
    assert conn.execute("SELECT COUNT(*) FROM prs").fetchone()[0] == 0
    (answers / "log").unlink()
    assert preflight(gh_spec(tmp_path, mode="push"), conn, 7) is None  # pushing needs no PR slot
    assert (answers / "log").read_text() == "api user\n"
    assert preflight(gh_spec(tmp_path, mode="local"), conn, 7) is None  # nor asks gh anything
    assert (answers / "log").read_text() == "api user\n"
    (answers / "prs").write_text(json.dumps([{"number": 1, "headRefName": "nightshift/other"},
                                            {"number": 2, "headRefName": "mine/feature"}]))
    assert preflight(gh_spec(tmp_path, open_prs=2), conn, 7) is None  # mine/feature is not nightshift's
    assert preflight(gh_spec(tmp_path, open_prs=2), conn, 8) == (
        "publish.max_open_prs_per_project (2) reached: 2 open nightshift PR(s)")
