"""Fleet benchmark: 3 machines x `doit run -n 4` on one PostgreSQL ledger over 60 projects,
against one machine with `-n 12` on its SQLite file.

Each machine is a separate `doit run` process with its own NIGHTSHIFT_HOME and
NIGHTSHIFT_HOST_ID; the agent is a /bin/sh script that sleeps 0.3 s per phase.

  makespan      first task start -> last task end, from the ledger
  lower bound   total task time / 12 (the K of the whole fleet), from the same rows
  round trips   statements sent to the database per task, by every process of every machine
  db ms/task    time spent waiting for the database per task, likewise

The counts come from a sitecustomize.py that this script puts on PYTHONPATH: it wraps the
two ledger classes' execute/executemany/begin to count and time them, and writes each
process's totals on close and at exit. Nothing in nightshift itself is instrumented.

Usage: python bench/fleet.py [--server postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
PROJECTS, MACHINES, K = 60, 3, 4

AGENT = """#!/bin/sh
sleep 0.3
case "$1" in
  *"plan phase"*) echo '{"description": "bench", "steps": [], "files": []}' ;;
  *"implement phase"*) echo '{"summary": "bench", "files_modified": []}' ;;
  *) echo '{"passed": true, "feedback": "ok", "issues": []}' ;;
esac
"""

COUNTER = '''
import atexit, json, os, time
from nightshift_tasks import db, postgres
_out = os.environ["BENCH_DB_STATS"]
_n = [0, 0.0]

def _save():
    if _n[0]:
        with open(os.path.join(_out, f"{os.getpid()}.json"), "w") as fh:
            json.dump(_n, fh)

def _timed(cls, name):
    real = getattr(cls, name)
    def call(self, *args):
        start = time.perf_counter()
        try:
            return real(self, *args)
        finally:
            _n[0] += 1
            _n[1] += time.perf_counter() - start
    setattr(cls, name, call)

for _cls in (db.Ledger, postgres.Ledger):
    for _name in ("execute", "executemany"):
        _timed(_cls, _name)
_timed(postgres.Ledger, "begin")
for _cls in (db.Ledger, postgres.Ledger):
    _close = _cls.close
    def _closing(self, _close=_close):
        _save()
        return _close(self)
    _cls.close = _closing
os.register_at_fork(after_in_child=lambda: _n.__setitem__(slice(None), [0, 0.0]))
atexit.register(_save)
'''


def _repos(root: Path) -> list[Path]:
    out = []
    for i in range(PROJECTS):
        repo = root / "repos" / f"p{i:02}"
        repo.mkdir(parents=True)
        (repo / "README.md").write_text(f"# p{i:02}\n")
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        subprocess.run(["git", "add", "."], cwd=repo, check=True)
        subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid", "commit",
                        "-q", "-m", "init"], cwd=repo, check=True)
        out.append(repo)
    return out


def _config(root: Path, repos: list[Path], database: str | None) -> Path:
    import yaml

    agent = root / "agent"
    agent.write_text(AGENT)
    agent.chmod(0o755)
    data: dict[str, Any] = {
        "providers": {"preference": ["command"],
                      "command": {"enabled": True, "timeout": "1m", "argv": [str(agent), "{prompt}"]}},
        "tasks": {"enabled": ["lint-fix"]}, "budget": {"weekly_tokens": 100_000_000},
        "projects": [{"path": str(r)} for r in repos],
    }
    if database:  # a fleet names its projects by URL and pushes its work to them
        data["state"] = {"database": database}
        data["projects"] = [{"url": r.as_uri()} for r in repos]
        data["publish"] = {"mode": "push", "allowed_owners": [repos[0].parent.name]}
    path = root / f"nightshift-{'pg' if database else 'sqlite'}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _machines(root: Path, config: Path, hosts: list[str], k: int, stats: Path) -> float:
    site = root / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(COUNTER)
    procs = []
    started = time.monotonic()
    for host in hosts:
        env = {key: v for key, v in os.environ.items() if not key.startswith("NIGHTSHIFT_")}
        env.update(NIGHTSHIFT_HOME=str(root / f"home-{host}"), NIGHTSHIFT_HOST_ID=host,
                   XDG_CONFIG_HOME=str(root / "xdg"), BENCH_DB_STATS=str(stats),
                   PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "run", "-n", str(k),
             f"config={config}"], cwd=root, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        if proc.returncode:
            raise SystemExit(f"a machine failed ({proc.returncode}): {err[-2000:]}")
    return time.monotonic() - started


def _measure(location: str, stats: Path, wall: float, fleet_k: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from nightshift_tasks import db

    conn = db.connect(location)
    rows = conn.execute("SELECT started_at, ended_at FROM attempts WHERE status = 'completed'").fetchall()
    conn.close()
    spans = [(datetime.fromisoformat(r["started_at"]).timestamp(),
              datetime.fromisoformat(r["ended_at"]).timestamp()) for r in rows]
    makespan = max(e for _, e in spans) - min(s for s, _ in spans)
    bound = sum(e - s for s, e in spans) / fleet_k
    counts = [json.loads(p.read_text()) for p in stats.glob("*.json")]
    trips, seconds = sum(c[0] for c in counts), sum(c[1] for c in counts)
    return {"tasks": len(rows), "wall s": round(wall, 1), "makespan s": round(makespan, 1),
            "lower bound s": round(bound, 1), "ratio": round(makespan / bound, 2),
            "round trips/task": round(trips / len(rows), 1),
            "db ms/task": round(seconds * 1000 / len(rows), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    opts = parser.parse_args()
    import psycopg

    results = []
    with tempfile.TemporaryDirectory(prefix="nst-bench-fleet-") as tmp:
        root = Path(tmp)
        repos = _repos(root)
        name = f"nst_bench_{uuid.uuid4().hex[:8]}"
        admin = psycopg.connect(opts.server, autocommit=True)
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = opts.server.rsplit("/", 1)[0] + f"/{name}"
            stats = root / "stats-pg"
            stats.mkdir()
            wall = _machines(root, _config(root, repos, url), [f"m{i}" for i in range(MACHINES)], K,
                             stats)
            results.append({"ledger": f"PostgreSQL, {MACHINES} machines x -n {K}",
                            **_measure(url, stats, wall, MACHINES * K)})
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            admin.close()
        stats = root / "stats-sqlite"
        stats.mkdir()
        wall = _machines(root, _config(root, repos, None), ["solo"], MACHINES * K, stats)
        results.append({"ledger": f"SQLite, 1 machine x -n {MACHINES * K}",
                        **_measure(str(root / "home-solo" / "state.db"), stats, wall, MACHINES * K)})
    print(f"{PROJECTS} projects, one task each (3 agent calls of 0.3 s); {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    print(tabulate([list(r.values()) for r in results], headers=list(results[0])))


if __name__ == "__main__":
    main()
