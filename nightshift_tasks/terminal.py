"""What the output stream can show: its width (80 columns off a terminal, so cron logs and
pipes get the same layout every time) and whether status words may be coloured (only on a
terminal, and never with NO_COLOR set, https://no-color.org)."""

from __future__ import annotations

import os
from typing import Any

OFF_TERMINAL_COLUMNS = 80
COLOURS = {"completed": "32", "failed": "31", "abandoned": "35", "skipped": "36",
           "interrupted": "33"}  # green, red, magenta, cyan, yellow


def is_terminal(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


def columns(stream: Any) -> int:
    """The terminal's width ($COLUMNS wins, as for every terminal program); 80 elsewhere."""
    if not is_terminal(stream):
        return OFF_TERMINAL_COLUMNS
    override = os.environ.get("COLUMNS", "")
    if override.isdigit() and int(override) > 0:
        return int(override)
    try:
        return os.get_terminal_size(stream.fileno()).columns or OFF_TERMINAL_COLUMNS
    except (OSError, ValueError, AttributeError):
        return OFF_TERMINAL_COLUMNS


def colour_on(stream: Any) -> bool:
    return is_terminal(stream) and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def paint(word: str, on: bool) -> str:
    """A status word in its colour when `on`; any other text unchanged."""
    code = COLOURS.get(word)
    return f"\x1b[{code}m{word}\x1b[0m" if on and code else word
