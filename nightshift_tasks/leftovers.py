"""What a crashed run leaves behind: worktrees whose process is gone, and their
registrations in each repository. Pruned at the start of every run and by `doctor`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from nightshift_tasks import repo_files
from nightshift_tasks.git import git, quietly


def orphaned(entry: Path, alive: Callable[[int], bool]) -> bool:
    """A worktree of nightshift's (named <project>--<task>--<pid>) whose process is gone."""
    pid = entry.name.rsplit("--", 1)[-1]
    return pid.isdigit() and not alive(int(pid))


def registered(repo: str) -> list[Path]:
    """The repository's worktrees, read from git's files where its layout is plain (no git
    process per project at the start of a run), else as `git worktree list` shows them.
    A url project's mirror that is not made yet has none."""
    if not os.path.isdir(repo):
        return []
    dirs = repo_files.git_dirs(repo)
    if dirs is not None:
        return [Path(p) for p in repo_files.linked_worktrees(dirs[1])]
    return [Path(block.split("\n", 1)[0].removeprefix("worktree "))
            for block in git(repo, "worktree", "list", "--porcelain", check=False).split("\n\n")]


def prune(worktrees: Path, repos: list[str], alive: Callable[[int], bool]) -> list[Path]:
    """Remove worktrees whose process is gone, and make each repository forget them, even a
    registration that a kill during `git worktree add` left "locked initializing" (`git
    worktree prune` keeps those forever). Returns what was removed: not what is no
    directory (a file or symlink named like a worktree is not ours to delete)."""
    dead = [e for e in sorted(worktrees.iterdir()) if orphaned(e, alive)] if worktrees.is_dir() else []
    for entry in dead:
        shutil.rmtree(entry, ignore_errors=True)
    removed = [e for e in dead if not os.path.lexists(e)]
    ours = worktrees.resolve()
    for repo in repos:
        for entry in registered(repo):
            if entry.parent == ours and orphaned(entry, alive):
                quietly(repo, "worktree", "remove", "--force", "--force", str(entry))
                removed += [] if worktrees / entry.name in removed else [worktrees / entry.name]
    return removed
