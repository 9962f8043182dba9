"""Untrusted text (agent output, error messages, project names) made fit for one line."""

from __future__ import annotations

import re
from typing import Any

from nightshift_tasks.errors import clip

_BREAKS = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")  # newlines, tabs, escapes, NEL, LS/PS


def one_line(text: str, width: int | None = None) -> str:
    """The text on one line: line breaks and control characters become a space, so a table
    row or a log line can never be split or recoloured; cut to `width` with an ellipsis."""
    flat = " ".join(_BREAKS.sub(" ", str(text)).split())
    return flat if width is None else clip(flat, width)


def cells(*values: Any) -> list[Any]:
    """A table row whose text cells are one line each: a reason, a project name or an
    agent's message can never split the row."""
    return [one_line(v) if isinstance(v, str) else v for v in values]
