"""How config problems are worded: the error type, dotted keys, and bounded quoting, so that
no value in a config (however long or strange) can flood or split an error line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

QUOTE_LIMIT = 80


class ConfigError(Exception):
    """A config that cannot be used; `lines` holds one formatted line per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def clip(text: str, limit: int = QUOTE_LIMIT) -> str:
    """At most `limit` characters, with an ellipsis where it was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """repr() of a value, cut to `limit`; repr escapes newlines and control characters."""
    return clip(repr(value), limit)


def _part(part: Any) -> str:
    text = str(part)
    return text if text.isprintable() and len(text) <= 40 and text else quote(text, 40)


def dotted(path: Iterator[Any] | list[Any] | tuple[Any, ...]) -> str:
    """('projects', 2, 'path') -> 'projects[2].path'; odd keys are quoted and cut short."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{_part(part)}" if out else _part(part))
    return out or "(top level)"
