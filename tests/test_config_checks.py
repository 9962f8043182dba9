"""Property tests over the schema: whatever a config file or NIGHTSHIFT_ variable holds,
loading it either succeeds (and what was loaded can be used) or raises ConfigError with
short single-line messages; never anything else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nightshift_tasks.catalog import build_catalog, builtin_slugs
from nightshift_tasks.config import ConfigError, load_config
from nightshift_tasks.config_checks import DURATION_REF, resolve, schema_values
from nightshift_tasks.config_schema import load_schema, scalar_keys
from nightshift_tasks.durations import parse_duration
from nightshift_tasks.project_config import load_project_override
from nightshift_tasks.yaml_load import read_yaml
from tests.conftest import DODO

SCHEMA = load_schema("config.schema.json")
SLUGS = builtin_slugs()
TEXT = st.text(max_size=12) | st.sampled_from(["30m\n", "1h\x00", "ä\u2028", "Europe/Berlin", "lint-fix"])
JUNK = st.recursive(
    st.none() | st.booleans() | st.floats() | TEXT
    | st.integers() | st.sampled_from([10**15 + 1, -(10**400), 10**4000]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT | st.integers(), inner, max_size=3),
    max_leaves=6)


def shaped(node: dict[str, Any], junk: bool, top: bool = False) -> st.SearchStrategy[Any]:
    """Values that follow the schema's shape at this node (mostly) or, with `junk`, anything,
    with edge cases mixed in: upper-case enum values, pattern matches with a final newline,
    huge numbers, NUL characters and odd keys."""
    node = resolve(SCHEMA, node)
    options: list[st.SearchStrategy[Any]] = []
    if "enum" in node:
        options.append(st.sampled_from(node["enum"]).map(lambda v: v.upper() if isinstance(v, str) else v))
    if "pattern" in node:  # hypothesis may add a final newline where the pattern has `$`
        options.append(st.from_regex(node["pattern"].replace("(?![\\s\\S])", "$")))
    kind = node.get("type")
    if kind == "object":
        props = {k: shaped(v, junk) for k, v in node.get("properties", {}).items()}
        options.append(st.fixed_dictionaries({}, optional=props))
        if isinstance(node.get("additionalProperties"), dict):
            options.append(st.dictionaries(st.sampled_from(SLUGS) | TEXT,
                                           shaped(node["additionalProperties"], junk), max_size=3))
    elif kind == "array":
        options.append(st.lists(shaped(node.get("items", {}), junk), max_size=3))
    elif kind == "integer":
        options.append(st.integers(min_value=-3, max_value=10**16))
    elif kind == "boolean":
        options.append(st.booleans())
    elif kind == "string":
        options.append(TEXT)
    if top or not junk:
        return st.one_of(options) if options else JUNK
    return st.one_of(*options, *options, *options, JUNK) if options else JUNK


CONFIGS = shaped(SCHEMA, junk=True, top=True) | shaped(SCHEMA, junk=False, top=True)
ENV_NAMES = sorted("NIGHTSHIFT_" + "_".join(k).upper() for k in scalar_keys(SCHEMA))
ENVS = st.dictionaries(st.sampled_from(ENV_NAMES),
                       st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=12)
                       | st.sampled_from(["30m\n", "9" * 400, "TRUE", "Weekly"]), max_size=2)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_clean(error: ConfigError) -> None:
    assert error.lines
    for line in error.lines:
        assert line.startswith("config error: ") and "\n" not in line and len(line) < 600, line


def use(config_data: dict[str, Any]) -> None:
    """What the rest of nightshift does with a loaded config must not fail either."""
    build_catalog(config_data["tasks"]["custom"])
    for _, value, node in schema_values(config_data, SCHEMA, SCHEMA):
        if node.get("$ref") == DURATION_REF and isinstance(value, str):
            parse_duration(value)


@FUZZ
@given(data=CONFIGS, env=ENVS)
def test_any_config_loads_or_is_a_config_error(tmp_path_factory: Any, data: Any,
                                               env: dict[str, str]) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    try:
        config = load_config(path, SLUGS, env)
    except ConfigError as exc:
        assert_clean(exc)
    else:
        use(config.data)
    try:
        load_project_override(path, SLUGS)
    except ConfigError as exc:
        assert_clean(exc)


@FUZZ
@given(text=st.lists(st.sampled_from(list("ab:-[]{}&*!<>?|'\"#%@\n\t ,.0123456789~")) | TEXT,
                    max_size=40).map("".join))
def test_any_text_reads_or_is_a_config_error(tmp_path_factory: Any, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        read_yaml(path)
    except ConfigError as exc:
        assert_clean(exc)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=CONFIGS)
def test_doit_list_exits_0_or_2_and_never_with_a_traceback(tmp_path_factory: Any, data: Any) -> None:
    tmp = tmp_path_factory.mktemp("cli")
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTSHIFT_")}
    env.update(NIGHTSHIFT_HOME=str(tmp / "home"), XDG_CONFIG_HOME=str(tmp / "xdg"), PATH="/usr/bin:/bin")
    result = subprocess.run([sys.executable, "-m", "doit", "-f", str(DODO), "list", f"config={path}"],
                            cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 2), result.stderr
    assert "Traceback" not in result.stderr
    assert result.returncode == 0 or not Path(tmp / "home").exists()
