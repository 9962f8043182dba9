"""What one doit invocation works from: graph.py loads it once per process and hands it to
the tasks it makes and to the reporter (summary.py), which never load it themselves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nightshift_tasks.catalog import TaskDef
from nightshift_tasks.config import Config
from nightshift_tasks.plan_data import Options, Plan


@dataclass(frozen=True)
class Engine:
    """Everything one doit invocation needs, loaded once per process."""

    config: Config
    catalog: list[TaskDef]
    plan: Plan
    db_path: str  # the state database: a file's path or a PostgreSQL URL
    log_dir: Path
    options: Options
    run_id: str
