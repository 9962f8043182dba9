"""`nightshift-tasks init [DIR ...]`: a commented starting config where the commands look
for it, listing the git repositories under DIR and enabling the agent CLIs on the PATH.

It is the shipped config.example.yaml with two parts rewritten, so every comment stays.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from nightshift_tasks import agents
from nightshift_tasks.config import split_variables
from nightshift_tasks.paths import CONFIG_ENV, example_config, xdg_config

EXIT_EXISTS = 1
EXIT_USAGE = 2
MAX_DEPTH = 4  # ~/src/<org>/<group>/<repo>; deeper trees are rarely checkouts
SKIP = {"node_modules", "vendor", "target", "build", "dist", "venv"}


def find_repos(root: Path) -> list[Path]:
    """Git checkouts at or under `root` (a directory holding `.git`), not descending into one,
    nor into hidden or dependency directories."""
    found = []
    for here, dirs, _ in os.walk(root):
        path = Path(here)
        if (path / ".git").exists():
            found.append(path)
            dirs.clear()
            continue
        depth = len(path.relative_to(root).parts)
        dirs[:] = [] if depth >= MAX_DEPTH else sorted(
            d for d in dirs if not d.startswith(".") and d not in SKIP)
    return sorted(found)


def with_projects(text: str, repos: list[Path], roots: list[Path]) -> str:
    """The example with its `projects:` section replaced by `repos`."""
    where = ", ".join(map(str, roots))
    block = "".join([f"projects:\n  # Found under {where} by `nightshift-tasks init`.\n",
                     *(f"  - path: {repo}\n" for repo in repos), "\n"])
    return re.sub(r"^projects:\n(?:(?: .*)?\n)*", lambda _: block, text, count=1, flags=re.MULTILINE)


def with_providers(text: str, found: dict[str, bool]) -> str:
    """The example with each agent CLI's `enabled:` set to whether it is on the PATH."""
    for name, present in found.items():
        text = re.sub(rf"^(  {name}:\n(?:    .*\n)*?    enabled: )(?:true|false)",
                      r"\g<1>" + ("true" if present else "false"), text, count=1, flags=re.MULTILINE)
    return text


def target(variables: dict[str, str]) -> Path:
    """Where the other commands look first: config=, else $NIGHTSHIFT_CONFIG, else XDG."""
    chosen = variables.get("config") or os.environ.get(CONFIG_ENV)
    return Path(os.path.abspath(Path(chosen).expanduser())) if chosen else xdg_config()


def main(argv: list[str]) -> int:
    variables, args = split_variables(argv)
    parser = argparse.ArgumentParser(prog="nightshift-tasks init", description=(
        f"Write a commented starting config to {xdg_config()} (or config=PATH), never over an "
        "existing one. It lists the git repositories under each DIR (none given: the example's "
        f"placeholders) and enables the agent CLIs ({', '.join(agents.clis())}) found on the PATH."))
    parser.add_argument("dirs", nargs="*", type=Path, metavar="DIR")
    opts = parser.parse_args(args)
    path = target(variables)
    if path.exists():
        print(f"nightshift-tasks init: {path} exists; nothing written (edit it, or move it away "
              "and run init again)", file=sys.stderr)
        return EXIT_EXISTS
    roots = [Path(os.path.abspath(d.expanduser())) for d in opts.dirs]
    for root in roots:
        if not root.is_dir():
            print(f"nightshift-tasks init: {root}: not a directory; nothing written", file=sys.stderr)
            return EXIT_USAGE
    text = example_config().read_text(encoding="utf-8")
    repos = sorted({repo for root in roots for repo in find_repos(root)})
    if roots and not repos:
        print(f"nightshift-tasks init: no git repository under {', '.join(map(str, roots))}; "
              "nothing written", file=sys.stderr)
        return EXIT_EXISTS
    if repos:
        text = with_projects(text, repos, roots)
    found = {name: agents.unavailable(name, {}) is None for name in agents.clis()}
    text = with_providers(text, found)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8") as out:  # "x": never over a file made meanwhile
        out.write(text)
    enabled = [name for name, on in found.items() if on]
    print(f"wrote {path}")
    print(f"projects: {len(repos)} found" if repos else
          "projects: the example's placeholders; list your repositories under `projects:`")
    *others, last = agents.clis()
    print("agents: " + (", ".join(enabled) if enabled else f"no {', '.join(others)} or {last} CLI on the "
                        "PATH; install one, or set up providers.command"))
    print("next: nightshift-tasks list         # the plan for each project\n"
          "      nightshift-tasks run -n 3     # a run, at most 3 projects at once\n"
          "      nightshift-tasks cron install -n 3")
    return 0
