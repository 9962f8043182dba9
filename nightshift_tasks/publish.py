"""After a passed review, the orchestrator (never the agent) turns the worktree's changes into
a commit on the task's branch, and by `publish.mode` pushes it and opens or updates the
task's one PR. Analysis-style tasks leave a findings report. Failed work publishes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import subprocess
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from nightshift_tasks import branches, fleet, git, state, storage, urls
from nightshift_tasks.agents import agent_env
from nightshift_tasks.db import Conn, host_id, write_one
from nightshift_tasks.loop import LoopResult
from nightshift_tasks.spec import TaskSpec

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


def gh(spec: TaskSpec, *args: str) -> str:
    """gh in the project's checkout; for a url project (in its mirror, which has no work
    tree) GH_REPO names the repository."""
    project = spec.project
    env = agent_env() if not project.url else {**agent_env(), "GH_REPO": urls.display_path(project.path)}
    try:
        proc = subprocess.run(["gh", *args], cwd=project.repo, env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=GH_TIMEOUT, check=False)
    except FileNotFoundError:
        raise PublishError("`gh` is not installed; publish.mode pr needs it") from None
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()
        raise PublishError(f"gh {args[0]} {args[1] if len(args) > 1 else ''}: {lines[-1]}")
    return proc.stdout.strip()


def branch_name(spec: TaskSpec) -> str:
    return f"{spec.project.publish.branch_prefix}{spec.slug}"


def reports_only(spec: TaskSpec) -> bool:
    return spec.category in REPORT_CATEGORIES and spec.project.publish.analysis == "report"


def preflight(spec: TaskSpec, conn: Conn, attempt: int) -> str | None:
    """Why the task must not even start (remote not ours, a PR cap reached), or None; a task
    that may open a PR holds a PR slot from here on (release_slot gives it back).

    Checked before any token is spent.
    """
    settings, path = spec.project.publish, spec.project.repo
    if settings.mode == "local" or reports_only(spec):
        return None
    owner = git.remote_owner(path, settings.remote)
    allowed = settings.allowed_owners
    if allowed is None:
        try:
            allowed = (gh(spec, "api", "user", "--jq", ".login"),)
        except PublishError as exc:
            return f"publish: cannot tell who you are on GitHub ({exc}); set publish.allowed_owners"
    if owner not in allowed:
        return (f"publish: refusing to push to {settings.remote} owned by {owner or 'unknown'}; "
                f"allowed: {', '.join(allowed)}. Add the owner to publish.allowed_owners, or use "
                "publish.mode: local")
    if settings.mode != "pr":
        return None
    listed_at = state.stamp(state.now())
    try:
        heads = [p["headRefName"] for p in json.loads(gh(
            spec, "pr", "list", "--state", "open", "--limit", "200", "--json", "number,headRefName"))]
    except (PublishError, ValueError, KeyError, TypeError) as exc:
        return f"publish: cannot list open PRs: {exc}"
    ours = {b for b in heads if b.startswith(settings.branch_prefix)}
    if branch_name(spec) in ours:
        return None  # updating its PR adds none
    return _take_slot(spec, conn, attempt, ours, listed_at)


def _take_slot(spec: TaskSpec, conn: Conn, attempt: int, ours: set[str],
               listed_at: str) -> str | None:
    """Count the PRs opened and being opened, and take a slot if one is free, in one write
    transaction: parallel workers cannot all see the last slot free. A slot of a process
    that died is free again."""
    settings, path = spec.project.publish, spec.project.path
    hour_ago = state.stamp(state.now() - timedelta(hours=1))
    with state.write(conn, "pull requests"):
        rows = conn.execute("SELECT project_path, branch, action, at, host, pid FROM prs WHERE "
                            "action = 'reserved' OR (action = 'created' AND at >= ?)",
                            (min(hour_ago, listed_at),)).fetchall()
        holds = fleet.liveness(conn)
        held = [r for r in rows if r["action"] == "reserved" and holds(r["host"], r["pid"])]
        opened = sum(r["action"] == "created" and r["at"] >= hour_ago for r in rows)
        since = [r for r in rows if r["action"] == "created" and r["at"] >= listed_at]
        # PRs opened since the list was taken count from the ledger.
        project = ours | {r["branch"] for r in held + since if r["project_path"] == path}
        if len(project) >= settings.max_open_prs_per_project:
            return (f"publish.max_open_prs_per_project ({settings.max_open_prs_per_project}) "
                    f"reached: {len(project)} open nightshift PR(s)")
        if opened + len(held) >= settings.max_prs_per_hour:
            return (f"publish.max_prs_per_hour ({settings.max_prs_per_hour}) reached: {opened} "
                    "opened in the last hour" + (f" and {len(held)} being opened" if held else ""))
        conn.execute("INSERT INTO prs (project_path, branch, url, action, at, attempt_id, host, "
                     "pid) VALUES (?, ?, '', 'reserved', ?, ?, ?, ?)",
                     (path, branch_name(spec), state.stamp(state.now()), attempt, host_id(),
                      os.getpid()))
    return None


def release_slot(conn: Conn, attempt: int) -> None:
    """The task ended: a PR slot it took and did not use is free again."""
    write_one(conn, "DELETE FROM prs WHERE attempt_id = ? AND action = 'reserved'", (attempt,))


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


def save_report(spec: TaskSpec, worktree: Path, result: LoopResult) -> Path:
    """The findings: the report the agent wrote in the worktree (at most MAX_REPORT_BYTES),
    else its reply."""
    target = Path(spec.run.reports_dir) / spec.project.name / f"{spec.slug}-{date.today()}.md"
    storage.private_file(target)  # later writes keep the mode: reports are the user's alone
    fallback = f"# {spec.name}: {spec.project.name}\n\n{result.summary}\n"
    try:
        written = read_inside(worktree, (".nightshift", "reports", f"{spec.slug}.md"),
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


def commit_message(spec: TaskSpec, result: LoopResult) -> str:
    body = result.plan.strip() or result.summary.strip()
    return (f"nightshift: {spec.name}\n\n{body[:2000]}\n\n"
            f"Nightshift-Task: {spec.slug}\nNightshift-Run: {spec.run.run_id}\n")


def pr_body(spec: TaskSpec, result: LoopResult, meta: dict[str, Any]) -> str:
    block = "\n".join(f"{k}: {v}" for k, v in meta.items())
    return (f"{result.summary.strip()}\n\n**Review:** passed after {result.iterations} "
            f"iteration(s). {result.review.strip()[:1500]}\n\n**Measured usage:** "
            f"{meta['tokens']:,} tokens\n\n---\n{CREDIT}\n\n<!-- nightshift:metadata\n{block}\n"
            "nightshift:metadata -->\n")


def open_or_update_pr(spec: TaskSpec, conn: Conn, base: str, body: str) -> str:
    path, branch = spec.project.path, branch_name(spec)
    existing = json.loads(gh(spec, "pr", "list", "--head", branch, "--state", "open", "--json",
                             "number,url"))
    if existing:
        gh(spec, "pr", "edit", str(existing[0]["number"]), "--body", body)
        url, action = str(existing[0]["url"]), "updated"
    else:
        url = gh(spec, "pr", "create", "--head", branch, "--base", base,
                 "--title", f"nightshift: {spec.name}", "--body", body).splitlines()[-1]
        action = "created"
    with state.write(conn):  # the slot this process took for the PR becomes the PR
        conn.execute("DELETE FROM prs WHERE action = 'reserved' AND project_path = ? AND host = ? "
                     "AND pid = ?", (path, host_id(), os.getpid()))
        conn.execute("INSERT INTO prs (project_path, branch, url, action, at) VALUES (?, ?, ?, ?, ?)",
                     (path, branch, url, action, state.stamp(state.now())))
    return f"PR {action}: {url}"


def publish(spec: TaskSpec, conn: Conn, worktree: git.Worktree, base: str,
            result: LoopResult, meta: dict[str, Any]) -> Published:
    """Only for a completed task (its review passed), and only if the agent left alone the
    files that steer git."""
    settings, branch = spec.project.publish, branch_name(spec)
    changed = worktree.tampered()
    if changed:
        raise Refused(f"publish refused: the agent changed {changed}")
    report = None
    if spec.category in REPORT_CATEGORIES:
        report = save_report(spec, worktree.path, result)
        if reports_only(spec):
            return Published(f"report: {report}", str(report))
    if not git.has_changes(worktree):
        return Published("no changes", str(report) if report else None)
    commit = git.commit(worktree, commit_message(spec, result))
    kept = f"{branches.KEPT}/{branch}/{spec.run.run_id}"
    git.set_ref(worktree, kept, commit, "")  # the work is safe before any branch is looked at
    try:
        move = _place(spec, conn, worktree, branch, commit)
    except (git.GitError, PublishError) as exc:
        raise PublishError(f"{exc}; the work is kept at {kept}") from exc
    if isinstance(move, branches.Left):
        if not move.keep:
            git.delete_ref(worktree, kept)
            return Published(move.why, branch)
        return Published(f"{move.why}; the work is kept at {kept}", kept)
    git.delete_ref(worktree, kept)
    on_top = "" if move.own else " on top of commits not made by nightshift"
    note = f"committed {move.new[:10]} on {branch}{on_top}"
    if settings.mode == "local":
        return Published(note, branch)
    if settings.mode == "push":
        return Published(f"{note}, pushed", branch)
    pr = open_or_update_pr(spec, conn, base.removeprefix(f"{settings.remote}/"),
                           pr_body(spec, result, meta))
    return Published(f"{note}; {pr}", pr.split(": ", 1)[1])


def _place(spec: TaskSpec, conn: Conn, worktree: git.Worktree, branch: str,
           commit: str) -> branches.Move | branches.Left:
    """Put the task's commit on its branch, and push it, unless that would move a branch
    checked out somewhere or overwrite commits not made by nightshift."""
    where = git.checked_out(worktree, branch)
    if where is not None:
        return branches.Left(f"{branch} is checked out in {where}: left as is", True)
    move = branches.decide(worktree, conn, spec, branch, commit)
    if isinstance(move, branches.Left):
        return move
    if spec.project.publish.mode != "local":
        git.push(worktree, spec.project.publish.remote, branch, move.new, move.lease)
    branches.record(conn, spec.project.path, branch, move)
    git.set_ref(worktree, f"refs/heads/{branch}", move.new, move.local)
    return move
