from __future__ import annotations

from nightshift_tasks.text import cells, one_line


def test_one_line_never_breaks_a_line() -> None:
    assert one_line("a\nb\r\nc\x00d\te\x1b[0mf\x85g\u2028h\u2029i  j") == "a b c d e [0mf g h i j"
    assert one_line("abcdef", 4) == "abc…" and one_line("abc", 4) == "abc"


def test_cells_flatten_text_and_keep_numbers() -> None:
    assert cells("pro\nject", 3, "x\ny") == ["pro ject", 3, "x y"]
