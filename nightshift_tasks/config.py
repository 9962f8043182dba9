"""Load the YAML config, apply environment overrides, validate it against the schema,
and fill in the schema's defaults.

Every problem is collected and reported at once, one line each, as
`config error: <source>: <dotted.key>: <what is wrong; what is allowed>`.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from nightshift_tasks.catalog import builtin_slugs
from nightshift_tasks.config_checks import normalise_enums, resolve, semantic_errors, value_errors
from nightshift_tasks.durations import parse_duration
from nightshift_tasks.errors import ConfigError as ConfigError
from nightshift_tasks.errors import clip, dotted, quote
from nightshift_tasks.paths import PROJECT_CONFIG, find_config, nightshift_home, schema_dir, xdg_config
from nightshift_tasks.yaml_load import read_yaml_placed

ENV_PREFIX = "NIGHTSHIFT_"
# Names the original tool also honoured, beside the automatic NIGHTSHIFT_<SECTION>_<KEY>.
ENV_ALIASES = {"NIGHTSHIFT_LOG_LEVEL": ("logging", "level"), "NIGHTSHIFT_LOG_PATH": ("logging", "path")}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Config:
    """A validated config with defaults applied; `data` mirrors the schema's shape."""

    path: Path
    data: dict[str, Any]
    env_keys: dict[str, str] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        value: dict[str, Any] = self.data[name]
        return value

    def state_db(self) -> Path:
        """budget.db_path, else $NIGHTSHIFT_HOME/state.db."""
        return Path(self.section("budget").get("db_path") or nightshift_home() / "state.db")

    def state_location(self) -> str:
        """state.database (a fleet's PostgreSQL URL), else the SQLite file's path."""
        return str(self.section("state").get("database") or self.state_db())

    def state_lease(self) -> float:
        """state.lease in seconds."""
        return parse_duration(self.section("state")["lease"])

    def db_lock_wait(self) -> float:
        """budget.db_lock_wait in seconds."""
        return parse_duration(self.section("budget")["db_lock_wait"])

    def log_dir(self) -> Path:
        """logging.path, else $NIGHTSHIFT_HOME/logs."""
        return Path(self.section("logging").get("path") or nightshift_home() / "logs")


def split_variables(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Our commands take doit-style `name=value` variables (config=PATH) beside options:
    (variables, the other arguments)."""
    variables, rest = {}, []
    for arg in argv:
        if "=" in arg and not arg.startswith("-"):
            name, value = arg.split("=", 1)
            variables[name] = value
        else:
            rest.append(arg)
    return variables, rest


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    with open(schema_dir() / name, encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


def scalar_keys(schema: dict[str, Any]) -> dict[tuple[str, ...], str]:
    """Every scalar key reachable through object properties, with its JSON type."""
    found: dict[tuple[str, ...], str] = {}

    def walk(node: dict[str, Any], prefix: tuple[str, ...]) -> None:
        node = resolve(schema, node)
        props = node.get("properties")
        if isinstance(props, dict):
            for key, sub in props.items():
                walk(sub, (*prefix, key))
            return
        kind = node.get("type", "string" if "enum" in node else None)
        if prefix and kind in ("string", "integer", "boolean", "number"):
            found[prefix] = kind

    walk(schema, ())
    return found


def env_overrides(
    data: dict[str, Any], schema: dict[str, Any], env: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Apply NIGHTSHIFT_<SECTION>_<KEY> variables to scalar keys, in place.

    Returns {dotted key: variable name} for error attribution, and the conversion errors.
    """
    names = {ENV_PREFIX + "_".join(k).upper(): k for k in scalar_keys(schema)}
    kinds = scalar_keys(schema)
    applied: dict[str, str] = {}
    errors: list[str] = []
    # Aliases first, so the automatic name wins when both are set.
    for var, key in [*ENV_ALIASES.items(), *names.items()]:
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        kind = kinds[key]
        value: Any = raw
        if kind == "boolean":
            if raw.lower() not in _TRUE | _FALSE:
                errors.append(f"config error: ${var}: {dotted(key)}: {quote(raw)} is not a boolean; "
                              "use true or false")
                continue
            value = raw.lower() in _TRUE
        elif kind == "integer":
            try:
                value = int(raw)
            except ValueError:
                errors.append(f"config error: ${var}: {dotted(key)}: {quote(raw)} is not an integer")
                continue
        node = data
        for part in key[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[key[-1]] = value
        applied[dotted(key)] = f"${var}"
    return applied, errors


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping", type(None): "empty"}.get(type(value), "a value")


def describe(error: jsonschema.ValidationError, schema: dict[str, Any]) -> list[tuple[str, str]]:
    """Turn one schema error into (dotted key, 'what is wrong; what is allowed') pairs."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        return _unknown_keys(error, schema)
    return [_describe_one(error, schema)]


def _unknown_keys(error: jsonschema.ValidationError, schema: dict[str, Any]) -> list[tuple[str, str]]:
    sub = resolve(schema, error.schema) if isinstance(error.schema, dict) else {}
    allowed = sorted(sub.get("properties", {}))
    found = []
    instance: Any = error.instance
    for name in sorted(set(instance) - set(allowed)):
        close = difflib.get_close_matches(name, allowed, n=1) if len(name) < 100 else []
        hint = f"did you mean '{close[0]}'? " if close else ""
        listed = ", ".join(allowed) if allowed else "none"
        found.append((dotted([*error.absolute_path, name]), f"unknown key; {hint}allowed keys: {listed}"))
    return found


def _describe_one(error: jsonschema.ValidationError, schema: dict[str, Any]) -> tuple[str, str]:
    path = list(error.absolute_path)
    key = dotted(path)
    sub = resolve(schema, error.schema) if isinstance(error.schema, dict) else {}
    custom = sub.get("errorMessage")
    value = error.instance
    kind = error.validator
    expected: Any = error.validator_value
    if custom and kind in ("pattern", "anyOf", "oneOf"):
        return key, f"{quote(value)} is {custom}" if kind == "pattern" else custom
    if kind == "enum":
        choices = ", ".join(json.dumps(v) for v in expected)
        return key, f"{clip(json.dumps(value))} is not allowed; allowed: {choices}"
    if kind == "type":
        want = " or ".join(expected) if isinstance(expected, list) else expected
        return key, f"is {_type_name(value)}; expected {want}"
    if kind in ("minimum", "maximum"):
        low, high = sub.get("minimum"), sub.get("maximum")
        if low is not None and high is not None:
            return key, f"{quote(value, 24)} is out of range; allowed: {low} to {high}"
        bound = f"at least {low}" if low is not None else f"at most {high}"
        return key, f"{quote(value, 24)} is out of range; allowed: {bound}"
    if kind == "required":
        return key, f"{error.message}; add it"
    if kind == "uniqueItems":
        return key, "lists an entry more than once; each may appear once"
    if kind == "minItems":
        return key, f"needs at least {expected} {'entry' if expected == 1 else 'entries'}"
    if kind in ("minProperties", "maxProperties"):
        return key, "each entry must have exactly one key"
    return key, clip(error.message, 200)


def validate(data: Any, schema: dict[str, Any], source: str,
             env_keys: Mapping[str, str] | None = None) -> list[str]:
    """All schema problems as formatted lines, sorted by key so the output is stable."""
    validator = jsonschema.Draft202012Validator(schema)
    lines = []
    for error in validator.iter_errors(data):
        for key, message in describe(error, schema):
            origin = (env_keys or {}).get(key, source)
            lines.append((key, f"config error: {origin}: {key}: {message}"))
    return [line for _, line in sorted(lines)]


def apply_defaults(data: Any, node: dict[str, Any], schema: dict[str, Any]) -> None:
    """Fill missing keys from the schema's `default`s, recursing into objects and lists."""
    node = resolve(schema, node)
    if isinstance(data, dict):
        for key, sub in node.get("properties", {}).items():
            sub = resolve(schema, sub)
            if key not in data and "default" in sub:
                data[key] = copy.deepcopy(sub["default"])
            if key in data:
                apply_defaults(data[key], sub, schema)
    elif isinstance(data, list) and isinstance(node.get("items"), dict):
        for item in data:
            apply_defaults(item, node["items"], schema)


def expand_paths(data: Any, node: dict[str, Any], schema: dict[str, Any], base: Path) -> Any:
    """Expand ~ and make relative paths relative to the config file's directory."""
    node = resolve(schema, node)
    if isinstance(data, dict):
        for key, sub in node.get("properties", {}).items():
            if key in data:
                data[key] = expand_paths(data[key], sub, schema, base)
    elif isinstance(data, list) and isinstance(node.get("items"), dict):
        return [expand_paths(item, node["items"], schema, base) for item in data]
    elif isinstance(data, str) and node.get("format") == "path":
        return str(base / os.path.expanduser(data))
    return data


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
        raise ConfigError([f"config error: {path}: (top level): is {_type_name(raw)}; expected a "
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


def placed(lines: list[str], source: str, where: Mapping[str, str]) -> list[str]:
    """Each `config error: <source>: <dotted.key>: ...` line with the key's line and column in
    the file: `config error: <source>: line N, column M: <dotted.key>: ...`."""
    out = []
    head = f"config error: {source}: "
    for line in lines:
        rest = line.removeprefix(head)
        keys = [rest[:i] for i in range(len(rest)) if rest.startswith(": ", i)] if rest != line else []
        found = next((where[k] for k in keys if k in where), None)
        while keys and not found and re.search(r"[.\[]", keys[0]):  # a missing key: its parent's
            keys[0] = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", keys[0])
            found = where.get(keys[0])
        out.append(f"{head}{found}: {rest}" if found else line)
    return out


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings; lists and scalars from the override replace the base's."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def schema_defaults() -> dict[str, Any]:
    """What an empty config means: every default from the schema."""
    schema = load_schema("config.schema.json")
    data: dict[str, Any] = {}
    apply_defaults(data, schema, schema)
    return data


NO_CONFIG = """\
nightshift: no config found. It looks for `config=PATH` on the command line, then
$NIGHTSHIFT_CONFIG, then $XDG_CONFIG_HOME/nightshift/config.yaml (~/.config/nightshift/config.yaml).
To start, `nightshift-tasks init ~/src` writes a commented config there listing the git
repositories under ~/src; then `nightshift-tasks list` shows the plan. Or try
`nightshift-tasks demo` for an offline demo."""


def project_file_error(path: Path, raw: dict[str, Any]) -> str | None:
    """A project's own nightshift.yaml given as the main config: it lists no projects, so the
    run would do nothing and say nothing."""
    if path.name != PROJECT_CONFIG or "projects" in raw or not (path.parent / ".git").exists():
        return None
    return (f"config error: {path}: this is a project's own {PROJECT_CONFIG} (at the top of a git "
            "checkout, with no `projects:`), which only overrides settings for that project; the "
            f"main config lists your repositories under `projects:`: `nightshift-tasks init` writes "
            f"one to {xdg_config()}")


def open_config(var: str | None, cwd: Path, env: Mapping[str, str] = os.environ) -> Config:
    """Find the config by the lookup order and load it; ConfigError when there is none."""
    path, why = find_config(var, cwd, env)
    if path is None:
        raise ConfigError([f"config error: {why}" if why else NO_CONFIG])
    return load_config(path, builtin_slugs(), env)


def load_config(path: Path, known_slugs: list[str],
                env: Mapping[str, str] = os.environ) -> Config:
    """Read, override, validate, default and expand; raise ConfigError listing every problem."""
    schema = load_schema("config.schema.json")
    raw, where = read_yaml_placed(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"config error: {path}: (top level): is {_type_name(raw)}; "
                           "expected a mapping of sections such as projects, tasks, providers"])
    wrong_kind = project_file_error(path, raw)
    if wrong_kind:
        raise ConfigError([wrong_kind])
    env_keys, errors = env_overrides(raw, schema, env)
    normalise_enums(raw, schema)
    errors += validate(raw, schema, str(path), env_keys)
    errors += value_errors(raw, schema, str(path), env_keys)
    errors += semantic_errors(raw, str(path), known_slugs)
    if errors:
        raise ConfigError(placed(errors, str(path), where))
    apply_defaults(raw, schema, schema)
    expand_paths(raw, schema, schema, path.parent)
    return Config(path=path, data=raw, env_keys=env_keys)
