"""The git operations nightshift does itself: find the base, make and drop worktrees, commit,
push. The user's own checkout is never touched: no checkout, reset, stash or index write."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

GIT_TIMEOUT = 300
CLEANUP_TIMEOUT = 30
# Used only when the repository has no identity configured.
FALLBACK_IDENTITY = ["-c", "user.name=nightshift", "-c", "user.email=nightshift@localhost"]
OWNER = re.compile(r"^(?:[a-z+]+://)?(?:[^@/]+@)?[^:/]+[:/]+([^/]+)/[^/]+?(?:\.git)?/?$")


class GitError(Exception):
    pass


def git(cwd: str | Path, *args: str, check: bool = True) -> str:
    """Run git without a shell; its stdout, or GitError with its own message."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=GIT_TIMEOUT, check=False)
    if check and proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise GitError(f"git {args[0]}: {detail[-1] if detail else f'exit {proc.returncode}'}")
    return proc.stdout.strip()


def unusable(path: str) -> str | None:
    """Why the directory cannot hold nightshift work, or None."""
    if not git(path, "rev-parse", "--git-dir", check=False):
        return "not a git repository"
    if not git(path, "rev-parse", "--verify", "--quiet", "HEAD", check=False):
        return "git repository has no commits"
    return None


def base_commit(path: str, configured: str | None, remote: str) -> tuple[str, str]:
    """(commit, branch name) the task starts from: projects[].base_branch, else the remote's
    default branch (<remote>/HEAD), else the current branch. Usually one git call."""
    candidates = [f"{remote}/{configured}", configured] if configured else [f"{remote}/HEAD", "HEAD"]
    for ref in candidates:
        found = git(path, "rev-parse", f"{ref}^{{commit}}", "--abbrev-ref", ref, check=False).split()
        if len(found) == 2 and re.fullmatch(r"[0-9a-f]{40,64}", found[0]):
            return found[0], found[1]
    raise GitError(f"base branch {configured!r} not found locally or on {remote}")


def add_worktree(path: str, worktree: Path, start: str) -> None:
    """A fresh worktree at `start`, detached: the task's branch moves only when a passed
    review is committed, so failed work never touches it."""
    worktree.parent.mkdir(parents=True, exist_ok=True)
    git(path, "worktree", "add", "--force", "--detach", str(worktree), start)


def _quietly(cwd: str, *args: str) -> None:
    """A cleanup command whose output nobody needs: no pipes to wait on (a background
    process git left behind may hold them), and a bounded wait."""
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        subprocess.run(["git", *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=CLEANUP_TIMEOUT, check=False)


def remove_worktree(path: str, worktree: Path) -> None:
    """Drop the worktree (the branch stays). Leftovers of a crash are pruned next run."""
    _quietly(path, "worktree", "remove", "--force", str(worktree))
    shutil.rmtree(worktree, ignore_errors=True)


def prune_leftovers(worktrees: Path, repos: list[str], alive: Callable[[int], bool]) -> list[Path]:
    """Remove worktrees whose process is gone (named <project>--<task>--<pid>), and let each
    repository forget them. Returns what was removed."""
    removed = []
    for entry in sorted(worktrees.iterdir()) if worktrees.is_dir() else []:
        pid = entry.name.rsplit("--", 1)[-1]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    if removed:
        for repo in repos:
            _quietly(repo, "worktree", "prune")
    return removed


def has_changes(worktree: Path) -> bool:
    return bool(git(worktree, "status", "--porcelain", "--untracked-files=all"))


def commit_to_branch(worktree: Path, branch: str, message: str) -> str:
    """Commit everything in the worktree and point `branch` at it; returns the commit."""
    git(worktree, "add", "--all")
    identity = [] if git(worktree, "config", "user.email", check=False) else FALLBACK_IDENTITY
    git(worktree, *identity, "commit", "--quiet", "--no-verify", "-m", message)
    commit = git(worktree, "rev-parse", "HEAD")
    git(worktree, "update-ref", "-m", "nightshift: task commit", f"refs/heads/{branch}", commit)
    return commit


def remote_owner(path: str, remote: str) -> str | None:
    """The owner part of the remote: `me` in git@github.com:me/repo.git; for a repository
    on disk (a path or file:// URL), the directory that holds it, as in /srv/git/me/repo.git."""
    url = git(path, "remote", "get-url", remote, check=False)
    if url.startswith(("/", "file://", "./", "../")):
        return Path(url.removeprefix("file://")).parent.name or None
    match = OWNER.match(url)
    return match.group(1) if match else None


def push(worktree: Path, remote: str, branch: str) -> None:
    """Push the branch, replacing an earlier nightshift version of it but nothing newer."""
    git(worktree, "fetch", "--quiet", remote, f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}",
        check=False)
    known = git(worktree, "rev-parse", "--verify", "--quiet", f"refs/remotes/{remote}/{branch}",
                check=False)
    git(worktree, "push", "--quiet", f"--force-with-lease=refs/heads/{branch}:{known}", remote,
        f"HEAD:refs/heads/{branch}")
