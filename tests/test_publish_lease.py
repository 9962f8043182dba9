"""Publishing never overwrites anyone's work: commits others pushed onto a task branch, a
branch checked out by the user, and the PR caps under parallel workers. Real bare origins,
a second clone as the reviewer, real pushes; PRs through tests/fake_gh.py."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from nightshift_tasks import state
from tests import test_publish
from tests.conftest import Env
from tests.test_publish import World, git

world = test_publish.world  # the same bare-origin fixture
BRANCH = "nightshift/lint-fix"


def reviewer(w: World) -> Path:
    """A second clone, on the task branch as the remote has it."""
    clone = w.env.tmp / "reviewer"
    if not clone.exists():
        git(w.env.tmp, "clone", "-q", str(w.origin), str(clone))
    git(clone, "fetch", "-q", "origin")
    git(clone, "checkout", "-q", "-B", BRANCH, f"origin/{BRANCH}")
    return clone


def push_to_main(w: World, text: str) -> None:
    """Someone moves the base branch on the remote."""
    clone = w.env.tmp / "maintainer"
    if not clone.exists():
        git(w.env.tmp, "clone", "-q", str(w.origin), str(clone))
    git(clone, "pull", "-q", "origin", "main")
    (clone / "README.md").write_text(text)
    git(clone, "commit", "-q", "-am", "main moves")
    git(clone, "push", "-q", "origin", "HEAD:main")


def remote_tip(w: World) -> str:
    return git(w.origin, "rev-parse", f"refs/heads/{BRANCH}")


def kept(w: World) -> list[str]:
    return git(w.repo, "for-each-ref", "--format=%(refname)", "refs/nightshift/kept/").splitlines()


def reported_refs(w: World) -> list[str]:
    (report,) = sorted((w.env.home / "reports").glob("run-*.json"))[-1:]
    return [t["output_ref"] for t in json.loads(report.read_text())["tasks"]]


def seen(checkout: Path) -> tuple[str, str]:
    """What the user would notice: HEAD and status (a moved branch shows a staged diff)."""
    return git(checkout, "rev-parse", "HEAD"), git(checkout, "status", "--porcelain=v2", "--branch")


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("mode", ["push", "pr"])
def test_a_reviewers_conflicting_commit_is_left_as_is_and_the_work_kept(world: World,
                                                                      mode: str) -> None:
    world.config(mode=mode)
    ok(world.run())
    clone = reviewer(world)
    (clone / "edited-by-agent.txt").write_text("edit by lint-fix, reviewed\n")
    git(clone, "commit", "-q", "-am", "review: wording")
    git(clone, "push", "-q", "origin", BRANCH)
    theirs = git(clone, "rev-parse", "HEAD")
    prs = world.prs()
    out = ok(world.run("-a"))
    assert remote_tip(world) == theirs  # not overwritten
    assert world.prs() == prs  # the PR is left alone too
    (ref,) = kept(world)
    assert ref.startswith(f"refs/nightshift/kept/{BRANCH}/")
    assert f"alpha:lint-fix: {BRANCH} has commits not made by nightshift: left as is; the work " \
        f"is kept at {ref}" in out
    assert reported_refs(world) == [ref]
    # The agent's new work, whole, on top of the base.
    assert git(world.repo, "show", f"{ref}:edited-by-agent.txt") == "edit by lint-fix"
    assert git(world.repo, "rev-parse", f"{ref}~1") == git(world.origin, "rev-parse", "main")
    assert "Nightshift-Task: lint-fix" in git(world.repo, "log", "-1", "--format=%B", ref)


@pytest.mark.parametrize("mode", ["push", "pr"])
def test_new_work_is_built_on_top_of_a_reviewers_commit(world: World, mode: str) -> None:
    world.config(mode=mode)
    ok(world.run())
    clone = reviewer(world)
    (clone / "review.txt").write_text("looked at it\n")
    git(clone, "add", "review.txt")
    git(clone, "commit", "-q", "-m", "review: a note")
    git(clone, "push", "-q", "origin", BRANCH)
    theirs = git(clone, "rev-parse", "HEAD")
    push_to_main(world, "# alpha, moved on\n")
    out = ok(world.run("-a"))
    tip = remote_tip(world)
    assert git(world.origin, "rev-list", "--parents", "-1", tip).split()[1] == theirs
    assert git(world.origin, "show", f"{tip}:review.txt") == "looked at it"
    assert git(world.origin, "show", f"{tip}:README.md") == "# alpha, moved on"
    assert git(world.origin, "show", f"{tip}:edited-by-agent.txt") == "edit by lint-fix"
    assert f"alpha:lint-fix: committed {tip[:10]} on {BRANCH} on top of commits not made by " \
        "nightshift" in out
    assert git(world.repo, "rev-parse", BRANCH) == tip and kept(world) == []
    if mode == "pr":
        assert "PR updated" in out and len(world.prs()) == 1
    # The next night brings nothing new, and still never replaces the reviewer's commit.
    out = ok(world.run("-a"))
    assert remote_tip(world) == tip
    assert f"alpha:lint-fix: {BRANCH} has commits not made by nightshift and already holds " \
        "this work: left as is\n" in out
    assert kept(world) == []  # nothing to keep: the branch holds it


def test_a_pr_branch_rebased_by_someone_is_left_alone(world: World) -> None:
    world.config(mode="pr")
    ok(world.run())
    push_to_main(world, "# alpha, moved on\n")
    clone = reviewer(world)
    git(clone, "rebase", "-q", "origin/main")
    git(clone, "push", "-q", "--force", "origin", BRANCH)
    rebased = git(clone, "rev-parse", "HEAD")
    prs = world.prs()
    out = ok(world.run("-a"))
    assert remote_tip(world) == rebased
    assert world.prs() == prs
    assert f"{BRANCH} has commits not made by nightshift and already holds this work: left as " \
        "is" in out


def test_a_branch_deleted_on_the_remote_is_pushed_again(world: World) -> None:
    world.config(mode="push")
    ok(world.run())
    git(world.origin, "branch", "-D", BRANCH)
    out = ok(world.run("-a"))
    assert f"on {BRANCH}, pushed" in out
    assert git(world.origin, "rev-parse", BRANCH) == git(world.repo, "rev-parse", BRANCH)


def test_an_earlier_nightshift_version_unknown_to_the_ledger_is_replaced(world: World) -> None:
    """A fresh ledger (moved aside, a new machine): the trailers say whose commits they are."""
    world.config(mode="push")
    ok(world.run())
    first = remote_tip(world)
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (world.env.home / name).unlink(missing_ok=True)
    ok(world.run("-a"))
    assert remote_tip(world) != first
    assert git(world.origin, "rev-list", "--count", f"main..{BRANCH}") == "1"


@pytest.mark.parametrize("where", ["the user's checkout", "a linked worktree", "mid-rebase"])
def test_a_checked_out_task_branch_is_not_moved(world: World, where: str) -> None:
    ok(world.run())
    checkout = world.repo
    if where == "a linked worktree":
        checkout = world.env.tmp / "linked"
        git(world.repo, "worktree", "add", "-q", str(checkout), BRANCH)
    else:
        git(checkout, "checkout", "-q", BRANCH)
    if where == "mid-rebase":  # HEAD detached, the rebase stopped at a failing --exec
        rebase = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@x", "rebase", "-f",
                                 "-x", "false", "main"], cwd=checkout, capture_output=True)
        assert rebase.returncode != 0 and (checkout / ".git" / "rebase-merge").is_dir()
    before, tip = seen(checkout), git(world.repo, "rev-parse", BRANCH)
    out = ok(world.run("-a"))
    assert seen(checkout) == before
    assert git(world.repo, "rev-parse", BRANCH) == tip
    (ref,) = kept(world)
    assert f"alpha:lint-fix: {BRANCH} is checked out in {checkout}: left as is; the work is kept " \
        f"at {ref}" in out
    assert git(world.repo, "show", f"{ref}:edited-by-agent.txt") == "edit by lint-fix"


def test_a_local_commit_on_the_task_branch_is_not_overwritten(world: World) -> None:
    ok(world.run())
    git(world.repo, "checkout", "-q", BRANCH)
    (world.repo / "mine.txt").write_text("mine\n")
    git(world.repo, "add", "mine.txt")
    git(world.repo, "commit", "-q", "-m", "mine")
    mine = git(world.repo, "rev-parse", "HEAD")
    git(world.repo, "checkout", "-q", "main")
    out = ok(world.run("-a"))
    assert git(world.repo, "rev-parse", BRANCH) == mine
    assert f"{BRANCH} has commits not made by nightshift and already holds this work: left as " \
        "is" in out


def projects(w: World, names: list[str], **publish: object) -> list[Path]:
    """Projects of their own bare origins under alice/, the agent editing in each."""
    repos = []
    for name in names:
        origin = w.env.tmp / "remotes" / "alice" / f"{name}.git"
        git(w.env.tmp, "clone", "-q", "--bare", str(w.origin), str(origin))
        repo = w.env.tmp / "repos" / name
        git(w.env.tmp, "clone", "-q", str(origin), str(repo))
        (repo / ".agent-edit").write_text("")
        repos.append(repo)
    w.env.write_config({"projects": [{"path": str(r)} for r in repos],
                        "tasks": {"enabled": ["lint-fix"]}, "publish": {"mode": "pr", **publish}})
    return repos


def results(stdout: str) -> list[str]:
    return stdout.split("\nResults:\n")[1].split("\n\n")[0].splitlines()


def skipped(env: Env) -> int:
    try:
        conn = sqlite3.connect(env.home / "state.db")
    except sqlite3.OperationalError:  # its directory is not created yet
        return 0
    try:
        return int(conn.execute("SELECT COUNT(*) FROM attempts WHERE status = 'skipped'").fetchone()[0])
    except sqlite3.OperationalError:  # nor its tables
        return 0
    finally:
        conn.close()


def test_parallel_workers_take_pr_slots_one_at_a_time(world: World) -> None:
    projects(world, ["p1", "p2", "p3"], max_prs_per_hour=1)
    gate = world.env.tmp / "gate"
    gate.mkdir()
    done: list[subprocess.CompletedProcess[str]] = []
    runner = threading.Thread(target=lambda: done.append(world.env.doit(
        "run", "-n", "3", PATH=f"{world.bin}:{os.environ['PATH']}", GH_STATE=str(world.gh_state),
        AGENT_GATE=str(gate))))
    runner.start()
    # The winner's agent waits at the gate, holding the one slot, until the others gave up.
    deadline = time.monotonic() + 60
    while skipped(world.env) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the ledger for the two skips, not a timing guess
    (gate / "open").touch()
    runner.join(120)
    (result,) = done
    out = ok(result)
    assert len(world.prs()) == 1
    created = [line for line in results(out) if "; PR created: " in line]
    assert len(created) == 1
    assert out.count("lint-fix: skipped: publish.max_prs_per_hour (1) reached: 0 opened in the last "
                     "hour and 1 being opened") == 2


def test_a_slot_released_unused_lets_the_next_task_through(world: World) -> None:
    first, _, _ = projects(world, ["p1", "p2", "p3"], max_prs_per_hour=1)
    (first / ".agent-edit").unlink()  # p1 finds nothing to change: no PR, slot given back
    out = ok(world.run("-n", "1"))
    assert [p["repo"] for p in world.prs()] == ["p2"]
    assert "p1:lint-fix: no changes" in out
    assert "p3:lint-fix: skipped: publish.max_prs_per_hour (1) reached: 1 opened in the last " \
        "hour" in out


def test_a_slot_held_by_a_dead_process_is_not_counted(world: World) -> None:
    """Neither towards the hour's PRs nor the project's open ones, though it was reserved
    after the open PRs were listed."""
    world.config(mode="pr", max_prs_per_hour=1, max_open_prs_per_project=1)
    dead = subprocess.Popen(["true"])
    dead.wait()
    conn = state.connect(world.env.home / "state.db")
    with conn:
        conn.execute("INSERT INTO prs (project_path, branch, url, action, at, pid) VALUES "
                     "(?, 'nightshift/x', '', 'reserved', '2999-01-01T00:00:00.000+00:00', ?)",
                     (str(world.repo), dead.pid))
    conn.close()
    out = ok(world.run())
    assert "PR created" in out


def test_a_push_landing_between_the_check_and_nightshifts_push_is_not_overwritten(world: World) -> None:
    """The lease itself: someone pushes the task branch after nightshift looked at it and
    before its push arrives. Pushes reach the origin through a transport that lets an
    intruder's commit land first; the push must be refused, not forced over it."""
    intruder = git(world.env.tmp / "seed", "commit-tree", "-p", "HEAD", "-m", "someone else's",
                   git(world.env.tmp / "seed", "rev-parse", "HEAD^{tree}"))
    git(world.env.tmp / "seed", "push", "-q", "origin", f"{intruder}:refs/others/intruder")
    transport = world.env.tmp / "push-transport"
    transport.write_text('#!/bin/sh\nunset GIT_DIR GIT_WORK_TREE GIT_COMMON_DIR GIT_INDEX_FILE\n'
                         f'git -C "{world.origin}" update-ref refs/heads/{BRANCH} {intruder}\n'
                         f'exec git "$1" "{world.origin}"\n')
    transport.chmod(0o755)
    git(world.repo, "config", "protocol.ext.allow", "always")
    git(world.repo, "config", "remote.origin.pushurl", f"ext::{transport} %s")
    world.config(mode="push")
    result = world.run()
    assert git(world.origin, "for-each-ref", "--format=%(refname)", "refs/heads/").splitlines() == [
        "refs/heads/main", f"refs/heads/{BRANCH}"], result.stdout + result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    assert remote_tip(world) == intruder
    (ref,) = kept(world)
    assert ref.startswith(f"refs/nightshift/kept/{BRANCH}/")
    assert (f"  alpha:lint-fix: failed: publish failed: git push: error: failed to push some refs "
            f"to 'ext::{transport} %s'; the work is kept at {ref}\n") in result.stdout
