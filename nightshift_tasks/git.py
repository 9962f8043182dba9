"""The git operations nightshift does itself: find the base, make and drop worktrees, commit,
push. The user's own checkout is never touched: no checkout, reset, stash or index write."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nightshift_tasks import process, repo_files

GIT_TIMEOUT = 300
CLEANUP_TIMEOUT = 30
# Used only when the repository has no identity configured.
FALLBACK_IDENTITY = ["-c", "user.name=nightshift", "-c", "user.email=nightshift@localhost"]
# <owner>/<repo> after a URL's host (scheme://[user@]host[:port]/) or an scp-like host
# ([user@]host:); a URL without both parts has no owner to tell.
OWNER = re.compile(r"^(?:[a-z][a-z0-9+.-]*://(?:[^@/]+@)?[^/]+/|(?:[^@/:]+@)?[^/:]+:)"
                   r"([^/]+)/[^/]+?(?:\.git)?/?$")
# Every git call of nightshift's own runs no hook (the user's or one the agent wrote, as with
# core.hooksPath=.husky: `--no-verify` does not skip post-commit or reference-transaction),
# no fsmonitor command, no gpg signing and no background gc, and never enters a submodule:
# the agent can turn a submodule's directory into a repository of its own, whose config git
# would obey there (status and commit look inside; fetch and push can recurse). /dev/null
# holds no hooks. Filter drivers, credential helpers and ssh stay: they come from the user's
# config, which publishing checks the agent left alone (Worktree.tampered).
SAFE = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "commit.gpgsign=false",
        "-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "diff.ignoreSubmodules=all",
        "-c", "submodule.recurse=false", "-c", "fetch.recurseSubmodules=false",
        "-c", "push.recurseSubmodules=no"]


class GitError(Exception):
    pass


def git(cwd: str | Path, *args: str, check: bool = True, env: Mapping[str, str] | None = None) -> str:
    """Run git without a shell; its stdout, or GitError with its own message."""
    code, out, err = process.capture(["git", *SAFE, *args], cwd, GIT_TIMEOUT,
                                     None if env is None else {**os.environ, **env})
    if check and code != 0:
        detail = (err.strip() or out.strip()).splitlines()
        raise GitError(f"git {args[0]}: {detail[-1] if detail else f'exit {code}'}")
    return out.strip()


def unusable(path: str) -> str | None:
    """Why the directory cannot hold nightshift work, or None. Read from git's files where
    they are plain (repo_files), which answers for most repositories without starting git."""
    if repo_files.has_commit(path):
        return None
    if not git(path, "rev-parse", "--git-dir", check=False):
        return "not a git repository"
    if not git(path, "rev-parse", "--verify", "--quiet", "HEAD", check=False):
        return "git repository has no commits"
    return None


def base_commit(path: str, configured: str | None, remote: str) -> tuple[str, str]:
    """(commit, branch name) the task starts from: projects[].base_branch, else the remote's
    default branch (<remote>/HEAD), else the current branch. Read from git's files where
    that is certain (repo_files.head_commit), else one git call, rarely two."""
    known = None if configured else repo_files.head_commit(path, remote)
    if known:
        return known
    candidates = [f"{remote}/{configured}", configured] if configured else [f"{remote}/HEAD", "HEAD"]
    for ref in candidates:
        found = git(path, "rev-parse", f"{ref}^{{commit}}", "--abbrev-ref", ref, check=False).split()
        if len(found) == 2 and re.fullmatch(r"[0-9a-f]{40,64}", found[0]):
            return found[0], found[1]
    raise GitError(f"base branch {configured!r} not found locally or on {remote}")


def _fingerprint(path: Path) -> str | None:
    """What a file is now: missing (None), a symlink's target, or a digest of its bytes."""
    try:
        if path.is_symlink():
            return f"symlink to {os.readlink(path)}"
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
    except OSError as exc:  # a directory in place of the file, say
        return f"unreadable: {exc.strerror}"


@dataclass(frozen=True)
class Worktree:
    """A worktree as nightshift made it. The agent owns the checkout, including the `.git`
    file that says where the repository is, so nightshift's own git calls there name the git
    dirs it recorded before the agent started, and publishing first checks that the files
    steering git (that `.git` file, the repository's config, the worktree's config) are
    unchanged: an agent that rewrites them could make git run its commands outside the box."""

    path: Path
    git_dir: Path  # <common dir>/worktrees/<name>
    common_dir: Path
    guarded: dict[Path, str | None]  # file -> its fingerprint when the worktree was made
    env: Mapping[str, str] = field(default_factory=dict)  # a url project's (mirrors.git_env)

    def git(self, *args: str, check: bool = True) -> str:
        return git(self.path, *args, check=check, env={
            **self.env, "GIT_DIR": str(self.git_dir), "GIT_COMMON_DIR": str(self.common_dir),
            "GIT_WORK_TREE": str(self.path)})

    def tampered(self) -> Path | None:
        """The first guarded file that is not as nightshift left it, or None."""
        return next((f for f, seen in self.guarded.items() if _fingerprint(f) != seen), None)


def add_worktree(path: str, worktree: Path, start: str,
                 env: Mapping[str, str] | None = None) -> Worktree:
    """A fresh worktree at `start`, detached: the task's branch moves only when a passed
    review is committed, so failed work never touches it. Its git dirs are read (from git's
    files where plain, else from git) before the agent can touch anything."""
    worktree.parent.mkdir(parents=True, exist_ok=True)
    admin = repo_files.new_worktree(path, str(worktree), start)  # one git process, not three
    if admin is None:
        git(path, "worktree", "add", "--force", "--detach", str(worktree), start)
    else:
        try:
            git(worktree, "reset", "--hard", "--quiet", "--no-recurse-submodules")
        except GitError:
            shutil.rmtree(worktree, ignore_errors=True)
            shutil.rmtree(admin, ignore_errors=True)
            raise
        os.unlink(os.path.join(admin, "locked"))
    dirs = repo_files.git_dirs(str(worktree)) or git(
        worktree, "rev-parse", "--path-format=absolute", "--git-dir", "--git-common-dir").splitlines()
    git_dir, common_dir = (Path(os.path.realpath(d)) for d in dirs)  # as git spells them
    files = [worktree / ".git", common_dir / "config", git_dir / "config.worktree"]
    return Worktree(worktree, git_dir, common_dir, {f: _fingerprint(f) for f in files}, env or {})


def quietly(cwd: str, *args: str) -> None:
    """A cleanup command whose output nobody needs: no pipes to wait on (a background
    process git left behind may hold them), and a bounded wait."""
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        process.capture(["git", *SAFE, *args], cwd, CLEANUP_TIMEOUT)


def remove_worktree(path: str, worktree: Path, box: Worktree | None = None) -> None:
    """Drop the worktree (the branch stays), files first: git refuses to remove a worktree
    whose `.git` file the agent rewrote, but forgets a missing one. With the `box` as made,
    forgetting it is removing its entry under `<common dir>/worktrees/`, what git itself
    would do, without a git process. Leftovers of a crash are pruned next run."""
    shutil.rmtree(worktree, ignore_errors=True)
    admin = box.git_dir if box and box.git_dir.parent == box.common_dir / "worktrees" else None
    if admin:
        with contextlib.suppress(OSError):
            if admin.is_symlink():  # one the agent put there goes, never its target
                admin.unlink()
            else:
                shutil.rmtree(admin)
        if not os.path.lexists(admin):
            return
    quietly(path, "worktree", "remove", "--force", str(worktree))


def has_changes(worktree: Worktree) -> bool:
    return bool(worktree.git("status", "--porcelain", "--untracked-files=all"))


def _identity(worktree: Worktree) -> list[str]:
    return [] if worktree.git("config", "user.email", check=False) else FALLBACK_IDENTITY


def commit(worktree: Worktree, message: str) -> str:
    """Commit everything in the worktree (its HEAD is detached: no branch moves); the commit."""
    worktree.git("add", "--all")
    worktree.git(*_identity(worktree), "commit", "--quiet", "--no-verify", "-m", message)
    return worktree.git("rev-parse", "HEAD")


def set_ref(worktree: Worktree, ref: str, new: str, old: str) -> None:
    """Point `ref` at `new` only if it still is `old` ("": only if it does not exist yet)."""
    worktree.git("update-ref", "-m", "nightshift: task commit", ref, new, old)


def delete_ref(worktree: Worktree, ref: str) -> None:
    worktree.git("update-ref", "-d", ref)


def tip(worktree: Worktree, ref: str) -> str | None:
    return worktree.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False) or None


def contains(worktree: Worktree, descendant: str, ancestor: str) -> bool:
    return worktree.git("merge-base", ancestor, descendant, check=False) == ancestor


def _busy_with(git_dir: Path, branch: str) -> bool:
    """A rebase or bisect of `branch` is in progress there: its HEAD is detached meanwhile,
    and finishing it sets the branch."""
    for name in ("rebase-merge/head-name", "rebase-apply/head-name", "BISECT_START"):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if (git_dir / name).read_text().strip() in (f"refs/heads/{branch}", branch):
                return True
    return False


def checked_out(worktree: Worktree, branch: str) -> Path | None:
    """The worktree of the repository (the user's checkout or any other) that has `branch`
    checked out, or is rebasing or bisecting it, or None: moving that branch would change
    what the user is working on."""
    listed = [block.splitlines() for block in
              worktree.git("worktree", "list", "--porcelain").split("\n\n")]
    for lines in listed:
        if f"branch refs/heads/{branch}" in lines:
            return Path(lines[0].removeprefix("worktree "))
    if _busy_with(worktree.common_dir, branch):
        return Path(listed[0][0].removeprefix("worktree "))
    for git_dir in sorted((worktree.common_dir / "worktrees").glob("*/gitdir")):
        if _busy_with(git_dir.parent, branch):
            return Path(git_dir.read_text().strip()).parent
    return None


def trailers_only(worktree: Worktree, tip_commit: str, base: str, slug: str) -> bool:
    """Whether every commit on `tip_commit` beyond `base` carries nightshift's trailers for
    the task: all of them nightshift's, by their messages."""
    found = worktree.git("log", "-z", "--format=%(trailers:key=Nightshift-Task,valueonly,"
                         "separator=%x2C)|%(trailers:key=Nightshift-Run,valueonly,separator=%x2C)",
                         tip_commit, "--not", base)
    return all(task == slug and run for task, _, run in
               (entry.partition("|") for entry in found.split("\0") if entry))


def merge_onto(worktree: Worktree, tip_commit: str, commit_id: str, message: str) -> str | None:
    """A merge commit of `commit_id` into `tip_commit`, made without any checkout (the
    branch's commits stay, the new work comes on top); None if they conflict."""
    out = worktree.git("merge-tree", "--write-tree", "--no-messages", "--name-only", tip_commit,
                       commit_id, check=False).splitlines()
    if not out:
        raise GitError(f"git merge-tree: cannot merge {commit_id[:10]} into {tip_commit[:10]}")
    if len(out) > 1:
        return None  # the conflicted files follow the tree
    if out[0] == worktree.git("rev-parse", f"{tip_commit}^{{tree}}"):
        return tip_commit  # the branch already holds this work
    return worktree.git(*_identity(worktree), "commit-tree", out[0], "-p", tip_commit, "-p",
                        commit_id, "-m", message)


def remote_owner(path: str, remote: str) -> str | None:
    """The owner part of the remote: `me` in git@github.com:me/repo.git; for a repository
    on disk (a path or file:// URL), the directory that holds it, as in /srv/git/me/repo.git."""
    url = git(path, "remote", "get-url", remote, check=False)
    if url.startswith(("/", "file://", "./", "../")):
        return Path(url.removeprefix("file://")).parent.name or None
    match = OWNER.match(url)
    return match.group(1) if match else None


def remote_tip(worktree: Worktree, remote: str, branch: str) -> str | None:
    """The branch's commit on the remote now (fetched, to compare and merge with), or None.

    Asked of the remote itself: a remote-tracking ref may still name a deleted branch."""
    ref = f"refs/heads/{branch}"
    listed = worktree.git("ls-remote", remote, ref).splitlines()
    found = next((line.split("\t")[0] for line in listed if line.endswith(f"\t{ref}")), None)
    if found:
        worktree.git("fetch", "--quiet", remote, f"+{ref}:refs/remotes/{remote}/{branch}")
    return found


def push(worktree: Worktree, remote: str, branch: str, commit_id: str, lease: str | None) -> None:
    """Push `commit_id` to the branch. With a lease (the branch's commit nightshift judged its
    own, "" for none), it replaces exactly that and nothing else; without one, only a
    fast-forward goes through."""
    force = [] if lease is None else [f"--force-with-lease=refs/heads/{branch}:{lease}"]
    worktree.git("push", "--quiet", *force, remote, f"{commit_id}:refs/heads/{branch}")
