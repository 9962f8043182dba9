"""Random crash/signal cycles on the real `doit run -n K`.

Each cycle: fresh repositories and state; `doit run -n K` (K random in 2..4, 4 projects x
2 tasks, an agent that leaves a setsid() grandchild behind on every call); one signal at a
random moment: SIGKILL / SIGTERM / SIGINT, to doit's main process or (TERM/INT) its whole
process group, 0-300 ms after exec ("boot"), 0-200 ms after the first worker is forked
("fork"), or 0-1.5 s after an agent started ("busy"). Then checks:

  - the run exited within SHUTDOWN_SECONDS (+ slack), with 130 for TERM/INT (or, before
    nightshift's handlers exist, killed by the signal having taken no lock);
  - no process carrying the run's environment marker is left, the run lock is free;
  - a clean rerun exits 0 and every task is completed exactly once, none left running.

Usage: python bench/crash_cycles.py [--cycles N] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tabulate import tabulate  # noqa: E402

from nightshift_tasks.signals import SHUTDOWN_SECONDS  # noqa: E402
from tests.conftest import FAKE_AGENT, Env  # noqa: E402
from tests.crashes import escaping_agent, ledger_problems, signalled_run  # noqa: E402

PROJECTS = ["alpha", "beta", "gamma", "delta"]
TASKS_PER_PROJECT = 2


def fresh_env(root: Path) -> Env:
    root.mkdir()
    agent = root / "fake-agent"
    agent.write_text(FAKE_AGENT)
    agent.chmod(0o755)
    env = Env(tmp=root, home=root / "home", record=root / "calls.log", agent=agent,
              config=root / "nightshift.yaml")
    env.projects(PROJECTS, schedule={"max_tasks": TASKS_PER_PROJECT})
    env.write_config({"providers": {"command": {"enabled": True, "timeout": "1m", "argv": [
        str(escaping_agent(env)), "{prompt}"]}}})
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows, failures, tally = [], 0, Counter[str]()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for cycle in range(args.cycles):
            env = fresh_env(Path(tmp) / f"c{cycle}")
            sig = rng.choice([signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
            moment = rng.choice(["boot", "fork", "fork", "busy"])
            group = sig != signal.SIGKILL and rng.random() < 0.3
            workers = rng.randint(2, 4)
            outcome = signalled_run(env, workers, sig, moment, rng, group=group)
            problems = outcome.problems()
            rerun = env.doit("run", "-n", str(workers))
            if rerun.returncode != 0:
                problems.append(f"rerun exit {rerun.returncode}")
            problems += ledger_problems(env, len(PROJECTS) * TASKS_PER_PROJECT)
            failures += bool(problems)
            tally[f"{signal.Signals(sig).name} {moment}"] += 1
            rows.append([cycle, signal.Signals(sig).name + (" (group)" if group else ""), moment,
                         workers, outcome.rc, f"{outcome.seconds:.2f}",
                         "; ".join(problems) or "ok"])
            print(*rows[-1], sep="  ", flush=True)
    print()
    print(tabulate(rows, headers=["cycle", "signal", "moment", "K", "rc", "s to exit", "result"]))
    seconds = [float(r[5]) for r in rows]
    print(f"\n{args.cycles} cycles in {time.monotonic() - started:.0f}s, {failures} with problems;"
          f" signal->exit: max {max(seconds):.2f}s, mean {sum(seconds) / len(seconds):.2f}s "
          f"(bound {SHUTDOWN_SECONDS:g}s)")
    print("mix: " + ", ".join(f"{k} x{v}" for k, v in sorted(tally.items())))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
