"""`python -m nightshift_tasks`: the same entry point as the `nightshift-tasks` script (cli.py)."""

from __future__ import annotations

import sys

from nightshift_tasks.cli import main

sys.exit(main())
