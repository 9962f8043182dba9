"""Parallel scheduling benchmark: nightshift's `run -n K` against a bare doit run.

For each (K workers, N projects) cell it runs nightshift on N fresh git repositories with a
fake agent (a /bin/sh script that sleeps 0.2 s and records start, end and cwd), then a bare
doit dodo.py with the same task graph that runs the same agent three times per task.

  makespan     first agent start -> last agent end, from the agent's records
  lower bound  max(longest project chain, total agent time / K), from the same records
  bare ratio   the same makespan / lower bound of the bare doit run: what doit and the
               agent's own start-up cost without nightshift
  overhead     (nightshift wall - bare doit wall) / agent calls
  cpu          user + system seconds of the whole run, children included, for nightshift
               and bare doit: on a machine with fewer cores than K, the extra CPU per task
               is what stretches the makespan
  gaps         from the ledger's attempt stamps (started at dispatch, ended after publish)
               and the agent's records, medians in ms:
                 dispatch->agent   attempt start -> its first agent call starts
                 between calls     one phase's agent exit -> the next phase's agent start
                 agent->end        last agent exit -> attempt recorded as ended
                 end->dispatch     a worker's attempt ended -> the next attempt started
                                   (the i-th start after the first K pairs with the
                                   (i-K)-th end: doit hands a freed worker the next task)

  split        below the table: each ratio's excess over 1 as doit's own (the bare ratio
               less 1, same cell) and nightshift's (the rest); and, for each K run with
               two N, the CPU per task and the fixed CPU per run of both, solved from the
               two cells (the burn table says what a millisecond of CPU per task costs)

  --burn MS    bare doit again with each task also burning MS ms of CPU in its worker
               (a third before each agent call): the ratio a given amount of per-task
               CPU besides the agent allows on this machine, whoever spends it

Usage: python bench/parallel.py [--quick] [--repeat R] [--cell K:N ...] [--burn MS ...]
"""

from __future__ import annotations

import argparse
import compileall
import itertools
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tabulate import tabulate

import nightshift_tasks

PHASES = ("plan", "implement", "review")
TASKS = ["lint-fix"]  # schedule.max_tasks = 1: one maintenance task per project
RATIO_TARGET = 1.10
OVERHEAD_TARGET_MS = 10.0
GRID = [(k, n) for k in (1, 4, 16) for n in (8, 64)]
CPU, BARE_CPU = 10, 11  # the columns of a cell's row holding each run's CPU seconds

AGENT = """#!/bin/sh
s=$(date +%s.%N)
sleep 0.2
e=$(date +%s.%N)
echo "$s $e $PWD" >> "$BENCH_RECORD"
case "$1" in
  *"plan phase"*) echo '{"description": "bench", "steps": [], "files": []}' ;;
  *"implement phase"*) echo '{"summary": "bench", "files_modified": []}' ;;
  *"review phase"*) echo '{"passed": true, "feedback": "ok", "issues": []}' ;;
  *) echo "fake agent: no phase in prompt" >&2; exit 2 ;;
esac
"""

# The baseline: same groups, same chaining, same agent calls; no ledger, logs or prompts.
DODO = """import json
import subprocess
import time
from pathlib import Path

P = json.loads(Path(__file__).with_name("params.json").read_text())
DOIT_CONFIG = {"dep_file": P["dep_file"], "backend": "sqlite3", "par_type": "process",
               "verbosity": 0}


def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def call_agent(repo):
    for phase in ("plan", "implement", "review"):
        burn(P["burn_ms"] / 3000)  # --burn: CPU a task spends besides its agent calls
        subprocess.run([P["agent"], f"# nightshift: {phase} phase"], cwd=repo, check=True,
                       capture_output=True)


def task_projects():
    for i, repo in enumerate(P["repos"]):
        yield {"basename": f"p{i:03d}", "name": None}
        previous = None
        for slug in P["tasks"]:
            yield {"basename": f"p{i:03d}", "name": slug, "actions": [(call_agent, [repo])],
                   "task_dep": [previous] if previous else [], "verbosity": 0}
            previous = f"p{i:03d}:{slug}"
"""


@dataclass
class Run:
    wall: float
    cpu: float
    records: list[tuple[float, float, str]]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def die(message: str) -> None:
    sys.exit(f"bench/parallel.py: {message}")


def machine() -> str:
    """The line every bench starts with: what the numbers were measured on."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"machine: nproc={cpus}, python {platform.python_version()} "
            f"({platform.python_implementation()}), {platform.system()} {platform.release()}")


def fake_agent(root: Path, script: str = AGENT) -> Path:
    """The fake agent as an executable file in `root`."""
    agent = root / "fake-agent"
    agent.write_text(script)
    agent.chmod(0o755)
    return agent


def make_repos(root: Path, count: int) -> list[str]:
    repos = []
    for i in range(count):
        repo = root / "repos" / f"p{i:03d}"
        repo.mkdir(parents=True)
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid",
                        "-c", "commit.gpgsign=false", "commit", "-q", "--allow-empty", "-m", "init"],
                       cwd=repo, check=True)
        repos.append(str(repo))
    return repos


def timed(argv: list[str], cwd: Path, env: dict[str, str], record: Path, label: str,
          expected: int) -> Run:
    record.unlink(missing_ok=True)
    start, cpu = time.perf_counter(), children_cpu()
    proc = subprocess.run(argv, cwd=cwd, env={**env, "BENCH_RECORD": str(record)},
                          capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu
    if proc.returncode != 0:
        die(f"{label}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    lines = record.read_text().splitlines() if record.exists() else []
    records = [(float(s), float(e), cwd_) for s, e, cwd_ in (ln.split(" ", 2) for ln in lines)]
    if len(records) != expected:
        die(f"{label}: {len(records)} agent calls recorded, expected {expected} (N*3)")
    return Run(wall, cpu, records)


def bounds(records: list[tuple[float, float, str]], repos: list[str], k: int) -> tuple[float, float]:
    """(makespan, lower bound) of the recorded agent calls."""
    chains = dict.fromkeys(repos, 0.0)
    by_name = {Path(r).name: r for r in repos}
    for start, end, cwd in records:
        # nightshift runs the agent in a worktree named <project>--<task>--<pid>.
        repo = cwd if cwd in chains else by_name.get(Path(cwd).name.split("--")[0])
        if repo is None:
            die(f"agent ran in {cwd}, which is not one of the benchmark repositories")
        chains[repo] += end - start
    if any(abs(v) < 1e-9 for v in chains.values()):
        die("some project recorded no agent call")
    makespan = max(e for _, e, _ in records) - min(s for s, _, _ in records)
    return makespan, max(max(chains.values()), sum(chains.values()) / k)


def _ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def gaps(db: Path, records: list[tuple[float, float, str]], k: int) -> list[float]:
    """Median dispatch->agent, between-calls, agent->end and end->dispatch gaps in ms."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute("SELECT project_path, started_at, ended_at FROM attempts "
                        "WHERE task != 'forget' ORDER BY started_at").fetchall()
    conn.close()
    calls: dict[str, list[tuple[float, float]]] = {}
    for start, end, cwd in records:
        calls.setdefault(Path(cwd).name.split("--")[0], []).append((start, end))
    first, between, last = [], [], []
    spans = []
    for project, started, ended in rows:
        begin = datetime.fromisoformat(started).timestamp()
        finish = datetime.fromisoformat(ended).timestamp()
        spans.append((begin, finish))
        mine = sorted(c for c in calls.get(Path(project).name, []) if begin <= c[0] <= finish)
        if not mine:
            die(f"attempt of {project} recorded no agent call between its stamps")
        first.append(mine[0][0] - begin)
        last.append(finish - mine[-1][1])
        between += [b[0] - a[1] for a, b in itertools.pairwise(mine)]
    starts = sorted(b for b, _ in spans)
    ends = sorted(f for _, f in spans)
    handoff = [starts[i] - ends[i - k] for i in range(k, len(starts))]
    return [_ms(first), _ms(between), _ms(last), _ms(handoff)]


def write_config(config: Path, repos: list[str], agent: Path) -> Path:
    config.write_text(json.dumps({  # JSON is YAML
        "projects": [{"path": r} for r in repos],
        "schedule": {"max_tasks": len(TASKS)},
        # The fake agent reports no usage; a budget whose reservations never run out, so the
        # scheduling is measured, not the budget.
        "budget": {"weekly_tokens": 10**12},
        "tasks": {"enabled": TASKS},
        "providers": {"preference": ["command"],
                      "command": {"enabled": True, "timeout": "2m", "argv": [str(agent), "{prompt}"]}},
    }, indent=1))
    return config


def cell(root: Path, agent: Path, repos: list[str], k: int, tag: str) -> list[Any]:
    n, calls = len(repos), len(repos) * len(TASKS) * len(PHASES)
    work = root / tag
    work.mkdir()
    config = write_config(work / "nightshift.yaml", repos, agent)
    env = {**os.environ, "NIGHTSHIFT_HOME": str(work / "home")}
    ns = timed([sys.executable, "-m", "nightshift_tasks", "run", "-n", str(k), f"config={config}"],
               work, env, work / "ns.rec", f"nightshift K={k} N={n}", calls)
    bare = bare_run(work, agent, repos, k, 0.0)
    bare_makespan, bare_lower = bounds(bare.records, repos, k)  # doit's own share
    makespan, lower = bounds(ns.records, repos, k)
    ratio = makespan / lower
    overhead_ms = (ns.wall - bare.wall) / calls * 1000
    flags = [f"ratio>{RATIO_TARGET:.2f}"] * (ratio > RATIO_TARGET)
    flags += [f"overhead>{OVERHEAD_TARGET_MS:g}ms"] * (overhead_ms > OVERHEAD_TARGET_MS)
    return [k, n, calls, makespan, lower, ratio, bare_makespan / bare_lower, ns.wall, bare.wall,
            overhead_ms, ns.cpu, bare.cpu,
            *gaps(work / "home" / "state.db", ns.records, k), ", ".join(flags) or "ok"]


def bare_run(work: Path, agent: Path, repos: list[str], k: int, burn_ms: float) -> Run:
    """Bare doit on the same graph; each task also burns `burn_ms` of CPU in its worker."""
    calls = len(repos) * len(TASKS) * len(PHASES)
    (work / "params.json").write_text(json.dumps({"dep_file": str(work / f"bare-{burn_ms:g}.sqlite"),
                                                  "agent": str(agent), "repos": repos, "tasks": TASKS,
                                                  "burn_ms": burn_ms}))
    (work / "dodo.py").write_text(DODO)
    return timed([sys.executable, "-m", "doit", "-f", str(work / "dodo.py"), "run", "-n", str(k)],
                 work, dict(os.environ), work / "bare.rec", f"bare doit K={k} N={len(repos)}", calls)


def burned(root: Path, agent: Path, repos: list[str], k: int, burn_ms: float, tag: str) -> list[Any]:
    """How bare doit's ratio grows with CPU spent per task besides the agent: on a machine
    with fewer cores than K, the ratio nightshift's own per-task CPU allows at best."""
    work = root / tag
    work.mkdir()
    run = bare_run(work, agent, repos, k, burn_ms)
    makespan, lower = bounds(run.records, repos, k)
    return [k, len(repos), burn_ms, makespan / lower, (run.cpu / len(repos)) * 1000]


def cell_arg(text: str) -> tuple[int, int]:
    k, sep, n = text.partition(":")
    if not (sep and k.isdigit() and n.isdigit() and int(k) > 0 and int(n) > 0):
        raise argparse.ArgumentTypeError(f"K:N, two positive integers, not {text!r}")
    return int(k), int(n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only K=4, N=8 (smoke test)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the best is kept")
    parser.add_argument("--burn", type=float, nargs="+", default=[], metavar="MS",
                        help="also run bare doit with each task burning MS ms of CPU")
    parser.add_argument("--cell", action="append", type=cell_arg, metavar="K:N", default=[],
                        help="run only this cell (repeatable), e.g. --cell 16:64")
    args = parser.parse_args()
    grid = [(4, 8)] if args.quick else args.cell or GRID
    print(machine(), flush=True)
    # doit and every other installed package come with their bytecode; a checkout installed
    # with `pip install -e` has none, and PYTHONDONTWRITEBYTECODE (set on this machine) keeps
    # it so: each run would compile nightshift's modules anew (about 0.1 s), which no
    # installed copy does.
    compileall.compile_dir(str(Path(nightshift_tasks.__file__).parent), quiet=1)
    with tempfile.TemporaryDirectory(prefix="ns-bench-") as tmp:
        root = Path(tmp).resolve()  # resolved, so it matches the agent's $PWD
        agent = fake_agent(root)
        all_repos = make_repos(root, max(n for _, n in grid))
        rows, burns = [], []
        for k, n in grid:
            runs = [cell(root, agent, all_repos[:n], k, f"k{k}-n{n}-{r}") for r in range(args.repeat)]
            rows.append(min(runs, key=lambda row: float(row[7])))
            for ms in args.burn:
                tries = [burned(root, agent, all_repos[:n], k, ms, f"k{k}-n{n}-burn{ms:g}-{r}")
                         for r in range(args.repeat)]
                burns.append(min(tries, key=lambda row: float(row[3])))
            print(f"  K={k:<2} N={n:<3} done", file=sys.stderr, flush=True)
    headers = ["K", "N", "calls", "makespan s", "lower bound s", "ratio", "bare ratio", "nightshift wall s",
               "baseline wall s", "overhead ms/call", "cpu s", "bare cpu s", "dispatch->agent ms",
               "between calls ms", "agent->end ms", "end->dispatch ms", "targets"]
    print(tabulate(rows, headers=headers, floatfmt=".3f"), flush=True)
    print(f"targets: ratio <= {RATIO_TARGET:.2f}, overhead <= {OVERHEAD_TARGET_MS:g} ms/call")
    print("\nsplit:")
    for row in rows:
        print(f"  K={row[0]:<2} N={row[1]:<3} ratio {row[5]:.3f} = 1 + doit's own {row[6] - 1:.3f} "
              f"+ nightshift's {row[5] - row[6]:.3f}")
    for k, pair in itertools.groupby(sorted(rows, key=lambda row: (row[0], row[1])), lambda row: row[0]):
        cells = list(pair)
        if len(cells) >= 2:
            first, last = cells[0], cells[-1]
            n1, n2 = first[1], last[1]
            ns_task, bare_task = ((last[i] - first[i]) / (n2 - n1) for i in (CPU, BARE_CPU))
            print(f"  K={k:<2} cpu per task {ns_task * 1000:.1f} ms, bare doit {bare_task * 1000:.1f} "
                  f"ms (nightshift's {(ns_task - bare_task) * 1000:.1f} ms); fixed per run "
                  f"{first[CPU] - ns_task * n1:.2f} s, bare doit {first[BARE_CPU] - bare_task * n1:.2f} s")
    if burns:
        print("\nbare doit, each task also burning CPU in its worker:")
        print(tabulate(burns, headers=["K", "N", "burn ms/task", "ratio", "cpu ms/task"], floatfmt=".3f"))
    missed = sum(row[-1] != "ok" for row in rows)
    if missed:
        print(f"{missed} row(s) miss a target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
