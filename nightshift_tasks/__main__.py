from __future__ import annotations

import sys

from nightshift_tasks.cli import main

sys.exit(main())
