from __future__ import annotations

import pytest

from nightshift_tasks.durations import format_duration, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("30m", 1800), ("1h30m", 5400), ("168h", 604800), ("7d", 604800), ("1.5s", 1.5),
    ("250ms", 0.25), ("1d2h", 93600)])
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "2w", "1h 30m", "h", "-1h"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format() -> None:
    assert [format_duration(s) for s in (0.25, 4.2, 185, 3725)] == ["250ms", "4.2s", "3m05s", "1h02m"]
