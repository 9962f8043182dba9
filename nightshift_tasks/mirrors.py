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
import dataclasses
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from nightshift_tasks import git, storage, urls
from nightshift_tasks.spec import PublishSettings

REMOTE = "origin"
FETCH = f"+refs/heads/*:refs/remotes/{REMOTE}/*"


class MirrorError(Exception):
    """The mirror could not be made or fetched; the message holds no credentials."""


def git_env(url: str) -> dict[str, str]:
    """For nightshift's own git calls on a mirror: only the allowed transports, never a
    prompt (no one is there), and the URL's credentials. They are given to each call and
    never written into the mirror, whose config the agent can read from its worktree."""
    env = {"GIT_ALLOW_PROTOCOL": urls.PROTOCOLS, "GIT_TERMINAL_PROMPT": "0"}
    plain = urls.normalised(url)
    if url != plain:
        n = int(os.environ.get("GIT_CONFIG_COUNT") or 0)
        env |= {"GIT_CONFIG_COUNT": str(n + 1), f"GIT_CONFIG_KEY_{n}": f"url.{url}.insteadOf",
                f"GIT_CONFIG_VALUE_{n}": plain}
    return env


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _config(url: str) -> str:
    """The mirror's whole config. Written afresh before every fetch, so nothing the agent
    may have added from a worktree (core.sshCommand, a credential helper, an insteadOf)
    steers a later fetch; transports beyond https, ssh and file are off for every git call
    there, the publish push included."""
    allowed = "".join(f'[protocol "{name}"]\n\tallow = always\n' for name in urls.PROTOCOLS.split(":"))
    return ("[core]\n\trepositoryformatversion = 0\n\tbare = true\n"
            f"[protocol]\n\tallow = never\n{allowed}"
            f'[remote "{REMOTE}"]\n\turl = {_quoted(urls.normalised(url))}\n\tfetch = {FETCH}\n')


def _write_config(mirror: Path, url: str) -> None:
    fresh = mirror / f"config.{os.getpid()}"
    fresh.write_text(_config(url), encoding="utf-8")
    fresh.replace(mirror / "config")


def _git(cwd: Path, url: str, *args: str, check: bool = True) -> str:
    try:
        return git.git(cwd, *args, check=check, env=git_env(url))
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
    """An empty bare repository with its config, made aside and moved into place, so that
    a crash never leaves a half-made mirror behind."""
    aside = mirror.with_name(f".{mirror.name}.{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    _git(mirror.parent, url, "init", "--quiet", "--bare", str(aside))
    _write_config(aside, url)
    aside.rename(mirror)


def sync(url: str, mirror: Path) -> None:
    """Make the mirror if it is missing (the only clone), else renew its config; then fetch
    the remote's branches and its default branch (origin/HEAD)."""
    storage.private_dir(mirror.parent)
    with locked(mirror):
        if (mirror / "HEAD").is_file():
            _write_config(mirror, url)
        else:
            _create(url, mirror)
        _git(mirror, url, "fetch", "--quiet", "--prune", REMOTE)
        # An empty remote has no default branch yet: the task's base_commit says so.
        _git(mirror, url, "remote", "set-head", REMOTE, "--auto", check=False)


def publish_settings(settings: PublishSettings, url: str | None) -> PublishSettings:
    """publish as it applies to a project: a url project's mirror has one remote, the URL."""
    return settings if url is None else dataclasses.replace(settings, remote=REMOTE)
