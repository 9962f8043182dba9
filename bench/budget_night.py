"""Budget benchmark: how much of a night's token allowance `run -n K` spends, and by how much
it overshoots, when the agents' real usage is far from the estimates.

Each cell is a night of the real `python -m nightshift_tasks run -n K` over generated git
repositories (PROJECTS projects x the TASKS below, schedule.max_tasks = 3) with the `command`
provider. The agent is a /bin/sh script that answers each phase in the loop's format and
reports its usage through the protocol (the implement phase through $NIGHTSHIFT_USAGE_FILE,
plan and review through a last `NIGHTSHIFT_USAGE` line). What each (project, task) uses is
drawn, seeded, before the night: typical(tier) x exp(sigma x N(0, 1)), where typical is the
geometric middle of the task's cost tier, split 20 / 60 / 20 % over plan / implement /
review; an agent call sleeps 1 s per million tokens it reports (0.05 s to 0.4 s), so big
tasks overlap longer.

History: before the night, a warm-up run over WARM other projects without a budget
(ignore_budget=1) gives every task WARM measured runs drawn the same way, so the night's
estimates are learned ones. The night's config then sets budget.per_provider.command so
that the allowance is exactly ALLOWANCE (max_percent 100, reserve_percent 0, daily mode:
W / 7 - used today), which `budget --json` confirms.

Per cell, over its nights (one per seed; each seed has its own warm-up):
  work x      the night's drawn usage / the allowance (>= 2: more work than allowance)
  used %      the night's settled usage / the allowance: the lowest night (the mean)
  overshoot   settled usage past the allowance in the night where it is largest against
              that night's largest task (the largest task that ran), and that task
  completed, skipped   tasks per night (mean)
  fit at end  skipped tasks that would still have fit when the run ended, over all nights:
              the estimate the task would have reserved <= allowance - settled at the end
              (the target); in brackets by their drawn usage (for information only: nobody
              knows it in advance)

Usage: python bench/budget_night.py [--quick] [--seeds S] [--keep] [-k K ...] [--sigma S ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from parallel import fake_agent, make_repos  # bench/ is sys.path[0] when run as a script
from tabulate import tabulate

import nightshift_tasks
from nightshift_tasks.catalog import catalog_data

TASKS = ["lint-fix", "dead-code", "bug-finder"]  # low, medium and high cost tiers
PHASES = {"plan": 0.2, "implement": 0.6, "review": 0.2}
PROJECTS = 24
WARM = 10
ALLOWANCE = 3_000_000
GRID = [(k, s) for s in (0.3, 1.0) for k in (1, 4, 16)]
USED_TARGET = 0.90
SECONDS_PER_TOKEN = 1e-6
SLEEP_RANGE = (0.05, 0.4)

AGENT = r"""#!/bin/sh
case "$1" in
  *"# nightshift: plan phase"*) phase=plan ;;
  *"# nightshift: implement phase"*) phase=implement ;;
  *) phase=review ;;
esac
task=$(printf '%s\n' "$1" | sed -n 's/^Task: .* \[\(.*\)\]$/\1/p')
name=$(printf '%s\n' "$1" | sed -n 's/^Project: \([^ ]*\) (.*)$/\1/p')
set -- $(grep "^$name $task $phase " "$BENCH_DRAWS")
[ $# -eq 5 ] || { echo "bench agent: no draw for '$name' '$task' $phase" >&2; exit 2; }
sleep "$5"
out=$(( $4 / 5 ))
usage="{\"input_tokens\": $(( $4 - out )), \"output_tokens\": $out}"
case $phase in
  plan) echo '{"description": "bench", "steps": ["look"], "files": []}' ;;
  implement) echo '{"summary": "bench", "files_modified": []}' ;;
  review) echo '{"passed": true, "feedback": "ok", "issues": []}' ;;
esac
if [ $phase = implement ]; then printf '%s' "$usage" > "$NIGHTSHIFT_USAGE_FILE";
else echo "NIGHTSHIFT_USAGE $usage"; fi
"""
NEEDS = re.compile(r"needs ~([\d,]+) tokens")


@dataclass
class Night:
    """What one measured night did, read back from its ledger."""

    work: int  # drawn usage of every planned task
    settled: int
    largest: int  # the largest task that ran
    completed: int
    skipped: int
    fit_estimate: int  # skipped, yet estimate <= allowance - settled at the end
    fit_actual: int  # skipped, yet drawn usage <= allowance - settled at the end
    wall: float

    @property
    def overshoot(self) -> int:
        return max(0, self.settled - ALLOWANCE)


def die(message: str) -> NoReturn:
    sys.exit(f"bench/budget_night.py: {message}")


def typical(slug: str) -> float:
    """The geometric middle of the task's cost tier: the median of its drawn usage."""
    data = catalog_data()
    tier = data["cost_tiers"][next(t["cost"] for t in data["tasks"] if t["slug"] == slug)]
    return math.sqrt(tier["min_tokens"] * tier["max_tokens"])


def draw(sigma: float, seed: str, names: list[str]) -> dict[tuple[str, str], int]:
    """Seeded usage per (project, task), lognormal around the tier's typical value."""
    return {(name, slug): round(typical(slug) * math.exp(sigma * random.Random(
        f"{seed}:{sigma}:{name}:{slug}").gauss(0.0, 1.0))) for name in names for slug in TASKS}


def write_draws(path: Path, draws: dict[tuple[str, str], int]) -> None:
    """One line per agent call for the agent: project task phase tokens sleep."""
    lines = []
    for (name, slug), tokens in draws.items():
        split = {p: int(tokens * share) for p, share in PHASES.items()}
        split["implement"] += tokens - sum(split.values())
        for phase, part in split.items():
            sleep = min(SLEEP_RANGE[1], max(SLEEP_RANGE[0], part * SECONDS_PER_TOKEN))
            lines.append(f"{name} {slug} {phase} {part} {sleep:.3f}\n")
    path.write_text("".join(lines))


def write_config(path: Path, repos: list[str], agent: Path, weekly: int) -> Path:
    path.write_text(json.dumps({  # JSON is YAML
        "projects": [{"path": r} for r in repos],
        "schedule": {"max_tasks": len(TASKS)},
        "budget": {"mode": "daily", "max_percent": 100, "reserve_percent": 0,
                   "per_provider": {"command": weekly}},
        "tasks": {"enabled": TASKS},
        "providers": {"preference": ["command"],
                      "command": {"enabled": True, "timeout": "2m", "argv": [str(agent), "{prompt}"]}},
    }, indent=1))
    return path


def nightshift(args: list[str], cwd: Path, env: dict[str, str], label: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "nightshift_tasks", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        die(f"{label}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def budget_now(config: Path, cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    rows = json.loads(nightshift(["budget", "--provider", "command", "--json", f"config={config}"],
                                 cwd, env, "budget --json"))
    return dict(rows[0])


def warm_up(root: Path, agent: Path, repos: list[str], sigma: float, seed: str) -> Path:
    """A home whose ledger holds WARM measured runs of every task, on other projects."""
    work = root / f"warm-{sigma}-{seed}"
    work.mkdir()
    draws = draw(sigma, f"warm-{seed}", [Path(r).name for r in repos])
    write_draws(work / "draws", draws)
    config = write_config(work / "nightshift.yaml", repos, agent, 10**12)
    env = {**os.environ, "NIGHTSHIFT_HOME": str(work / "home"), "BENCH_DRAWS": str(work / "draws")}
    nightshift(["run", "-n", str(len(repos)), "ignore_budget=1", f"config={config}"], work, env,
               f"warm-up sigma={sigma} seed={seed}")
    return work / "home"


def read_night(db: Path, repos: list[str], draws: dict[tuple[str, str], int], wall: float) -> Night:
    """The night as its ledger tells it, checked against the draws: every completed task
    recorded exactly its drawn usage in three known calls, every skip was the budget's."""
    conn = sqlite3.connect(db)
    marks = ",".join("?" * len(repos))
    rows = conn.execute(
        f"SELECT a.project_path, a.task, a.status, a.error, COALESCE(SUM(c.tokens), 0), "
        f"COUNT(c.id), MIN(c.usage_known) FROM attempts a LEFT JOIN calls c ON c.attempt_id = a.id "
        f"WHERE a.project_path IN ({marks}) GROUP BY a.id", repos).fetchall()
    conn.close()
    if len(rows) != len(draws):
        die(f"{len(rows)} attempts in the ledger, {len(draws)} tasks planned")
    settled = sum(r[4] for r in rows)
    done = [r for r in rows if r[2] == "completed"]
    skipped = [r for r in rows if r[2] == "skipped"]
    if len(done) + len(skipped) != len(rows):
        die(f"unexpected outcomes: {[r[1:4] for r in rows if r[2] not in ('completed', 'skipped')]}")
    for path, slug, _, _, tokens, calls, known in done:
        if (tokens, calls, known) != (draws[(Path(path).name, slug)], len(PHASES), 1):
            die(f"{path} {slug}: ledger has {tokens} tokens in {calls} calls (known={known}), "
                f"drawn {draws[(Path(path).name, slug)]}")
    left = ALLOWANCE - settled
    fit_estimate = fit_actual = 0
    for path, slug, _, error, tokens, _, _ in skipped:
        found = NEEDS.search(error or "")
        if tokens or found is None:
            die(f"{path} {slug}: skipped after spending {tokens}, or for another reason: {error}")
        fit_estimate += int(found.group(1).replace(",", "")) <= left
        fit_actual += draws[(Path(path).name, slug)] <= left
    return Night(sum(draws.values()), settled, max((r[4] for r in done), default=1), len(done),
                 len(skipped), fit_estimate, fit_actual, wall)


def night(root: Path, agent: Path, warm_home: Path, repos: list[str], k: int, sigma: float,
          seed: str) -> Night:
    """One measured night on a copy of the warmed-up home."""
    work = root / f"night-{k}-{sigma}-{seed}"
    work.mkdir()
    home = work / "home"
    shutil.copytree(warm_home, home)
    draws = draw(sigma, seed, [Path(r).name for r in repos])
    write_draws(work / "draws", draws)
    env = {**os.environ, "NIGHTSHIFT_HOME": str(home), "BENCH_DRAWS": str(work / "draws")}
    probe = write_config(work / "probe.yaml", repos, agent, 7)
    used = int(budget_now(probe, work, env)["used_today"])
    config = write_config(work / "nightshift.yaml", repos, agent, 7 * (ALLOWANCE + used))
    allowance = int(budget_now(config, work, env)["allowance"])  # what the plan will use
    if allowance != ALLOWANCE:
        die(f"allowance is {allowance:,}, expected {ALLOWANCE:,} (used today {used:,})")
    start = time.perf_counter()
    nightshift(["run", "-n", str(k), f"config={config}"], work, env, f"night K={k} sigma={sigma}")
    return read_night(home / "state.db", repos, draws, time.perf_counter() - start)


def row(k: int, sigma: float, nights: list[Night]) -> list[Any]:
    """One cell over its nights: the worst night for each target, means otherwise."""
    used = [n.settled / ALLOWANCE for n in nights]
    worst = max(nights, key=lambda n: n.overshoot / n.largest)
    fit_e, fit_a = sum(n.fit_estimate for n in nights), sum(n.fit_actual for n in nights)
    missed = [f"used<{USED_TARGET:.0%}"] * (min(used) < USED_TARGET)
    missed += ["overshoot>task"] * (worst.overshoot > worst.largest)
    missed += ["fit skipped"] * (fit_e > 0)
    return [k, sigma, statistics.mean(n.work for n in nights) / ALLOWANCE,
            f"{min(used):.1%} ({statistics.mean(used):.1%})", f"{worst.overshoot:,}",
            f"{worst.largest:,}", statistics.mean(n.completed for n in nights),
            statistics.mean(n.skipped for n in nights), f"{fit_e} ({fit_a})",
            max(n.wall for n in nights), ", ".join(missed) or "ok"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only K=4, sigma=1.0, one seed")
    parser.add_argument("--seeds", type=int, default=5, help="nights per cell (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (its path is printed)")
    parser.add_argument("-k", type=int, action="append", help="only this K (repeatable)")
    parser.add_argument("--sigma", type=float, action="append", help="only this sigma (repeatable)")
    args = parser.parse_args()
    grid, seeds = ([(4, 1.0)], ["s0"]) if args.quick else (GRID, [f"s{i}" for i in range(args.seeds)])
    grid = [(k, s) for k, s in grid if k in (args.k or [k]) and s in (args.sigma or [s])]
    print(f"machine: nproc={os.cpu_count()}, load {os.getloadavg()[0]:.1f}, python "
          f"{platform.python_version()}, {platform.system()} {platform.release()}; "
          f"package: {Path(nightshift_tasks.__file__).parent}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="ns-budget-")).resolve()
    try:
        agent = fake_agent(root, AGENT)
        repos = make_repos(root, PROJECTS + WARM)
        nights: dict[tuple[int, float], list[Night]] = {}
        for sigma in sorted({s for _, s in grid}):
            for seed in seeds:
                home = warm_up(root, agent, repos[PROJECTS:], sigma, seed)
                for k in sorted({k for k, s in grid if s == sigma}):
                    nights.setdefault((k, sigma), []).append(
                        night(root, agent, home, repos[:PROJECTS], k, sigma, seed))
                    n = nights[(k, sigma)][-1]
                    print(f"  K={k:<2} sigma={sigma} {seed}: used {n.settled / ALLOWANCE:.1%}, "
                          f"overshoot / largest task {(n.settled - ALLOWANCE) / n.largest:.2f}",
                          file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    rows = [row(k, s, nights[(k, s)]) for k, s in sorted(nights, key=lambda c: (c[1], c[0]))]
    headers = ["K", "sigma", "work x", "used % (mean)", "overshoot", "largest task", "completed",
               "skipped", "fit at end (drawn)", "wall s", "targets"]
    print(tabulate(rows, headers=headers, floatfmt=".1f"), flush=True)
    print(f"allowance {ALLOWANCE:,} tokens; {PROJECTS} projects x {len(TASKS)} tasks; {len(seeds)} "
          f"seed(s) per cell; load {os.getloadavg()[0]:.1f} at the end")
    print(f"targets: used >= {USED_TARGET:.0%} in every night, overshoot <= the night's largest "
          "task, no skipped task whose estimate still fit at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
