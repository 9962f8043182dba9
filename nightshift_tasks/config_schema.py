"""The config's JSON Schema: loading it, turning its errors into one line each that names the
dotted key, what is wrong and what is allowed, and filling in its defaults and paths.

config.py (the main config) and project_config.py (a project's own file) both check with it.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema

from nightshift_tasks.config_checks import resolve
from nightshift_tasks.errors import clip, dotted, quote
from nightshift_tasks.paths import schema_dir


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


def type_name(value: Any) -> str:
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
        return key, f"is {type_name(value)}; expected {want}"
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


def schema_defaults() -> dict[str, Any]:
    """What an empty config means: every default from the schema."""
    schema = load_schema("config.schema.json")
    data: dict[str, Any] = {}
    apply_defaults(data, schema, schema)
    return data


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
