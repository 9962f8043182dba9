"""A simulated fleet for tests/test_fleet.py and bench/fleet.py: machines are separate
`doit run -n K` processes, each with its own NIGHTSHIFT_HOME and NIGHTSHIFT_HOST_ID, on one
config whose state.database is a PostgreSQL URL (or, for the single-machine comparison, the
default SQLite file)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nightshift_tasks import db
from tests.conftest import DODO, Env

TASKS = ["lint-fix", "docs-backfill"]
# A fleet's url projects push their work (it would otherwise stay in one machine's mirror);
# the owner of file:///…/repos/pNN is the directory that holds it.
PUBLISH = {"mode": "push", "allowed_owners": ["repos"]}


def project_entry(repo: Path, fleet: bool) -> dict[str, Any]:
    """How the config names a project: by URL in a fleet (a path exists on one machine only),
    by path on one machine."""
    return {"url": repo.as_uri()} if fleet else {"path": str(repo)}


def fleet_config(env: Env, repos: list[Path], database: str | None, **sections: Any) -> None:
    """The one config every machine runs. In a fleet, work is pushed to the URL (a url
    project's commits would otherwise stay in one machine's mirror)."""
    state = {"database": database, "lease": "4s"} if database else {}
    if database:
        sections["publish"] = {**PUBLISH, **sections.get("publish", {})}
    env.write_config({"projects": [project_entry(r, bool(database)) for r in repos],
                      "tasks": {"enabled": TASKS}, "schedule": {"max_tasks": len(TASKS)},
                      **({"state": state} if state else {}),
                      **sections})


@dataclass
class Machine:
    """One simulated machine running `doit run -n K` from its own cron."""

    env: Env
    host: str

    @property
    def home(self) -> Path:
        return self.env.tmp / f"home-{self.host}"

    def start(self, k: int, **extra: str) -> subprocess.Popen[str]:
        environ = self.env.environ(**extra)
        environ.update(NIGHTSHIFT_HOME=str(self.home), NIGHTSHIFT_HOST_ID=self.host)
        out = (self.env.tmp / f"{self.host}.out").open("a")
        return subprocess.Popen(
            [sys.executable, "-m", "doit", "-f", str(DODO), "run", "-n", str(k),
             f"config={self.env.config}"], cwd=self.env.tmp, env=environ, stdout=out,
            stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """One of our commands (status, budget) as run on this machine."""
        environ = self.env.environ()
        environ.update(NIGHTSHIFT_HOME=str(self.home), NIGHTSHIFT_HOST_ID=self.host)
        return subprocess.run([sys.executable, "-m", "nightshift_tasks", *args,
                               f"config={self.env.config}"], cwd=self.env.tmp, env=environ,
                              capture_output=True, text=True, timeout=120)

    def output(self) -> str:
        return (self.env.tmp / f"{self.host}.out").read_text()


def run_all(machines: list[Machine], k: int, **extra: str) -> list[int]:
    """Start every machine at once and wait for all of them: their exit codes."""
    procs = [m.start(k, **extra) for m in machines]
    return [p.wait(timeout=600) for p in procs]


def kill_machine(proc: subprocess.Popen[str]) -> None:
    """Power loss: SIGKILL to the machine's doit and every worker, nothing recorded."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def attempts(location: str) -> list[Any]:
    """Every attempt that started, with its chain's project and its host."""
    conn = db.connect(location)
    try:
        return conn.execute("SELECT project_path, task, status, host, started_at, ended_at, "
                            "agent_pgid, error FROM attempts WHERE status != 'planned' "
                            "ORDER BY id").fetchall()
    finally:
        conn.close()
