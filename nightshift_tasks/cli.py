"""`nightshift-tasks` (or `python -m nightshift_tasks`): our own commands, and doit's on the
same tasks.

doit loads the tasks from the installed package through a ModuleTaskLoader, so no
checkout and no dodo.py are needed, and the command works from any directory. Unlike
plain `doit`, nothing runs without the word `run`: no arguments print the help.
"""

from __future__ import annotations

import difflib
import importlib
import os
import platform
import shlex
import sys
from typing import Any, TextIO

import doit
from doit.cmd_base import ModuleTaskLoader
from doit.cmd_clean import Clean as DoitClean
from doit.cmd_forget import Forget as DoitForget
from doit.doit_cmd import DoitMain

from nightshift_tasks import __version__, graph
from nightshift_tasks.commands import doit_verbs
from nightshift_tasks.paths import xdg_config

PROG = "nightshift-tasks"
EXIT_USAGE = 2
# Ours, one line each in the help, in the order a new user needs them. Those in OWN are ours
# alone, each a module in commands/; the others are doit commands on our tasks.
COMMANDS = {
    "init": "write a starting config listing your git repositories: init ~/src",
    "list": "the plan: each project's tasks and agent, or why it is skipped",
    "info": "why a project got its tasks, with every task's score: info <project>",
    "run": "run the plan: run -n 3 works on at most 3 projects at once",
    "demo": "a real run on six sample repositories with an offline agent",
    "tasks": "the task catalogue, and the prompts a task would send",
    "budget": "each provider's token budget and today's allowance",
    "status": "what ran today (--last N: the last N runs)",
    "report": "the last run's report (--date YYYY-MM-DD: that day's summary)",
    "doctor": "check everything the next unattended run depends on",
    "cron": "install, show or remove the schedule (crontab, systemd, launchd)",
}
OWN = ("init", "demo", "tasks", "budget", "status", "report", "doctor", "cron")


class Loader(ModuleTaskLoader):  # type: ignore[misc]
    """ModuleTaskLoader whose DOIT_CONFIG is computed after doit has parsed `config=`."""

    def load_doit_config(self) -> dict[str, Any]:
        return graph.doit_config()


class Main(DoitMain):  # type: ignore[misc]
    """doit under our name, with `forget` and `clean` that act on nightshift's state."""

    BIN_NAME = PROG
    DOIT_CMDS = tuple({DoitForget: doit_verbs.Forget, DoitClean: doit_verbs.Clean}.get(c, c)
                      for c in DoitMain.DOIT_CMDS)


def run_doit(argv: list[str]) -> int:
    loader = Loader({graph.CREATOR: graph.task_projects})
    # config_filenames=(): a stray doit.cfg or pyproject.toml in cron's cwd must not apply.
    code: int = Main(loader, config_filenames=()).run(argv)
    return code


def doit_commands() -> dict[str, str]:
    """doit's commands that are not in COMMANDS, with what each does."""
    return {c.get_name(): c.doc_purpose for c in Main.DOIT_CMDS if c.get_name() not in [*COMMANDS, "help"]}


def usage() -> str:
    width = max(map(len, [*COMMANDS, *doit_commands()]))
    return "\n".join([
        f"usage: {PROG} <command> [options] [name=value ...]",
        "",
        "Spends leftover AI-agent tokens overnight on repository maintenance.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()),
        "",
        "doit's commands, on the same tasks (https://pydoit.org):",
        *(f"  {name:<{width}}  {text}" for name, text in doit_commands().items()),
        "",
        f"variables: config=PATH (default {xdg_config()}),",
        "  and for run: task=SLUG, random_task=1, ignore_budget=1, window=ignore",
        f"`{PROG} <command> --help` shows a command's options; `{PROG} --version` the versions.",
    ])


def versions() -> str:
    return (f"{PROG} {__version__}\ndoit {'.'.join(map(str, doit.__version__))}\n"
            f"Python {platform.python_version()}")


def command(name: str, args: list[str]) -> int:
    """One of ours by name; args without the command's name."""
    if name in OWN:
        code: int = importlib.import_module(f"nightshift_tasks.commands.{name}").main(args)
        return code
    if name in COMMANDS or name in doit_commands() or name == "help":
        if {"-h", "--help"} & set(args):  # doit's own `run --help` is a parse error
            return run_doit(["help", name])
        return run_doit([name, *args])
    if name.startswith("-"):
        print(f"{PROG}: {name}: the command comes first, e.g. `{PROG} run {shlex.join([name, *args])}`; "
              f"`{PROG} --help` lists the commands", file=sys.stderr)
        return EXIT_USAGE
    close = difflib.get_close_matches(name, [*COMMANDS, *doit_commands()], n=1)
    hint = f"did you mean `{PROG} {close[0]}`? " if close else ""
    print(f"{PROG}: unknown command {name!r}: {hint}`{PROG} --help` lists the commands; "
          f"to run one project: `{PROG} run {name}`", file=sys.stderr)
    return EXIT_USAGE


def dispatch(args: list[str]) -> int:
    words = [a for a in args if a.startswith("-") or "=" not in a]  # name=value are variables
    if not words or words == ["help"] or words[0] in ("-h", "--help"):
        print(usage())
        return 0
    if words[0] == "--version":
        print(versions())
        return 0
    if words[0] == "help":
        name = words[1]
        return command(name, ["--help"]) if name in COMMANDS else run_doit(["help", *words[1:]])
    rest = list(args)
    rest.remove(words[0])
    return command(words[0], rest)


class ReaderSafeStdout:
    """sys.stdout that outlives its reader: once `| head` has read what it wanted, the rest
    goes to /dev/null, where Python, and doit around its commands, would print a
    BrokenPipeError traceback."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self.reader_gone()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self.reader_gone()

    def reader_gone(self) -> None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def main(argv: list[str] | None = None) -> int:
    if not isinstance(sys.stdout, ReaderSafeStdout):
        sys.stdout = ReaderSafeStdout(sys.stdout)
    return dispatch(list(sys.argv[1:] if argv is None else argv))
