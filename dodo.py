"""doit entry point for a checkout: `doit list`, `doit run -n 5`, `doit run config=PATH`.

The same tasks are available from anywhere as `python -m nightshift_tasks <doit args>`.
"""

from nightshift_tasks import shutdown

shutdown.guard_main()  # before the slow imports: a signal from here on exits 130

from nightshift_tasks.graph import doit_config  # noqa: E402
from nightshift_tasks.graph import task_projects as task__projects  # noqa: E402

DOIT_CONFIG = doit_config()

__all__ = ["DOIT_CONFIG", "task__projects"]
