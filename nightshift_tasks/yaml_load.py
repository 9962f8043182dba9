"""Read a YAML config file that may be hostile (a project's own nightshift.yaml is written
by whoever controls the repository): strict UTF-8, bounded size, depth and alias expansion,
no duplicate keys, and only the plain JSON-like types.

Every problem becomes `config error: <file>: line N, column M: <what>`; nothing raises
anything but ConfigError. Beside the value, the place of every key and list item, so later
checks can say where in the file a bad key is.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from nightshift_tasks.errors import ConfigError, clip, dotted

MAX_BYTES = 1_000_000  # a config is a few kilobytes
MAX_DEPTH = 64  # nesting of lists and mappings
MAX_VALUES = 50_000  # values in the document, counting each alias as a copy of its anchor
# Where libyaml and PyYAML's own parser part ways (tabs, tags, block scalars, directives,
# reserved characters, line breaks other than \n and \r, a byte-order mark inside the
# text): such a file is left to PyYAML alone.
_UNCOMMON = re.compile("[\t!?|>%@`\x85\u2028\u2029\ufeff]")
_UNSUPPORTED = ("binary", "set", "omap", "pairs")  # tags that make bytes, sets or tuples


class _Problem(Exception):
    """A loader problem at a place in the file; ends the load at once."""

    def __init__(self, mark: Any, what: str) -> None:
        super().__init__(what)
        self.mark, self.what = mark, what


def _where(mark: Any) -> str:
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
        self.problems.append((line, column, f"{_where(mark)}{what}"))

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event: Any = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.open_anchors:
                raise _Problem(event.start_mark, f"alias *{clip(event.anchor, 40)} is inside its own "
                               "anchor, so it would never end; aliases may only repeat finished values")
            if parent is not None:  # the alias's own place: the node it names is elsewhere
                self.aliases[(id(parent), index if isinstance(index, int) else id(index))] = event.start_mark
            return super().compose_node(parent, index)
        if self.depth >= MAX_DEPTH:
            raise _Problem(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
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
            raise _Problem(node.start_mark, f"expands to more than {MAX_VALUES:,} values through "
                           "aliases; a config needs far fewer")
        self.sizes[id(node)] = size
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Keys are names: a scalar key is taken as its text (`1:` is the key "1"), a list or
        mapping as a key is refused, and a key given twice is an error naming both lines."""
        seen: dict[str, yaml.Mark] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode):
                raise _Problem(key_node.start_mark, "a key must be a name, not a list or mapping")
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
                raise _Problem(key_node.start_mark, "a key must be a name, not a list or mapping")
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


def _fast(text: str) -> tuple[bool, Any]:
    """(True, value) when libyaml parses the text and the strict checks find nothing."""
    if _CParser is None or _UNCOMMON.search(text) or Reader.NON_PRINTABLE.search(text):
        return False, None
    loader = _FastLoader(text)
    try:
        value = loader.get_single_data()
    except (yaml.YAMLError, _Problem, RecursionError):
        return False, None
    finally:
        loader.dispose()
    return not loader.problems, value


def decode(path: Path, data: bytes) -> str:
    """Strict UTF-8 (a UTF-8 byte-order mark is fine); other encodings get a clear error."""
    fail = f"config error: {path}: "
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                      (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if data.startswith(bom):
            raise ConfigError([f"{fail}file is {name}; save it as UTF-8"])
    if b"\0" in data:
        raise ConfigError([f"{fail}file contains NUL bytes (UTF-16 without a byte-order mark, or "
                           "not text); save it as UTF-8 text"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError([f"{fail}line {line}, column {column}: not UTF-8 (byte "
                           f"0x{data[exc.start]:02x}); save the file as UTF-8"]) from None


class _LatePlaces(Mapping[str, str]):
    """`places` of a text the fast parser read, found only when an error line needs one:
    libyaml's values carry no marks, and a valid config never needs them."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._found: dict[str, str] | None = None

    def _places(self) -> dict[str, str]:
        if self._found is None:
            loader = StrictLoader(self._text)
            try:
                self._found = places(loader.get_single_node(), loader.aliases)
            except (yaml.YAMLError, _Problem, RecursionError):  # it parsed once: not expected
                self._found = {}
            finally:
                loader.dispose()
        return self._found

    def __getitem__(self, key: str) -> str:
        return self._places()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._places())

    def __len__(self) -> int:
        return len(self._places())


def places(root: Node | None, aliases: dict[tuple[int, Any], Any]) -> dict[str, str]:
    """{dotted key: "line N, column M"} for every mapping key and list item under `root`.
    Everything reached through an alias is placed at the alias."""
    found: dict[str, str] = {}
    stack: list[tuple[Node, tuple[Any, ...], str | None]] = [(root, (), None)] if root else []
    while stack:
        node, path, fixed = stack.pop()
        if isinstance(node, MappingNode):
            children = [(k.value, k.start_mark, aliases.get((id(node), id(k))), v)
                        for k, v in node.value if isinstance(k, ScalarNode)]  # placed at the key
        elif isinstance(node, SequenceNode):
            children = [(i, aliases.get((id(node), i), item.start_mark), aliases.get((id(node), i)), item)
                        for i, item in enumerate(node.value)]
        else:
            continue
        for part, mark, alias, child in children:
            here = fixed or _where(mark)[:-2]
            found.setdefault(dotted((*path, part)), here)
            stack.append((child, (*path, part), fixed or (alias and _where(alias)[:-2])))
    return found


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; every problem names the file and, where there is one, the line."""
    return read_yaml_placed(path)[0]


def read_yaml_placed(path: Path) -> tuple[Any, Mapping[str, str]]:
    """The value, and where each key is (see `places`)."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"config error: {path}: cannot read: {exc.strerror or exc}"]) from None
    if len(data) > MAX_BYTES:
        raise ConfigError([f"config error: {path}: file is larger than {MAX_BYTES:,} bytes; a config "
                           "is a few kilobytes"])
    text = decode(path, data)
    parsed, value = _fast(text)
    if parsed:
        return unshared(value), _LatePlaces(text)
    try:
        loader = StrictLoader(text)  # the reader refuses control characters here already
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ConfigError([f"config error: {path}: line {line}, column {column}: invalid YAML: "
                           f"character U+{exc.character:04X} is not allowed in YAML; remove it"]) from None
    value, where = None, {}
    try:
        root = loader.get_single_node()
        value = None if root is None else loader.construct_document(root)
        where = places(root, loader.aliases)
    except _Problem as exc:
        loader.note(exc.mark, exc.what)
    except yaml.MarkedYAMLError as exc:
        what = clip(exc.problem or exc.context or "invalid YAML", 200)
        loader.note(exc.problem_mark or exc.context_mark, f"invalid YAML: {what}")
    except RecursionError:  # belt and braces: MAX_DEPTH keeps the composer far from the limit
        loader.note(None, f"nested too deeply; at most {MAX_DEPTH} levels")
    finally:
        loader.dispose()
    if loader.problems:
        raise ConfigError([f"config error: {path}: {what}" for *_, what in sorted(loader.problems)])
    return unshared(value), where


def unshared(value: Any) -> Any:
    """A copy in which every alias is its own value, so filling in defaults or expanding
    paths at one place never changes another."""
    if isinstance(value, dict):
        return {key: unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unshared(item) for item in value]
    return value
