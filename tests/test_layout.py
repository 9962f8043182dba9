"""The package's rooms: no import cycle, and each provider is one module and one schema entry."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nightshift_tasks
from nightshift_tasks import agents
from nightshift_tasks.paths import schema_dir

PACKAGE = Path(nightshift_tasks.__file__).parent
ROOT = nightshift_tasks.__name__
SHARED = {"__init__", "base", "readings"}  # agents/ modules that are not providers
# Where a provider's name may still be written outside agents/: data, not behaviour.
NAMED_ELSEWHERE = {"project_config.py"}  # PROJECT_KEYS: the provider keys a project file may set


def modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its file (a function's import
    included: an import hidden in a function is still a cycle)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            out |= {f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names}
    return {m for m in out if m in known and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each module that is on one (depth-first search)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    known = modules()
    graph = {name: imports(name, path, set(known)) for name, path in known.items()}
    assert graph[f"{ROOT}.summary"], "the import graph is read"  # the walk sees imports at all
    assert cycles(graph) == []


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_each_provider_is_one_module_and_one_schema_entry() -> None:
    providers = json.loads((schema_dir() / "config.schema.json").read_text())["properties"]["providers"]
    keys = set(providers["properties"]) - {"preference"}
    files = {p.stem for p in (PACKAGE / "agents").glob("*.py")} - SHARED
    preference = set(providers["properties"]["preference"]["items"]["enum"])
    assert files == keys == set(agents.PROVIDERS) == preference
    assert all(module.__name__ == f"{ROOT}.agents.{name}" for name, module in agents.PROVIDERS.items())


def test_only_agents_know_a_providers_name() -> None:
    named = set()
    for path in PACKAGE.rglob("*.py"):
        if "agents" in path.relative_to(PACKAGE).parts[:-1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in agents.clis():
                named.add(path.name)
    assert named == NAMED_ELSEWHERE
