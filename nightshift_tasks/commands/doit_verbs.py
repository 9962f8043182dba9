"""doit's own `forget` and `clean`, made to act on nightshift's state.

The daily guard reads the ledger (state.db), not doit's dependency file, so doit's forget
alone would change nothing; and what a crashed run leaves behind (worktrees, the run lock
file) is nothing doit's clean knows of. `nightshift-tasks` uses these commands, and so does
`doit` in a checkout, through pyproject.toml's [tool.doit.plugins.command].
"""

from __future__ import annotations

import sys
from pathlib import Path

from doit import cmd_clean, cmd_forget

from nightshift_tasks import graph, guard, leftovers, runlock, shutdown, state, storage
from nightshift_tasks.engine import Engine
from nightshift_tasks.paths import nightshift_home
from nightshift_tasks.process import alive

EXIT_USAGE = 2
EXIT_BUSY = 1


class Forget(cmd_forget.Forget):  # type: ignore[misc]
    doc_purpose = "let the next run run a project (or project:task) again today"
    doc_usage = "PROJECT[:TASK] ... | --all"
    doc_description = ("Clears the daily guard: today's finished tasks of each named project are "
                       "planned again (their history stays), and doit's own records are dropped.")

    def _execute(self, forget_sub: bool, forget_disable_default: bool, forget_all: bool) -> int:
        if self.sel_default_tasks and not forget_all:  # doit 0.37 raises a TypeError here
            self.dep_manager.close()
            print(f"{self.bin_name} forget: name what to forget: `forget <project>` or "
                  "`forget <project>:<task>` (`list` shows the names), or --all", file=sys.stderr)
            return EXIT_USAGE
        forgotten: list[str] = []
        remove, remove_all = self.dep_manager.remove, self.dep_manager.remove_all

        def record(name: str) -> None:
            forgotten.append(name)
            remove(name)

        def record_all() -> None:
            forgotten.extend(t.name for t in self.task_list)
            remove_all()

        self.dep_manager.remove, self.dep_manager.remove_all = record, record_all
        super()._execute(forget_sub, False, forget_all)
        return self.forget_ledger(forgotten)

    def forget_ledger(self, names: list[str]) -> int:
        """Plan again today's finished tasks of every project (or project:task) doit forgot."""
        engine = graph.load_engine()
        whole = {name for name in names if ":" not in name}
        some: dict[str, list[str]] = {}
        for project, _, slug in (name.partition(":") for name in names if ":" in name):
            some.setdefault(project, []).append(slug)
        day = state.now().date().isoformat()
        with storage.or_exit(engine.db_path):
            conn = guard.connection(str(engine.db_path), engine.config.db_lock_wait())
            for plan in engine.plan.projects:
                if plan.name not in whole and plan.name not in some:
                    continue
                again = state.forget_today(conn, plan.path, day,
                                           None if plan.name in whole else some[plan.name])
                print(f"nightshift: {plan.name}: " + (f"the next run runs {', '.join(again)} again today"
                                                      if again else "nothing finished today"))
        return 0


class Clean(cmd_clean.Clean):  # type: ignore[misc]
    doc_purpose = "remove worktrees and the run lock file that crashed runs left"
    doc_usage = ""
    doc_description = "Never touches a running run's files: with the run lock held it removes nothing."
    cmd_options = (cmd_clean.opt_clean_dryrun,)

    def _execute(self, dryrun: bool, pos_args: list[str] | None = None) -> int:
        self.dep_manager.close()
        if pos_args:
            print(f"{self.bin_name} clean: takes no task names ({' '.join(pos_args)}): it cleans up "
                  "after crashed runs of every project", file=sys.stderr)
            return EXIT_USAGE
        engine = graph.load_engine()
        home = nightshift_home()
        lock = home / "run.lock"
        if not runlock.acquire_probe(lock):
            stuck = shutdown.stuck(lock)
            why = f"it is stuck ({stuck}); the next run stops it" if stuck else "it is working"
            print(f"nightshift: a run holds {lock} ({runlock.holder(lock)}): {why}; nothing removed")
            return EXIT_BUSY
        repos = [p.mirror or p.path for p in engine.plan.projects if Path(p.mirror or p.path).is_dir()]
        removed = self.leftovers(home, repos, lock, engine, dryrun)
        verb = "would remove" if dryrun else "removed"
        for line in removed:
            print(f"nightshift: {verb} {line}")
        if not removed:
            print("nightshift: nothing to clean")
        return 0

    @staticmethod
    def leftovers(home: Path, repos: list[str], lock: Path, engine: Engine, dryrun: bool) -> list[str]:
        """What crashed runs left: worktrees whose process is gone, and the lock file. The lock
        is held (and new runs kept out) while the worktrees go."""
        left_by = f" (last held by {runlock.holder(lock)})" if lock.exists() else ""
        worktrees = home / "worktrees"
        if dryrun:
            entries = sorted(worktrees.iterdir()) if worktrees.is_dir() else []
            found = [e for e in entries if leftovers.orphaned(e, alive)]
        else:
            with storage.or_exit(lock):
                if runlock.acquire(lock, shutdown.progress_bound(engine.config)):
                    return []  # a run started meanwhile: its worktrees are not leftovers
                found = leftovers.prune(worktrees, repos, alive)
                lock.unlink()  # held until this process exits; a run starting now makes a new one
        lock_line = [f"run lock file {lock}{left_by}"] if left_by else []
        return [f"worktree {path}" for path in found] + lock_line
