"""`schedule.window`: the hours nightshift may start tasks, in the window's time zone.

start > end spans midnight (22:00-06:00); the end is exclusive; start == end is never open.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(window: Mapping[str, Any]) -> ZoneInfo | None:
    name = window.get("timezone")
    return ZoneInfo(name) if name else None


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def is_open(window: Mapping[str, Any], at: datetime) -> bool:
    local = at.astimezone(zone(window))
    start, end, now = _clock(window["start"]), _clock(window["end"]), local.time()
    if start < end:
        return start <= now < end
    return start > end and (now >= start or now < end)


def next_open(window: Mapping[str, Any], at: datetime) -> datetime:
    """When the window next opens (at a whole minute), in its own time zone."""
    local = at.astimezone(zone(window))
    start = _clock(window["start"])
    candidate = local.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    return candidate if candidate > local else candidate + timedelta(days=1)


def describe(window: Mapping[str, Any]) -> str:
    return f"{window['start']}-{window['end']} ({window.get('timezone') or 'local time'})"
