"""The package's rooms: each provider is one module and one schema entry."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from nightshift_tasks import agents
from nightshift_tasks.paths import schema_dir

PACKAGE = Path(agents.__file__).parent.parent
ROOT = PACKAGE.name
SHARED = {"__init__", "base", "readings"}  # agents/ modules that are not providers
# Where a provider's name may still be written outside agents/: data, not behaviour.
NAMED_ELSEWHERE = {"config.py"}  # PROJECT_KEYS: the provider keys a project file may set


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
