"""Find and load the main config: read the YAML, apply NIGHTSHIFT_* environment overrides,
validate it (config_schema.py, config_checks.py) and fill in the schema's defaults.

Every problem is collected and reported at once, one line each, as
`config error: <source>: <dotted.key>: <what is wrong; what is allowed>`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nightshift_tasks.catalog import builtin_slugs
from nightshift_tasks.config_checks import normalise_enums, semantic_errors, value_errors
from nightshift_tasks.config_schema import (
    apply_defaults,
    expand_paths,
    load_schema,
    placed,
    scalar_keys,
    type_name,
    validate,
)
from nightshift_tasks.durations import parse_duration
from nightshift_tasks.errors import ConfigError as ConfigError
from nightshift_tasks.errors import dotted, quote
from nightshift_tasks.paths import PROJECT_CONFIG, find_config, nightshift_home, xdg_config
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
        raise ConfigError([f"config error: {path}: (top level): is {type_name(raw)}; "
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
