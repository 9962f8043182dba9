"""What `status`, `report` and `doctor` share: where the run reports are, and the run lock
as they see it. None of them takes the lock, so they work while a run is going."""

from __future__ import annotations

from pathlib import Path

from nightshift_tasks import runlock, shutdown
from nightshift_tasks.paths import nightshift_home

EXIT_USAGE = 2


def reports_dir() -> Path:
    return nightshift_home() / "reports"


def lock_check() -> tuple[str, str, str]:
    """Free, held by a working run, or held by a stuck one (which the next run breaks)."""
    lock = nightshift_home() / "run.lock"
    if runlock.acquire_probe(lock):
        return "OK", "run lock", "free"
    holder, reason = runlock.holder(lock), shutdown.stuck(lock)
    if reason:
        return ("WARN", "run lock", f"held by a stuck run ({holder}): {reason}; the next run "
                "stops it and takes over")
    return "OK", "run lock", f"held by a running run ({holder})"
