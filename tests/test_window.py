from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from nightshift_tasks.window import is_open, next_open
from tests.conftest import Env, summary_table

UTC = UTC
OVERNIGHT = {"start": "22:00", "end": "06:00", "timezone": "Europe/Berlin"}


@pytest.mark.parametrize(("utc", "expected"), [
    ("2026-11-28T20:59", False), ("2026-11-28T21:00", True), ("2026-11-29T04:59", True),
    ("2026-11-29T05:00", False)])
def test_overnight_window_in_its_own_zone(utc: str, expected: bool) -> None:
    at = datetime.fromisoformat(utc).replace(tzinfo=UTC)  # Berlin is UTC+1 in November
    assert is_open(OVERNIGHT, at) is expected


def test_same_day_window_and_empty_window() -> None:
    day = {"start": "01:00", "end": "05:00", "timezone": "UTC"}
    assert is_open(day, datetime(2026, 11, 28, 1, 0, tzinfo=UTC))
    assert not is_open(day, datetime(2026, 11, 28, 5, 0, tzinfo=UTC))
    assert not is_open({"start": "03:00", "end": "03:00", "timezone": "UTC"},
                       datetime(2026, 11, 28, 3, 0, tzinfo=UTC))


def test_next_open() -> None:
    opens = next_open(OVERNIGHT, datetime(2026, 11, 28, 22, 30, tzinfo=UTC))
    assert opens.isoformat() == "2026-11-29T22:00:00+01:00"
    assert next_open(OVERNIGHT, datetime(2026, 11, 28, 12, 0, tzinfo=UTC)).isoformat() == \
        "2026-11-28T22:00:00+01:00"


def test_outside_the_window_nothing_is_planned_unless_ignored(env: Env) -> None:
    now = datetime.now(UTC)
    start, end = now + timedelta(hours=2), now + timedelta(hours=3)
    span = {"start": f"{start:%H:%M}", "end": f"{end:%H:%M}", "timezone": "UTC"}
    env.projects(["alpha"], schedule={"window": span})
    result = env.doit("run")
    assert result.returncode == 0
    assert f"\nSkipped:\n  alpha: outside the time window {span['start']}-{span['end']} (UTC); it opens" \
        in result.stdout
    assert not env.record.exists()
    forced = env.doit("run", "window=ignore")
    assert forced.returncode == 0 and len(env.calls()) == 3
    bad = env.doit("run", "window=no")
    assert (bad.returncode, bad.stderr.strip()) == (
        2, "argument error: window=no: the only value is window=ignore")


def test_unknown_time_zone_is_refused(env: Env) -> None:
    env.projects(["alpha"], schedule={"window": {"start": "22:00", "end": "06:00",
                                                 "timezone": "Mars/Olympus"}})
    result = env.doit("list")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("schedule.window.timezone: 'Mars/Olympus' is not a known "
                                          "time zone; use an IANA name such as Europe/Berlin or "
                                          "America/Denver")


def test_a_window_that_closes_mid_run_starts_no_new_task_and_the_overrun_is_noted(env: Env) -> None:
    """The window ends LEAD seconds after the run starts: local time is set that far off a
    whole minute by a POSIX TZ with seconds, so no test waits for a real minute to turn.
    The first task's agent works until the end has passed."""
    lead = 6
    end = math.ceil(time.time()) + lead
    shift = -end % 60  # local time = UTC + shift: the end is a whole minute of local time
    local_end = datetime.fromtimestamp(end + shift, UTC)
    span = {"start": f"{local_end - timedelta(hours=1):%H:%M}", "end": f"{local_end:%H:%M}"}
    env.projects(["alpha"], schedule={"window": span, "max_tasks": 2})
    agent = env.tmp / "slow-first-agent"
    agent.write_text(f'#!/bin/sh\nif [ ! -e "{env.tmp}/first" ]; then\n  touch "{env.tmp}/first"\n'
                     f'  while [ "$(date +%s)" -le {end} ]; do sleep 0.05; done\nfi\n'
                     f'exec "{env.agent}" "$@"\n')
    agent.chmod(0o755)
    env.write_config({"providers": {"preference": ["command"], "command": {
        "enabled": True, "timeout": "1m", "argv": [str(agent), "{prompt}"]}}})
    result = env.doit("run", TZ=f"NST-00:00:{shift:02d}")
    assert "outside the time window" not in result.stdout, "the run started too late: raise lead"
    assert result.returncode == 0, result.stdout + result.stderr
    assert [(c.task, c.phase) for c in env.calls()] == [
        ("lint-fix", "plan"), ("lint-fix", "implement"), ("lint-fix", "review")]
    rows = summary_table(result.stdout)
    closed = f"the time window {span['start']}-{span['end']} (local time) closed before this task could start"
    assert (rows["alpha"]["completed"], rows["alpha"]["skipped"]) == ("1", "1")
    assert "\nResults:\n  alpha:lint-fix: ran past the end of the time window\n" in result.stdout
    # Only that one: the skipped task, which never started, did not run past anything.
    assert result.stdout.count("ran past the end") == 1
    assert f"\nProblems:\n  alpha:docs-backfill: skipped: {closed}\n" in result.stdout
