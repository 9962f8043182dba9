"""Rules a JSON Schema cannot state well: exclusive keys, references to task slugs, bounds
on every number and duration, and case-insensitive enum values.

All of these run on data that has not passed the schema yet, so every problem is reported
in one go; none may raise on a value of an unexpected type.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from nightshift_tasks import cron, urls
from nightshift_tasks.durations import parse_duration
from nightshift_tasks.errors import dotted, quote
from nightshift_tasks.window import valid_zone

MAX_INT = 10**15  # beyond any token count or priority, and safe in SQLite and as a float
MAX_DURATION_DAYS = 36500
DURATION_REF = "#/$defs/duration"


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """A schema node with its `$ref` (to #/$defs/...) merged in."""
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        merged = dict(schema["$defs"][ref.removeprefix("#/$defs/")])
        merged.update({k: v for k, v in node.items() if k != "$ref"})
        return merged
    return node


def schema_values(data: Any, node: dict[str, Any], schema: dict[str, Any],
                  path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any, dict[str, Any]]]:
    """(key path, value, unresolved schema node) for every value the schema describes."""
    yield path, data, node
    node = resolve(schema, node)
    if isinstance(data, dict):
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        for key, value in data.items():
            sub = props.get(key, extra)
            if isinstance(sub, dict):
                yield from schema_values(value, sub, schema, (*path, key))
    elif isinstance(data, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(data):
            yield from schema_values(item, node["items"], schema, (*path, i))


def _norm(text: str) -> str:
    return text.lower().replace("-", "").replace("_", "").replace(" ", "")


def canonical_choice(value: str, choices: list[str]) -> str | None:
    """The choice `value` names, ignoring case, '-', '_' and spaces (PR, Very-High, veryhigh)."""
    found = [c for c in choices if _norm(c) == _norm(value)]
    return found[0] if len(found) == 1 else None


def normalise_enums(data: Any, schema: dict[str, Any]) -> None:
    """Rewrite enum values written in another case to the schema's spelling, in place."""
    for path, value, node in list(schema_values(data, schema, schema)):
        choices = resolve(schema, node).get("enum")
        if not path or not isinstance(value, str) or not isinstance(choices, list) or value in choices:
            continue
        found = canonical_choice(value, [c for c in choices if isinstance(c, str)])
        if found is not None:
            parent = data
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]] = found


def value_errors(data: Any, schema: dict[str, Any], source: str,
                 env_keys: Mapping[str, str] | None = None) -> list[str]:
    """Numbers out of any sane range, NUL characters, durations longer than a century, and
    cron expressions with a field out of its range or that never fire."""
    lines = []
    for path, value, node in schema_values(data, schema, schema):
        key = dotted(path)
        origin = (env_keys or {}).get(key, source)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            lines.append(f"config error: {origin}: {key}: {quote(value, 24)} is out of range; "
                         f"allowed: -{MAX_INT} to {MAX_INT}")
        elif isinstance(value, str) and "\0" in value:
            lines.append(f"config error: {origin}: {key}: {quote(value)} contains a NUL character, "
                         "which no path, argument or name can hold")
        elif isinstance(value, str) and node.get("format") == "cron":
            problem = cron_problem(value)
            if problem:
                lines.append(f"config error: {origin}: {key}: {quote(value)} {problem}")
        elif isinstance(value, str) and node.get("$ref") == DURATION_REF:
            try:
                seconds = parse_duration(value)
            except ValueError:
                continue  # the schema's pattern reports it
            if seconds > MAX_DURATION_DAYS * 86400:
                lines.append(f"config error: {origin}: {key}: {quote(value)} is too long; allowed: "
                             f"at most {MAX_DURATION_DAYS}d")
    return lines


def cron_problem(expression: str) -> str | None:
    """What is wrong with a cron expression, or None."""
    try:
        cron.next_run(cron.expand(expression), datetime(2001, 1, 1))
    except ValueError as exc:
        return str(exc) if str(exc).startswith(("is ", "never ")) else f"is not a cron expression: {exc}"
    return None


def _get(data: Any, *keys: str) -> Any:
    """Look up a nested key in data that may not have passed the schema yet."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _slug_refs(data: dict[str, Any]) -> list[tuple[str, Any]]:
    refs: list[tuple[str, Any]] = []
    for name in ("enabled", "disabled"):
        refs += [(f"tasks.{name}[{i}]", s) for i, s in enumerate(_list(_get(data, "tasks", name)))]
    for name in ("priorities", "intervals"):
        mapping = _get(data, "tasks", name)
        refs += [(dotted(("tasks", name, s)), s) for s in (mapping if isinstance(mapping, dict) else {})]
    for p, proj in enumerate(_list(data.get("projects"))):
        refs += [(f"projects[{p}].tasks[{i}]", s) for i, s in enumerate(_list(_get(proj, "tasks")))]
    return refs


def _custom_errors(data: dict[str, Any], source: str, builtin: set[str]) -> list[str]:
    """Custom task slugs must be new and unique."""
    lines = []
    first: dict[str, int] = {}
    for i, entry in enumerate(_list(_get(data, "tasks", "custom"))):
        slug = entry.get("type") if isinstance(entry, dict) else None
        if not isinstance(slug, str):
            continue
        if slug in builtin:
            lines.append(f"config error: {source}: tasks.custom[{i}].type: {quote(slug)} is a "
                         "built-in task; choose another slug")
        elif slug in first:
            lines.append(f"config error: {source}: tasks.custom[{i}].type: {quote(slug)} is also "
                         f"tasks.custom[{first[slug]}].type; each custom task needs its own slug")
        first.setdefault(slug, i)
    return lines


def semantic_errors(data: dict[str, Any], source: str, known_slugs: list[str]) -> list[str]:
    """Exclusive keys, the time zone, the command provider's argv and task slug references."""
    lines = []
    if _get(data, "schedule", "cron") and _get(data, "schedule", "interval"):
        lines.append(f"config error: {source}: schedule: cron and interval are both set; "
                     "set only one of them")
    timezone = _get(data, "schedule", "window", "timezone")
    if isinstance(timezone, str) and timezone and not valid_zone(timezone):
        lines.append(f"config error: {source}: schedule.window.timezone: {quote(timezone)} is not a "
                     "known time zone; use an IANA name such as Europe/Berlin or America/Denver")
    if _get(data, "providers", "command", "enabled") is True and _get(
            data, "providers", "command", "argv") is None:
        lines.append(f"config error: {source}: providers.command.argv: missing; an enabled "
                     'command provider needs argv, e.g. ["my-agent", "--print", "{prompt}"]')
    lines += urls.config_errors(data, source)
    builtin = set(known_slugs)
    lines += _custom_errors(data, source, builtin)
    custom = [_get(e, "type") for e in _list(_get(data, "tasks", "custom"))]
    slugs = builtin | {s for s in custom if isinstance(s, str)}
    for key, slug in _slug_refs(data):
        if isinstance(slug, str) and slug not in slugs:
            close = difflib.get_close_matches(slug, sorted(slugs), n=1) if len(slug) < 100 else []
            hint = f"did you mean '{close[0]}'? " if close else ""
            lines.append(f"config error: {source}: {key}: unknown task {quote(slug)}; {hint}"
                         "see nightshift_tasks/catalog.yaml for every task")
    return lines
