"""Read a YAML config file that may be hostile (a project's own nightshift.yaml is written
by whoever controls the repository): strict UTF-8 and a bounded size here; bounded depth and
alias expansion, no duplicate keys and only the plain JSON-like types in yaml_strict.py.

Every problem becomes `config error: <file>: line N, column M: <what>`; nothing raises
anything but ConfigError. Beside the value, the place of every key and list item, so later
checks can say where in the file a bad key is.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from nightshift_tasks.errors import ConfigError, clip, dotted
from nightshift_tasks.yaml_strict import MAX_DEPTH, Problem, StrictLoader, fast, mark_place

MAX_BYTES = 1_000_000  # a config is a few kilobytes


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
            except (yaml.YAMLError, Problem, RecursionError):  # it parsed once: not expected
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
            here = fixed or mark_place(mark)[:-2]
            found.setdefault(dotted((*path, part)), here)
            stack.append((child, (*path, part), fixed or (alias and mark_place(alias)[:-2])))
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
    parsed, value = fast(text)
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
    except Problem as exc:
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
