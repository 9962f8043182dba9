"""leftovers.py against real repositories: a crashed run's worktrees go, nothing else does."""

from __future__ import annotations

import shutil
from pathlib import Path

from nightshift_tasks import git as ngit
from nightshift_tasks import leftovers, repo_files
from tests.conftest import git


def test_prune_removes_dead_worktrees_only(repo: Path, tmp_path: Path) -> None:
    """Named <project>--<task>--<pid>: a dead pid goes, also as a registration whose
    directory is already gone; a live one and anything not named so (no pid to judge) stay,
    and a file where a worktree would be is neither removed nor a reason to stop."""
    work = tmp_path / "work"
    dead = ngit.add_worktree(str(repo), work / "repo--lint-fix--111", "HEAD").path
    live = ngit.add_worktree(str(repo), work / "repo--dead-code--222", "HEAD").path
    gone = ngit.add_worktree(str(repo), work / "repo--docs--333", "HEAD").path
    shutil.rmtree(gone)  # its registration stays
    (work / "notes").mkdir()
    (work / "repo--stray--444").write_text("a file, not a worktree")
    removed = leftovers.prune(work, [str(repo)], alive=lambda pid: pid == 222)
    assert removed == [dead, gone]
    assert sorted(p.name for p in work.iterdir()) == ["notes", live.name, "repo--stray--444"]
    listed = git(repo, "worktree", "list", "--porcelain")
    assert str(live.resolve()) in listed
    assert str(dead.resolve()) not in listed and str(gone.resolve()) not in listed


def test_prune_removes_a_worktree_registered_by_hand_and_killed_before_its_checkout(
        repo: Path, tmp_path: Path) -> None:
    """What a kill between add_worktree's registration and the end of its checkout leaves:
    the registration locked "initializing" and a directory with only its `.git` file."""
    work = tmp_path / "work"
    work.mkdir()
    leftover = work / "repo--lint-fix--111"
    admin = repo_files.new_worktree(str(repo), str(leftover), git(repo, "rev-parse", "HEAD"))
    assert admin is not None and (Path(admin) / "locked").read_text() == "initializing\n"
    assert [p.name for p in leftover.iterdir()] == [".git"]
    assert leftovers.prune(work, [str(repo)], alive=lambda pid: False) == [leftover]
    assert not leftover.exists() and not Path(admin).exists()
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_prune_leaves_a_users_own_worktrees_named_like_ours(repo: Path, tmp_path: Path) -> None:
    """Only what lies in nightshift's worktrees directory is nightshift's, wherever the user's
    own worktree sorts: a name with a dead pid in it is not enough."""
    work = tmp_path / "m-work"
    mine = [tmp_path / "a" / "repo--lint-fix--111", tmp_path / "z" / "repo--lint-fix--111"]
    for path in mine:
        git(repo, "worktree", "add", "-q", "--detach", str(path))
    assert leftovers.prune(work, [str(repo)], alive=lambda pid: False) == []
    assert all(path.is_dir() for path in mine)
    assert git(repo, "worktree", "list").count("repo--lint-fix--111") == 2


def test_prune_when_the_project_is_itself_a_linked_worktree(repo: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    git(repo, "worktree", "add", "-q", "-b", "topic", str(project))
    work = tmp_path / "work"
    dead = ngit.add_worktree(str(project), work / "project--lint-fix--111", "HEAD").path
    shutil.rmtree(dead)
    assert leftovers.prune(work, [str(project)], alive=lambda pid: False) == [dead]
    assert str(dead) not in git(repo, "worktree", "list")


def test_prune_reads_git_itself_where_the_layout_is_not_plain(repo: Path, tmp_path: Path) -> None:
    """A config line git's start-up parses beyond what repo_files reads: `git worktree
    list` tells the registrations instead. And a directory that is no repository has none."""
    git(repo, "config", "alias.st", "status")
    work = tmp_path / "work"
    dead = ngit.add_worktree(str(repo), work / "repo--lint-fix--111", "HEAD").path
    shutil.rmtree(dead)
    (tmp_path / "plain-dir").mkdir()
    assert leftovers.prune(work, [str(tmp_path / "plain-dir"), str(repo)],
                                alive=lambda pid: False) == [dead]
    assert str(dead) not in git(repo, "worktree", "list")
    assert ngit.remote_owner(str(repo), "no-such-remote") is None
