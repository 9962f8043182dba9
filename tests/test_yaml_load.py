"""The hardened YAML loader: what it still accepts (merge keys, aliases, a UTF-8 BOM) and
how each refusal is worded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nightshift_tasks import yaml_strict
from nightshift_tasks.catalog import builtin_slugs
from nightshift_tasks.config import load_config
from nightshift_tasks.errors import ConfigError
from nightshift_tasks.yaml_load import read_yaml


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    return [line.removeprefix(f"config error: {path}: ") for line in info.value.lines]


def test_merge_keys_aliases_and_a_utf8_bom_still_work(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbfbase: &b {x: 1, y: 2}\nuse: {<<: *b, y: 3}\nagain: *b\n2024-01-01: 7\n")
    assert read_yaml(path) == {"base": {"x": 1, "y": 2}, "use": {"x": 1, "y": 3},
                               "again": {"x": 1, "y": 2}, "2024-01-01": 7}


def test_an_aliased_section_gets_its_own_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("providers:\n  claude: &p {timeout: 1h}\n  codex: *p\n")
    providers = load_config(path, builtin_slugs(), {}).section("providers")
    assert providers["codex"]["timeout"] == providers["claude"]["timeout"] == "1h"
    assert "dangerously_skip_permissions" not in providers["codex"]
    assert "dangerously_bypass_approvals_and_sandbox" not in providers["claude"]


def test_every_duplicate_key_is_reported_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("tasks:\n  enabled: [a]\n  enabled: [b]\n"
                    "budget: {}\nbudget: {mode: daily, mode: weekly}\n")
    assert problems(path) == [
        "line 3, column 3: duplicate key 'enabled' (first on line 2); each key may appear once in a mapping",
        "line 5, column 1: duplicate key 'budget' (first on line 4); each key may appear once in a mapping",
        "line 5, column 23: duplicate key 'mode' (first on line 5); each key may appear once in a mapping"]


def test_a_list_as_a_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("tasks:\n  ? [a, b]\n  : 1\n")
    assert problems(path) == ["line 2, column 5: a key must be a name, not a list or mapping"]


def test_a_directory_cannot_be_read(tmp_path: Path) -> None:
    assert problems(tmp_path) == ["cannot read: Is a directory"]


def test_a_stack_already_deep_gets_an_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: " + "[" * 60 + "]" * 60 + "\n")
    limit = sys.getrecursionlimit()

    def depth() -> int:
        frame, n = sys._getframe(), 0
        while frame:
            frame, n = frame.f_back, n + 1  # type: ignore[assignment]
        return n

    sys.setrecursionlimit(depth() + 80)
    try:
        lines = problems(path)
    finally:
        sys.setrecursionlimit(limit)
    assert lines == ["nested too deeply; at most 64 levels"]


def test_a_control_character_is_named_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("tasks:\n  enabled: [a\x1fb]\n")
    assert problems(path) == ["line 2, column 14: invalid YAML: character U+001F is not allowed in YAML; "
                              "remove it"]


# YAML-ish text: what a config is made of, and the characters where parsers disagree.
PIECES = [*"ab1 :-[]{},&*'\"#\n\r<.\\0xe~=_/+ntrulTFNy\t!?|>%@`\x85\u00e9\ufeff", "  ", "\n  ", "\n- ", ": "]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
def test_libyaml_loads_only_what_the_pure_loader_loads_and_the_same(text: str) -> None:
    """The fast path changes nothing but the time: whatever it loads, PyYAML's own parser
    loads the same, without a problem (every other text is reported by the latter)."""
    parsed, value = yaml_strict.fast(text)
    if parsed:
        loader = yaml_strict.StrictLoader(text)
        try:
            assert loader.get_single_data() == value
        finally:
            loader.dispose()
        assert loader.problems == []


def test_a_config_listing_many_projects_takes_the_fast_path(tmp_path: Path) -> None:
    text = "projects:\n" + "".join(f"  - path: ~/src/p{i}  # repo {i}\n    priority: {i % 3}\n"
                                   for i in range(2000))
    assert yaml_strict.fast(text) == (True, {"projects": [{"path": f"~/src/p{i}", "priority": i % 3}
                                                         for i in range(2000)]})
    assert yaml_strict.fast(text + "x: !!str 1\n")[0] is False  # a tag: PyYAML's parser alone
