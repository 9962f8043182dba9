"""`python -m nightshift_tasks demo`: sample repositories, a demo config, a real
`doit run -n 5` with the offline demo agent, and the budget afterwards. Needs no AI CLI and
no network."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from nightshift_tasks.paths import HOME_ENV, nightshift_home

SAMPLES: dict[str, dict[str, str]] = {
    "billing-api": {
        "app.py": "def charge(amount):\n    # TODO: handle currency rounding\n    return amount\n",
        "db.py": "# FIXME: connection is never closed\nCONN = None\n",
    },
    "web-frontend": {
        "src/index.js": "// TODO(ui): debounce the search box\nexport const q = 1;\n",
        "src/big.js": "".join(f"export const v{i} = {i};\n" for i in range(260)),
    },
    "data-pipeline": {
        "etl.py": "".join(f"STEP_{i} = {i}\n" for i in range(230)) + "# HACK: retry twice\n",
    },
    "cli-tools": {"main.go": "package main\n\n// XXX: parse flags properly\nfunc main() {}\n"},
    "docs-site": {"README.md": "# Docs\n\nNothing to fix here.\n"},
    "infra": {"deploy.sh": "#!/bin/sh\n# TODO: stop hard-coding the region\necho deploy\n"},
}


def git(cwd: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@example.invalid",
           "GIT_COMMITTER_NAME": "demo", "GIT_COMMITTER_EMAIL": "demo@example.invalid"}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def make_repos(root: Path) -> list[Path]:
    paths = []
    for name, files in SAMPLES.items():
        repo = root / "repos" / name
        for rel, text in files.items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text, encoding="utf-8")
        git(repo, "init", "-q")
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", "initial")
        paths.append(repo)
    return paths


def write_config(root: Path, repos: list[Path]) -> Path:
    config = {
        "projects": [{"path": str(p)} for p in repos],
        "schedule": {"max_tasks": 2},
        "tasks": {"enabled": ["tech-debt-classify", "repo-topology"]},
        # Both are medium-cost tasks, reserved at their tier's top (150,000 tokens) until
        # measured runs teach an estimate: a weekly budget whose daily allowance covers the
        # five running at once.
        "budget": {"weekly_tokens": 20_000_000},
        "providers": {
            "preference": ["command"],
            "command": {"enabled": True, "timeout": "2m",
                        "argv": [sys.executable, "-m", "nightshift_tasks.demo_agent", "{prompt}"]},
        },
    }
    path = root / "nightshift.yaml"
    path.write_text("# Written by `python -m nightshift_tasks demo`.\n"
                    + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def main(argv: list[str]) -> int:
    """Recreate the demo from scratch each time, so it always has work to do."""
    root = nightshift_home() / "demo"
    parser = argparse.ArgumentParser(prog="nightshift-tasks demo", description=(
        f"Recreate {root} (six sample git repositories, a config, a state home of its own) and "
        "run them with an offline demo agent: no AI CLI, no network, no tokens. Other "
        "arguments go to `run`."))
    _, args = parser.parse_known_args(argv)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    config = write_config(root, make_repos(root))
    home = root / "home"
    # -a: the line below runs the demo again as it is (the same day, the daily guard would
    # skip every project); in the demo's fresh home it changes nothing.
    cmd = [sys.executable, "-m", "nightshift_tasks", "run", "-a", "-n", "5", f"config={config}", *args]
    print(f"nightshift demo: {len(SAMPLES)} sample repositories under {root / 'repos'}\n"
          f"config: {config}\nrunning: {shlex.join([f'{HOME_ENV}={home}', *cmd])}\n", flush=True)
    env = {**os.environ, HOME_ENV: str(home)}
    code = subprocess.run(cmd, env=env, check=False).returncode
    # The demo agent reports its usage, so the budget now shows what the run spent.
    budget = [sys.executable, "-m", "nightshift_tasks", "budget", f"config={config}"]
    print(f"\nthe budget afterwards: {shlex.join([f'{HOME_ENV}={home}', *budget])}\n", flush=True)
    subprocess.run(budget, env=env, check=False)
    print(f"\nreports: {home / 'reports'}   logs: {home / 'logs'}")
    return code
