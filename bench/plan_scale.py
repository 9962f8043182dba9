"""Plan-time benchmark: how long nightshift takes to plan N projects, against bare doit.

For each N it plans N one-commit git repositories with 2 tasks each on the `command`
provider, and a bare doit dodo.py with the same graph (a group and 2 chained subtasks per
project), and prints:

  list s       wall time of `doit list` (nightshift: `python -m nightshift_tasks list`)
  first agent  wall time from `doit run -n 16` starting to the first agent starting (the
               run is then interrupted); bare doit: to its first action starting
  CPU s        user + system time of `doit list` (steadier than wall time on a busy machine)
  RSS MB       peak resident memory of the largest process of that command (for the run:
               of its main process or the largest worker it reaped)
  ratio        nightshift / bare doit

The repositories are made once per N (copies of one template repository) and cached under
$NIGHTSHIFT_BENCH_CACHE (default ~/.cache/nightshift-bench).

Usage: python bench/plan_scale.py [--n 100 1000 10000] [--repeat R]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from parallel import fake_agent, machine  # bench/ is sys.path[0] when run as a script
from tabulate import tabulate

TASKS = ["lint-fix", "bug-finder"]
LIST_TARGET_S_PER_1000 = 1.0
CACHE = Path(os.environ.get("NIGHTSHIFT_BENCH_CACHE", Path.home() / ".cache" / "nightshift-bench"))
GIT_ID = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "-c", "commit.gpgsign=false"]
RUN_TIMEOUT_S = 600.0

# Records when it starts, then waits to be interrupted with the run.
AGENT = """#!/bin/sh
date +%s.%N >> "$BENCH_RECORD"
exec sleep 600
"""

# The baseline: the same groups and chains; the action records its start and waits.
DODO = """import json
import time
from pathlib import Path

P = json.loads(Path(__file__).with_name("params.json").read_text())
DOIT_CONFIG = {"dep_file": P["dep_file"], "backend": "sqlite3", "par_type": "process",
               "verbosity": 0}


def act(repo):
    with open(P["record"], "a") as out:
        out.write(f"{time.time()}\\n")
    time.sleep(600)


def task_projects():
    for i, repo in enumerate(P["repos"]):
        yield {"basename": f"p{i:05d}", "name": None, "doc": repo}
        previous = None
        for slug in P["tasks"]:
            yield {"basename": f"p{i:05d}", "name": slug, "actions": [(act, [repo])],
                   "task_dep": [previous] if previous else [], "verbosity": 0}
            previous = f"p{i:05d}:{slug}"
"""


@dataclass
class Measure:
    seconds: float
    rss_mb: float
    cpu: float = 0.0  # user + system seconds; on a loaded machine steadier than the wall time


def die(message: str) -> None:
    sys.exit(f"bench/plan_scale.py: {message}")


def repos(n: int) -> list[str]:
    """N one-commit repositories, made once: copies of a template repository."""
    root = CACHE / f"plan-scale-n{n}"
    paths = [str(root / f"p{i:05d}") for i in range(n)]
    if (root / ".complete").exists():
        return paths
    shutil.rmtree(root, ignore_errors=True)
    template = root / "template"
    template.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--template=", "-b", "main"], cwd=template, check=True)
    (template / "README.md").write_text("# bench\n")
    subprocess.run(["git", "add", "README.md"], cwd=template, check=True)
    subprocess.run(["git", *GIT_ID, "commit", "-q", "-m", "init"], cwd=template, check=True)
    started = time.perf_counter()
    for path in paths:
        shutil.copytree(template, path, symlinks=True)
    shutil.rmtree(template)
    (root / ".complete").touch()
    print(f"  made {n} repositories in {time.perf_counter() - started:.1f} s under {root}",
          file=sys.stderr, flush=True)
    return paths


def wait_rss(proc: subprocess.Popen[bytes]) -> tuple[float, float]:
    """Wait for the process; (the peak RSS in MB of it or of its largest waited-for child,
    the CPU seconds they used)."""
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped here; Popen must not wait again
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def list_time(argv: list[str], cwd: Path, env: dict[str, str], expect: str) -> Measure:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    rss, cpu = wait_rss(proc)
    seconds = time.perf_counter() - started
    if expect.encode() not in out:
        die(f"{argv[-2:]}: {expect!r} not in its output\n{out[-2000:]!r}\n{err[-2000:]!r}")
    return Measure(seconds, rss, cpu)


def first_start(argv: list[str], cwd: Path, env: dict[str, str], record: Path) -> Measure:
    """Start a run, wait for the first agent (or action) to record its start, interrupt."""
    record.unlink(missing_ok=True)
    log = (cwd / "run.log").open("wb")
    started_wall, deadline = time.time(), time.monotonic() + RUN_TIMEOUT_S
    proc = subprocess.Popen(argv, cwd=cwd, env={**env, "BENCH_RECORD": str(record)},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    while not (record.exists() and record.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            die(f"{argv[-3:]}: no agent started (exit {proc.returncode}); see {cwd / 'run.log'}")
        time.sleep(0.005)  # a benchmark's poll: 5 ms resolution is enough here
    first = float(record.read_text().split()[0])
    os.killpg(proc.pid, signal.SIGINT)
    stop = threading.Timer(60, os.killpg, (proc.pid, signal.SIGKILL))  # if the interrupt hangs
    stop.start()
    rss, _ = wait_rss(proc)
    stop.cancel()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything the interrupt left behind
    log.close()
    return Measure(first - started_wall, rss)


def config(work: Path, agent: Path, paths: list[str]) -> Path:
    path = work / "nightshift.yaml"
    path.write_text(json.dumps({  # JSON is YAML
        "projects": [{"path": p} for p in paths],
        "schedule": {"max_tasks": len(TASKS)},
        "budget": {"weekly_tokens": 10**12},
        "tasks": {"enabled": TASKS},
        "providers": {"preference": ["command"],
                      "command": {"enabled": True, "timeout": "20m", "argv": [str(agent), "{prompt}"]}},
    }, indent=1))
    return path


def best(runs: list[Measure]) -> Measure:
    return min(runs, key=lambda m: m.seconds)


def row(n: int, root: Path, agent: Path, repeat: int) -> list[object]:
    paths = repos(n)
    work = root / f"n{n}"
    work.mkdir()
    cfg = config(work, agent, paths)
    env = {**os.environ, "NIGHTSHIFT_HOME": str(work / "home")}
    ns = [sys.executable, "-m", "nightshift_tasks"]
    ns_list = best([list_time([*ns, "list", f"config={cfg}"], work, env, "p00000")
                    for _ in range(repeat)])
    ns_run = []
    for r in range(repeat):
        run_env = {**env, "NIGHTSHIFT_HOME": str(work / f"home-run{r}")}  # a fresh ledger each
        ns_run.append(first_start([*ns, "run", "-n", "16", f"config={cfg}"], work, run_env,
                                  work / "ns.rec"))
    (work / "params.json").write_text(json.dumps({
        "dep_file": str(work / "bare.sqlite"), "repos": paths, "tasks": TASKS,
        "record": str(work / "bare.rec")}))
    (work / "dodo.py").write_text(DODO)
    bare = [sys.executable, "-m", "doit", "-f", str(work / "dodo.py")]
    bare_list = best([list_time([*bare, "list"], work, dict(os.environ), "p00000")
                      for _ in range(repeat)])
    bare_run = best([first_start([*bare, "run", "-n", "16"], work, dict(os.environ), work / "bare.rec")
                     for _ in range(repeat)])
    first = best(ns_run)
    target = LIST_TARGET_S_PER_1000 * max(n, 1000) / 1000
    return [n, ns_list.seconds, bare_list.seconds, ns_list.seconds / bare_list.seconds,
            ns_list.cpu, bare_list.cpu,
            first.seconds, bare_run.seconds, first.seconds / bare_run.seconds,
            ns_list.rss_mb, first.rss_mb, bare_list.rss_mb,
            "ok" if ns_list.seconds <= target else f"list>{target:g}s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000, 10000], help="project counts")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the best is kept")
    args = parser.parse_args()
    print(f"{machine()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="ns-plan-scale-") as tmp:
        root = Path(tmp).resolve()
        agent = fake_agent(root, AGENT)
        rows = []
        for n in args.n:
            rows.append(row(n, root, agent, args.repeat))
            print(f"  N={n} done", file=sys.stderr, flush=True)
    print(tabulate(rows, floatfmt=".2f", headers=[
        "N", "list s", "bare list s", "list ratio", "list CPU s", "bare list CPU s", "first agent s",
        "bare first s", "first ratio", "list RSS MB", "run RSS MB", "bare list RSS MB", "target"]),
        flush=True)
    print(f"target: `doit list` <= {LIST_TARGET_S_PER_1000:g} s per 1,000 projects (at least 1,000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
