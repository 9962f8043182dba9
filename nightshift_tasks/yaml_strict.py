"""The YAML loaders for a config that may be hostile: PyYAML's composer and constructor with
bounded depth and alias expansion, no duplicate keys and only the plain JSON-like types, over
libyaml's parser when a text loads without a problem (fast) and PyYAML's own otherwise (for
its messages). yaml_load.py reads the file and turns the problems into config errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from nightshift_tasks.errors import clip

MAX_DEPTH = 64  # nesting of lists and mappings
MAX_VALUES = 50_000  # values in the document, counting each alias as a copy of its anchor
# Where libyaml and PyYAML's own parser part ways (tabs, tags, block scalars, directives,
# reserved characters, line breaks other than \n and \r, a byte-order mark inside the
# text): such a file is left to PyYAML alone.
_UNCOMMON = re.compile("[\t!?|>%@`\x85\u2028\u2029\ufeff]")
_UNSUPPORTED = ("binary", "set", "omap", "pairs")  # tags that make bytes, sets or tuples


class Problem(Exception):
    """A loader problem at a place in the file; ends the load at once."""

    def __init__(self, mark: Any, what: str) -> None:
        super().__init__(what)
        self.mark, self.what = mark, what


def mark_place(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""


class _Strict(Composer, SafeConstructor, Resolver):
    """The composer and constructor of a SafeLoader, refusing what a config never needs and
    a hostile file could abuse; over either parser below."""

    peek_event: Callable[[], Any]  # the parser's

    def _start(self) -> None:
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.depth = 0
        self.open_anchors: list[str] = []
        self.sizes: dict[int, int] = {}  # id(node) -> values it expands to
        self.problems: list[tuple[int, int, str]] = []  # (line, column, what): reported together
        self.aliases: dict[tuple[int, Any], Any] = {}  # (id(parent), index) -> the alias's mark

    def note(self, mark: Any, what: str) -> None:
        line, column = (mark.line, mark.column) if mark else (-1, -1)
        self.problems.append((line, column, f"{mark_place(mark)}{what}"))

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event: Any = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.open_anchors:
                raise Problem(event.start_mark, f"alias *{clip(event.anchor, 40)} is inside its own "
                               "anchor, so it would never end; aliases may only repeat finished values")
            if parent is not None:  # the alias's own place: the node it names is elsewhere
                self.aliases[(id(parent), index if isinstance(index, int) else id(index))] = event.start_mark
            return super().compose_node(parent, index)
        if self.depth >= MAX_DEPTH:
            raise Problem(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
        anchor = getattr(event, "anchor", None)
        self.depth += 1
        self.open_anchors += [anchor] if anchor else []
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
            if anchor:
                self.open_anchors.pop()
        if node is None:
            return None
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        size = 1 + sum(self.sizes.get(id(child), 1) for child in children)
        if size > MAX_VALUES:
            raise Problem(node.start_mark, f"expands to more than {MAX_VALUES:,} values through "
                           "aliases; a config needs far fewer")
        self.sizes[id(node)] = size
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Keys are names: a scalar key is taken as its text (`1:` is the key "1"), a list or
        mapping as a key is refused, and a key given twice is an error naming both lines."""
        seen: dict[str, yaml.Mark] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode):
                raise Problem(key_node.start_mark, "a key must be a name, not a list or mapping")
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            first = seen.setdefault(key_node.value, key_node.start_mark)
            if first is not key_node.start_mark:
                self.note(key_node.start_mark, f"duplicate key {clip(repr(key_node.value), 40)} (first "
                          f"on line {first.line + 1}); each key may appear once in a mapping")
        self.flatten_mapping(node)
        mapping = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise Problem(key_node.start_mark, "a key must be a name, not a list or mapping")
            mapping[key_node.value] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_int(self, node: ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python refuses int() of more than 4300 digits
            self.note(node.start_mark, f"the number {clip(node.value, 20)} has {len(node.value):,} "
                      "digits; far too large for any setting")
            return 0

    def construct_text(self, node: ScalarNode) -> str:
        return str(self.construct_scalar(node))

    def construct_unsupported(self, node: Node) -> None:
        self.note(node.start_mark, f"the tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not "
                  "supported; use plain strings, numbers, booleans, lists and mappings")


# Unquoted dates stay text (the schema then reports them where a date makes no sense).
_Strict.add_constructor("tag:yaml.org,2002:timestamp", _Strict.construct_text)  # type: ignore[type-var]
_Strict.add_constructor("tag:yaml.org,2002:int", _Strict.construct_yaml_int)  # type: ignore[type-var]
for _tag in _UNSUPPORTED:
    _Strict.add_constructor(f"tag:yaml.org,2002:{_tag}", _Strict.construct_unsupported)  # type: ignore[type-var]


class StrictLoader(Reader, Scanner, Parser, _Strict):
    """The pure-Python parser: its messages are the ones every problem is reported with."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        self._start()


_CParser: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None)  # None: PyYAML without libyaml


class _FastLoader(_Strict, _CParser or object):  # type: ignore[misc]
    """libyaml's parser under the same strict composer and constructor: a config listing
    10,000 projects loads in a fraction of the time. Used only for files it loads without
    any problem; anything else is loaded again by StrictLoader, for its messages."""

    def __init__(self, stream: str) -> None:
        _CParser.__init__(self, stream)
        self._start()


def fast(text: str) -> tuple[bool, Any]:
    """(True, value) when libyaml parses the text and the strict checks find nothing."""
    if _CParser is None or _UNCOMMON.search(text) or Reader.NON_PRINTABLE.search(text):
        return False, None
    loader = _FastLoader(text)
    try:
        value = loader.get_single_data()
    except (yaml.YAMLError, Problem, RecursionError):
        return False, None
    finally:
        loader.dispose()
    return not loader.problems, value
