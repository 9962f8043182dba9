"""Where a task's commit goes without overwriting anyone's work.

nightshift replaces a task branch only when all it would replace is its own: the commit it
last set the branch to (the ledger's branch_heads), or, when the ledger has no record of the
branch (a fresh ledger), commits that all carry its trailers. Commits of anyone else on the
branch (a reviewer's fix-up, a rebase) stay: the new work is merged on top of them when it
merges cleanly, else the branch is left as is. Fetching the branch a moment before pushing
proves nothing about whose it is, so that is never the test.
"""

from __future__ import annotations

from dataclasses import dataclass

from nightshift_tasks import git, state
from nightshift_tasks.db import Conn
from nightshift_tasks.spec import TaskSpec

KEPT = "refs/nightshift/kept"  # + /<branch>/<run id>: work that was not published


@dataclass(frozen=True)
class Move:
    """Set the branch (the remote's, or the local one in local mode) from `old` to `new`,
    and the local branch from `local` ("" when a branch does not exist)."""

    new: str
    old: str
    own: bool  # beyond the base, the branch then holds nightshift's commits alone
    local: str

    @property
    def lease(self) -> str | None:
        """For a push: what it may replace (its own earlier version); None when the new
        commit builds on the branch, where only a fast-forward may go through."""
        return self.old if self.own else None


@dataclass(frozen=True)
class Left:
    """The branch is left as is; `keep`: the work is not on it, so it stays on a side ref."""

    why: str
    keep: bool


def recorded(conn: Conn, path: str, branch: str) -> tuple[str, bool] | None:
    """(commit, own) nightshift last set the branch to, or None."""
    row = conn.execute("SELECT commit_id, own FROM branch_heads WHERE project_path = ? AND "
                       "branch = ?", (path, branch)).fetchone()
    return None if row is None else (str(row["commit_id"]), bool(row["own"]))


def record(conn: Conn, path: str, branch: str, move: Move) -> None:
    with state.write(conn):
        conn.execute("INSERT INTO branch_heads (project_path, branch, commit_id, own, at) VALUES "
                     "(?, ?, ?, ?, ?) ON CONFLICT (project_path, branch) DO UPDATE SET "
                     "commit_id = excluded.commit_id, own = excluded.own, at = excluded.at",
                     (path, branch, move.new, int(move.own), state.stamp(state.now())))


def _ours(worktree: git.Worktree, tip: str, last: tuple[str, bool] | None, base: str,
          slug: str) -> bool:
    """Whether everything on `tip` beyond the base is nightshift's own work for the task."""
    if last is not None:
        return last == (tip, True)
    return git.trailers_only(worktree, tip, base, slug)


def decide(worktree: git.Worktree, conn: Conn, spec: TaskSpec,
           branch: str, commit: str) -> Move | Left:
    """What becomes of `commit`, the task's new work on top of its base, on `branch`."""
    path, slug, settings = spec.project.path, spec.slug, spec.project.publish
    remote = None if settings.mode == "local" else settings.remote
    base, last = f"{commit}~1", recorded(conn, path, branch)
    local = git.tip(worktree, f"refs/heads/{branch}")
    tip = local if remote is None else git.remote_tip(worktree, remote, branch)
    if tip is None or _ours(worktree, tip, last, base, slug):
        move = Move(commit, tip or "", True, local or "")
    else:
        merged = git.merge_onto(worktree, tip, commit,
                                worktree.git("log", "-1", "--format=%B", commit))
        if merged is None:
            return Left(f"{branch} has commits not made by nightshift: left as is", True)
        if merged == tip:
            return Left(f"{branch} has commits not made by nightshift and already holds this "
                        "work: left as is", False)
        move = Move(merged, tip, False, local or "")
    if remote is not None and local is not None and not (
            git.contains(worktree, move.new, local) or _ours(worktree, local, last, base, slug)):
        return Left(f"{branch} has commits not made by nightshift in {path}: left as is", True)
    return move
