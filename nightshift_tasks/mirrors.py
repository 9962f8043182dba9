"""The mirror cache of url projects: one bare repository per URL under
$NIGHTSHIFT_HOME/mirrors, made once and fetched before each task, under a lock per mirror
so that no two tasks or processes on this machine fetch into it at once. A task's worktree
comes from the mirror, and its branch is pushed from there to the URL.

The mirror keeps the remote's branches as `origin/*` (and `origin/HEAD`, the remote's
default branch), and nightshift's task branches as its own: the same layout as a user's
checkout, so worktrees and publishing work on it unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nightshift_tasks import git, storage, urls

REMOTE = "origin"
FETCH = f"+refs/heads/*:refs/remotes/{REMOTE}/*"
# Written into the mirror's own config, so that every later git call there (the publish
# push, ls-remote, fetch) obeys it too; the environment says the same to our own calls.
_SETTINGS = [("protocol.allow", "never"), *((f"protocol.{name}.allow", "always")
                                            for name in urls.PROTOCOLS.split(":"))]


class MirrorError(Exception):
    """The mirror could not be made or fetched; the message holds no credentials."""


def _env() -> dict[str, str]:
    """Only the allowed transports, and never a prompt for a password: no one is there."""
    return {"GIT_ALLOW_PROTOCOL": urls.PROTOCOLS, "GIT_TERMINAL_PROMPT": "0"}


def _git(cwd: Path, url: str, *args: str) -> str:
    try:
        return git.git(cwd, *args, env=_env())
    except git.GitError as exc:
        raise MirrorError(urls.redact(str(exc), url)) from None
    except subprocess.TimeoutExpired:
        raise MirrorError(f"git {args[0]} took longer than {git.GIT_TIMEOUT}s") from None


@contextlib.contextmanager
def locked(mirror: Path) -> Iterator[None]:
    """Hold the mirror's lock (a flock: the kernel drops it when a process dies)."""
    lock = storage.private_file(mirror.with_name(mirror.name + ".lock"))
    with open(lock, "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _create(url: str, mirror: Path) -> None:
    """An empty bare repository with the URL as its remote, made aside and moved into
    place, so that a crash never leaves a half-configured mirror behind."""
    aside = mirror.with_name(f".{mirror.name}.{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    _git(mirror.parent, url, "init", "--quiet", "--bare", str(aside))
    for key, value in [*_SETTINGS, (f"remote.{REMOTE}.url", url), (f"remote.{REMOTE}.fetch", FETCH)]:
        _git(aside, url, "config", key, value)
    aside.rename(mirror)


def sync(url: str, mirror: Path) -> None:
    """Make the mirror if it is missing, else point it at the URL as configured now (a
    token may have changed), then fetch the remote's branches and its default branch."""
    storage.private_dir(mirror.parent)
    with locked(mirror):
        if not (mirror / "HEAD").is_file():
            _create(url, mirror)
        else:
            _git(mirror, url, "config", f"remote.{REMOTE}.url", url)
        _git(mirror, url, "fetch", "--quiet", "--prune", REMOTE)
        # An empty remote has no default branch yet: the task's base_commit says so.
        git.git(mirror, "remote", "set-head", REMOTE, "--auto", check=False, env=_env())


def publish_settings(settings: dict[str, Any], url: str | None) -> dict[str, Any]:
    """publish as it applies to a project: a url project's mirror has one remote, the URL."""
    return settings if url is None else {**settings, "remote": REMOTE}
