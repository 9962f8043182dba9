"""A project's own nightshift.yaml: checked by the same schema and rules as the main config,
limited to the keys that may differ per project, and merged over the main config."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nightshift_tasks.config import Config
from nightshift_tasks.config_checks import normalise_enums, semantic_errors, value_errors
from nightshift_tasks.config_schema import load_schema, placed, type_name, validate
from nightshift_tasks.errors import ConfigError, dotted
from nightshift_tasks.paths import PROJECT_CONFIG, xdg_config
from nightshift_tasks.projects import ProjectRef
from nightshift_tasks.yaml_load import read_yaml_placed

# The keys a project's own nightshift.yaml may set (§1.5 of the behaviour spec).
PROJECT_KEYS = {
    ("schedule", "cron"), ("schedule", "interval"), ("budget", "max_percent"),
    ("budget", "reserve_percent"), ("tasks", "enabled"), ("tasks", "disabled"),
    ("tasks", "priorities"), ("providers", "claude", "enabled"), ("providers", "codex", "enabled"),
    ("logging", "level"),
}
# Of those, the ones that cannot differ per project: accepted, and reported as ignored.
GLOBAL_ONLY = {("schedule", "cron"), ("schedule", "interval"), ("logging", "level")}


def _leaves(data: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Key paths, stopping at project keys (so maps like tasks.priorities stay whole)."""
    if prefix in PROJECT_KEYS or not isinstance(data, dict):
        yield prefix
        return
    for key, value in data.items():
        yield from _leaves(value, (*prefix, str(key)))


def load_project_override(path: Path, known_slugs: list[str]) -> tuple[dict[str, Any], list[str]]:
    """A project's own config: validated by the same schema, limited to PROJECT_KEYS.

    Returns the override and notes about keys that have no per-project effect.
    """
    schema = load_schema("config.schema.json")
    raw, where = read_yaml_placed(path)
    if raw is None:
        return {}, []
    if not isinstance(raw, dict):
        raise ConfigError([f"config error: {path}: (top level): is {type_name(raw)}; expected a "
                           "mapping"])
    normalise_enums(raw, schema)
    errors = (validate(raw, schema, str(path)) + value_errors(raw, schema, str(path))
              + semantic_errors(raw, str(path), known_slugs))
    allowed = ", ".join(sorted(dotted(k) for k in PROJECT_KEYS))
    notes = []
    for key in _leaves(raw):
        if key == ("projects",):
            errors.append(f"config error: {path}: projects: a project's own {PROJECT_CONFIG} cannot "
                          "list projects; this looks like a main config: pass it as config=PATH or "
                          f"move it to {xdg_config()}")
        elif key not in PROJECT_KEYS:
            errors.append(f"config error: {path}: {dotted(key)}: cannot be set per project; "
                          f"allowed here: {allowed}")
        elif key in GLOBAL_ONLY:
            notes.append(f"{path}: {dotted(key)} is global; the per-project value is ignored")
    if errors:
        raise ConfigError(placed(sorted(set(errors)), str(path), where))
    return raw, notes


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings; lists and scalars from the override replace the base's."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def project_data(config: Config, ref: ProjectRef, slugs: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The config as it applies to one project: its own nightshift.yaml merged over the main one."""
    path = Path(ref.config or Path(ref.repo) / PROJECT_CONFIG)
    if (ref.url and not ref.config) or not path.is_file() or path.resolve() == config.path.resolve():
        return config.data, []
    override, notes = load_project_override(path, slugs)
    return merged(config.data, override), notes
