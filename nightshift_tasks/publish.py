"""After a passed review, the orchestrator (never the agent) turns the worktree's changes into
a commit on the task's branch, and by `publish.mode` pushes it and opens or updates the
task's one PR. Analysis-style tasks leave a findings report. Failed work publishes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import stat
import subprocess
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from nightshift_tasks import git, state, storage
from nightshift_tasks.agents import agent_env
from nightshift_tasks.loop import LoopResult

REPORT_CATEGORIES = ("analysis", "options", "map", "emergency")
MAX_REPORT_BYTES = 1 << 20
GH_TIMEOUT = 120
CREDIT = "_Opened by [nightshift-tasks](https://pypi.org/project/nightshift-tasks/): overnight " \
         "maintenance by an AI agent, reviewed by a second pass before this PR._"


class PublishError(Exception):
    pass


class Refused(PublishError):
    """The agent changed what steers nightshift's own git calls: nothing of it is published."""


@dataclass(frozen=True)
class Published:
    note: str  # what happened, for the summary and the ledger
    output_ref: str | None  # the branch, PR URL or report path


def gh(cwd: str | Path, *args: str) -> str:
    try:
        proc = subprocess.run(["gh", *args], cwd=cwd, env=agent_env(), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=GH_TIMEOUT, check=False)
    except FileNotFoundError:
        raise PublishError("`gh` is not installed; publish.mode pr needs it") from None
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()
        raise PublishError(f"gh {args[0]} {args[1] if len(args) > 1 else ''}: {lines[-1]}")
    return proc.stdout.strip()


def branch_name(spec: dict[str, Any]) -> str:
    return f"{spec['publish']['branch_prefix']}{spec['slug']}"


def reports_only(spec: dict[str, Any]) -> bool:
    return spec["category"] in REPORT_CATEGORIES and spec["publish"]["analysis"] == "report"


def preflight(spec: dict[str, Any], conn: sqlite3.Connection) -> str | None:
    """Why the task must not even start (remote not ours, a PR cap reached), or None.

    Checked before any token is spent.
    """
    settings, path = spec["publish"], spec["path"]
    if settings["mode"] == "local" or reports_only(spec):
        return None
    owner = git.remote_owner(path, settings["remote"])
    allowed = settings.get("allowed_owners")
    if allowed is None:
        try:
            allowed = [gh(path, "api", "user", "--jq", ".login")]
        except PublishError as exc:
            return f"publish: cannot tell who you are on GitHub ({exc}); set publish.allowed_owners"
    if owner not in allowed:
        return (f"publish: refusing to push to {settings['remote']} owned by {owner or 'unknown'}; "
                f"allowed: {', '.join(allowed)}. Add the owner to publish.allowed_owners, or use "
                "publish.mode: local")
    if settings["mode"] != "pr":
        return None
    try:
        branches = [p["headRefName"] for p in json.loads(gh(
            path, "pr", "list", "--state", "open", "--limit", "200", "--json", "number,headRefName"))]
    except (PublishError, ValueError, KeyError, TypeError) as exc:
        return f"publish: cannot list open PRs: {exc}"
    ours = [b for b in branches if b.startswith(settings["branch_prefix"])]
    if branch_name(spec) in ours:
        return None  # updating its PR adds none
    if len(ours) >= settings["max_open_prs_per_project"]:
        return (f"publish.max_open_prs_per_project ({settings['max_open_prs_per_project']}) reached: "
                f"{len(ours)} open nightshift PR(s)")
    hour_ago = state.stamp(state.now() - timedelta(hours=1))
    opened = conn.execute("SELECT COUNT(*) FROM prs WHERE action = 'created' AND at >= ?",
                          (hour_ago,)).fetchone()[0]
    if opened >= settings["max_prs_per_hour"]:
        return f"publish.max_prs_per_hour ({settings['max_prs_per_hour']}) reached: {opened} opened"
    return None


def read_inside(root: Path, parts: tuple[str, ...], limit: int) -> bytes | None:
    """At most `limit` bytes of the file root/parts[0]/..., None if it is missing.

    The agent made it, and a symlink on the way could lead anywhere outside the worktree,
    a FIFO would block and a hard link shares an outside file's bytes: each step is opened
    without following symlinks, and anything but a regular file of one link raises OSError.
    """
    with contextlib.ExitStack() as opened:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        opened.callback(os.close, fd)
        for i, part in enumerate(parts):
            flags = os.O_NONBLOCK if i == len(parts) - 1 else os.O_DIRECTORY
            try:
                fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | flags, dir_fd=fd)
            except FileNotFoundError:
                return None
            except OSError as exc:
                why = {errno.ELOOP: "is a symlink", errno.ENOTDIR: "lies under a symlink or a file"}
                if exc.errno in why:
                    raise OSError(exc.errno, f"{'/'.join(parts)} {why[exc.errno]}") from None
                raise
            opened.callback(os.close, fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise OSError(errno.EPERM, f"{'/'.join(parts)} is not a regular file of its own")
        with open(os.dup(fd), "rb") as fh:
            return fh.read(limit)


def save_report(spec: dict[str, Any], worktree: Path, result: LoopResult) -> Path:
    """The findings: the report the agent wrote in the worktree (at most MAX_REPORT_BYTES),
    else its reply."""
    target: Path = Path(spec["reports_dir"]) / spec["project"] / f"{spec['slug']}-{date.today()}.md"
    storage.private_file(target)  # later writes keep the mode: reports are the user's alone
    fallback = f"# {spec['name']}: {spec['project']}\n\n{result.summary}\n"
    try:
        written = read_inside(worktree, (".nightshift", "reports", f"{spec['slug']}.md"),
                              MAX_REPORT_BYTES + 1)
    except OSError as exc:
        written = None
        fallback += f"\n(nightshift ignored the agent's report file: {exc.strerror})\n"
    if written is None:
        target.write_text(fallback, encoding="utf-8")
    elif len(written) > MAX_REPORT_BYTES:
        target.write_bytes(written[:MAX_REPORT_BYTES] + b"\n\n(cut short by nightshift)\n")
    else:
        target.write_bytes(written)
    return target


def commit_message(spec: dict[str, Any], result: LoopResult) -> str:
    body = result.plan.strip() or result.summary.strip()
    return (f"nightshift: {spec['name']}\n\n{body[:2000]}\n\n"
            f"Nightshift-Task: {spec['slug']}\nNightshift-Run: {spec['run_id']}\n")


def pr_body(spec: dict[str, Any], result: LoopResult, meta: dict[str, Any]) -> str:
    block = "\n".join(f"{k}: {v}" for k, v in meta.items())
    return (f"{result.summary.strip()}\n\n**Review:** passed after {result.iterations} "
            f"iteration(s). {result.review.strip()[:1500]}\n\n**Measured usage:** "
            f"{meta['tokens']:,} tokens\n\n---\n{CREDIT}\n\n<!-- nightshift:metadata\n{block}\n"
            "nightshift:metadata -->\n")


def open_or_update_pr(spec: dict[str, Any], conn: sqlite3.Connection, base: str, body: str) -> str:
    path, branch = spec["path"], branch_name(spec)
    existing = json.loads(gh(path, "pr", "list", "--head", branch, "--state", "open", "--json",
                             "number,url"))
    if existing:
        gh(path, "pr", "edit", str(existing[0]["number"]), "--body", body)
        url, action = str(existing[0]["url"]), "updated"
    else:
        url = gh(path, "pr", "create", "--head", branch, "--base", base,
                 "--title", f"nightshift: {spec['name']}", "--body", body).splitlines()[-1]
        action = "created"
    with state.write(conn):
        conn.execute("INSERT INTO prs (project_path, branch, url, action, at) VALUES (?, ?, ?, ?, ?)",
                     (path, branch, url, action, state.stamp(state.now())))
    return f"PR {action}: {url}"


def publish(spec: dict[str, Any], conn: sqlite3.Connection, worktree: git.Worktree, base: str,
            result: LoopResult, meta: dict[str, Any]) -> Published:
    """Only for a completed task (its review passed), and only if the agent left alone the
    files that steer git."""
    settings, branch = spec["publish"], branch_name(spec)
    changed = worktree.tampered()
    if changed:
        raise Refused(f"publish refused: the agent changed {changed}")
    report = None
    if spec["category"] in REPORT_CATEGORIES:
        report = save_report(spec, worktree.path, result)
        if reports_only(spec):
            return Published(f"report: {report}", str(report))
    if not git.has_changes(worktree):
        return Published("no changes", str(report) if report else None)
    commit = git.commit_to_branch(worktree, branch, commit_message(spec, result))
    note = f"committed {commit[:10]} on {branch}"
    if settings["mode"] == "local":
        return Published(note, branch)
    git.push(worktree, settings["remote"], branch)
    if settings["mode"] == "push":
        return Published(f"{note}, pushed", branch)
    pr = open_or_update_pr(spec, conn, base.removeprefix(f"{settings['remote']}/"),
                           pr_body(spec, result, meta))
    return Published(f"{note}; {pr}", pr.split(": ", 1)[1])
