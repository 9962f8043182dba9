"""`python -m nightshift_tasks` (or `nightshift-tasks`): our own commands (`demo`, `tasks`,
`budget`),
and everything else handed to doit.

doit loads the tasks from the installed package through a ModuleTaskLoader, so no
checkout and no dodo.py are needed, and the command works from any directory.
"""

from __future__ import annotations

import sys
from typing import Any

from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain

from nightshift_tasks import graph


class Loader(ModuleTaskLoader):  # type: ignore[misc]
    """ModuleTaskLoader whose DOIT_CONFIG is computed after doit has parsed `config=`."""

    def load_doit_config(self) -> dict[str, Any]:
        return graph.doit_config()


def run_doit(argv: list[str]) -> int:
    loader = Loader({"task_projects": graph.task_projects})
    # config_filenames=(): a stray doit.cfg or pyproject.toml in cron's cwd must not apply.
    code: int = DoitMain(loader, config_filenames=()).run(argv)
    return code


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["demo"]:
        from nightshift_tasks import demo

        return demo.main(args[1:])
    if args[:1] == ["tasks"]:
        from nightshift_tasks import tasks_cmd

        return tasks_cmd.main(args[1:])
    if args[:1] in (["status"], ["report"], ["doctor"]):
        from nightshift_tasks import status_cmd

        return status_cmd.main(args[0], args[1:])
    if args[:1] == ["budget"]:
        from nightshift_tasks import budget_cmd

        return budget_cmd.main(args[1:])
    if args[:1] == ["cron"]:
        from nightshift_tasks import schedule_cmd

        return schedule_cmd.main(args[1:])
    return run_doit(args)
