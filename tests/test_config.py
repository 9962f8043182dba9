"""Config loading: every error class, defaults from the schema, env overrides, ~ expansion,
and the CLI contract (exit 2, one line per problem, no traceback, nothing written)."""

from __future__ import annotations

import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from nightshift_tasks.catalog import builtin_slugs
from nightshift_tasks.config import ConfigError, load_config
from nightshift_tasks.config_schema import load_schema
from tests.conftest import LAUGHS, ROOT, Env


def errors_for(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, builtin_slugs(), env or {})
    return [line.removeprefix(f"config error: {path}: ") for line in info.value.lines]


@pytest.mark.parametrize(("text", "expected"), [
    ("schedule: {max_taks: 2}",
     "line 1, column 12: schedule.max_taks: unknown key; did you mean 'max_tasks'? allowed keys: "
     "cron, interval, "
     "jitter, max_projects, max_tasks, window"),
    ("budget: {mode: hourly}",
     'line 1, column 10: budget.mode: "hourly" is not allowed; allowed: "daily", "weekly"'),
    ("budget: {max_percent: 101}", "line 1, column 10: budget.max_percent: 101 is out of range; "
     "allowed: 0 to 100"),
    ("schedule: {max_tasks: 0}", "line 1, column 12: schedule.max_tasks: 0 is out of range; "
     "allowed: at least 1"),
    ("schedule: {max_tasks: two}", "line 1, column 12: schedule.max_tasks: is a string; expected integer"),
    ("tasks: {intervals: {lint-fix: 2w}}",
     "line 1, column 21: tasks.intervals.lint-fix: '2w' is not a duration; use Go syntax such as 30m, 1h30m, "
     "168h, or 7d"),
    ("projects: [{priority: 1}]", "line 1, column 12: projects[0]: each project needs exactly one of "
     "'path', 'pattern' or 'url'"),
    ("providers: {preference: [codex, codex]}",
     "line 1, column 13: providers.preference: lists an entry more than once; each may appear once"),
    ("schedule: {window: {start: '25:00', end: '06:00'}}",
     "line 1, column 21: schedule.window.start: '25:00' is not a time of day; use HH:MM between "
     "00:00 and 23:59"),
    ("schedule: {window: {start: '22:00'}}",
     "line 1, column 12: schedule.window: 'end' is a required property; add it"),
    ("schedule: {cron: '0 2 * * *', interval: 1h}",
     "line 1, column 1: schedule: cron and interval are both set; set only one of them"),
    ("tasks: {enabled: [lint-fixx]}",
     "line 1, column 19: tasks.enabled[0]: unknown task 'lint-fixx'; did you mean 'lint-fix'? see "
     "nightshift_tasks/catalog.yaml for every task"),
    ("tasks: {custom: [{type: lint-fix, name: L, description: d}]}",
     "line 1, column 19: tasks.custom[0].type: 'lint-fix' is a built-in task; choose another slug"),
    ("tasks: {custom: [{type: mine, name: Mine}]}",
     "line 1, column 18: tasks.custom[0]: 'description' is a required property; add it"),
    ("tasks: {custom: [{type: My Task, name: M, description: d}]}",
     "line 1, column 19: tasks.custom[0].type: 'My Task' is not a task slug; use lower-case "
     "letters, digits and dashes"),
    ("tasks: {custom: [{type: mine, name: M, description: d, category: misc}]}",
     'line 1, column 56: tasks.custom[0].category: "misc" is not allowed; allowed: "pr", '
     '"analysis", "options", "safe", '
     '"map", "emergency"'),
    ("providers: {command: {enabled: true}}",
     'line 1, column 13: providers.command.argv: missing; an enabled command provider needs argv, e.g. '
     '["my-agent", "--print", "{prompt}"]'),
    ("- just\n- a list\n",
     "(top level): is a list; expected a mapping of sections such as projects, tasks, providers"),
])
def test_each_error_class_has_a_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    assert errors_for(tmp_path, text) == [expected]


def test_every_problem_is_reported_at_once_sorted_by_key(tmp_path: Path) -> None:
    lines = errors_for(tmp_path, "budget: {mode: x}\nschedule: {max_tasks: 0}\nbogus: 1\n")
    assert [line.split(": ")[:2] for line in lines] == [
        ["line 3, column 1", "bogus"], ["line 1, column 10", "budget.mode"],
        ["line 2, column 12", "schedule.max_tasks"]]


def test_broken_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("projects:\n  - path: /x\n  bad: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, builtin_slugs(), {})
    assert info.value.lines == [
        f"config error: {path}: line 3, column 3: invalid YAML: expected <block end>, but found '?'"]


def test_defaults_come_from_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("projects: [{path: ~/src/app}]\n")
    config = load_config(path, builtin_slugs(), {})
    assert config.section("schedule") == {"max_projects": 0, "max_tasks": 1}
    assert config.section("providers")["preference"] == [
        "claude", "codex", "copilot", "gemini", "opencode", "command"]
    assert config.section("providers")["codex"]["dangerously_bypass_approvals_and_sandbox"] is False
    assert config.data["projects"] == [{"path": str(Path.home() / "src/app"), "priority": 0,
                                        "exclude": []}]
    assert config.section("providers")["claude"]["data_path"] == str(Path.home() / ".claude")


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("projects: [{path: repos/app}]\n")
    assert load_config(path, builtin_slugs(), {}).data["projects"][0]["path"] == \
        str(tmp_path / "repos/app")


def test_environment_overrides_scalar_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("budget: {max_percent: 50}\n")
    config = load_config(path, builtin_slugs(), {
        "NIGHTSHIFT_BUDGET_MAX_PERCENT": "80", "NIGHTSHIFT_PROVIDERS_CLAUDE_ENABLED": "false",
        "NIGHTSHIFT_LOG_LEVEL": "debug", "NIGHTSHIFT_SCHEDULE_MAX_TASKS": "3"})
    assert config.section("budget")["max_percent"] == 80
    assert config.section("providers")["claude"]["enabled"] is False
    assert config.section("logging")["level"] == "debug"
    assert config.section("schedule")["max_tasks"] == 3


def test_bad_environment_values_name_the_variable(tmp_path: Path) -> None:
    lines = errors_for(tmp_path, "{}", {"NIGHTSHIFT_BUDGET_MAX_PERCENT": "lots",
                                        "NIGHTSHIFT_BUDGET_MODE": "hourly",
                                        "NIGHTSHIFT_PROVIDERS_CODEX_ENABLED": "maybe"})
    assert sorted(lines) == sorted([
        "config error: $NIGHTSHIFT_BUDGET_MAX_PERCENT: budget.max_percent: 'lots' is not an integer",
        "config error: $NIGHTSHIFT_PROVIDERS_CODEX_ENABLED: providers.codex.enabled: 'maybe' is "
        "not a boolean; use true or false",
        "config error: $NIGHTSHIFT_BUDGET_MODE: budget.mode: \"hourly\" is not allowed; "
        'allowed: "daily", "weekly"'])


def test_example_config_validates_and_loads() -> None:
    data = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    jsonschema.Draft202012Validator(load_schema("config.schema.json")).validate(data)
    load_config(ROOT / "config.example.yaml", builtin_slugs(), {})


@pytest.mark.parametrize("command", [["list"], ["run", "-n", "2"]])
def test_bad_config_exits_2_without_traceback_or_writes(env: Env, command: list[str]) -> None:
    env.projects(["alpha"])
    env.write_config({"budget": {"mode": "hourly"}})
    env.config.write_text(env.config.read_text() + "extra: 1\n")
    result = env.doit(*command)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f'config error: {env.config}: line 2, column 3: budget.mode: "hourly" is not allowed; allowed: '
        '"daily", "weekly"',
        f"config error: {env.config}: line 20, column 1: extra: unknown key; allowed keys: budget, "
        "integrations, "
        "logging, projects, providers, publish, reporting, schedule, state, tasks"]
    assert not env.home.exists()
    assert not env.record.exists()


def test_missing_config_explains_how_to_start(env: Env) -> None:
    result = env.doit("list", config=False)
    assert result.returncode == 2
    assert "no config found" in result.stderr and "`nightshift-tasks init ~/src`" in result.stderr
    assert "Traceback" not in result.stderr
    assert not env.home.exists()


def test_explicit_config_that_does_not_exist_is_an_error(env: Env) -> None:
    result = env.doit("list", config=False, NIGHTSHIFT_CONFIG=str(env.tmp / "nope.yaml"))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"config error: $NIGHTSHIFT_CONFIG names "
                                     f"{env.tmp / 'nope.yaml'}, which does not exist")


UNKNOWN_TOP = "unknown key; allowed keys: budget, integrations, logging, projects, providers, publish, " \
              "reporting, schedule, state, tasks"
NOT_A_TAG = "is not supported; use plain strings, numbers, booleans, lists and mappings"


@pytest.mark.parametrize(("content", "expected"), [
    ("projects: []\n".encode("utf-16"), ["file is UTF-16; save it as UTF-8"]),
    ("projects: []\n".encode("utf-32"), ["file is UTF-32; save it as UTF-8"]),
    ("projects: []\n".encode("utf-16-le"), [
        "file contains NUL bytes (UTF-16 without a byte-order mark, or not text); save it as UTF-8 text"]),
    (b"reporting:\n  email: caf\xe9\n", ["line 2, column 13: not UTF-8 (byte 0xe9); save the file as UTF-8"]),
    (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", ["line 1, column 67: nested more than 64 levels deep"]),
    (b"projects: &a [*a]\n", ["line 1, column 15: alias *a is inside its own anchor, so it would never "
                              "end; aliases may only repeat finished values"]),
    (b"budget: {mode: !!binary aGVsbG8=}\n", [f"line 1, column 16: the tag !!binary {NOT_A_TAG}"]),
    (b"budget: {mode: !!set {a, b}}\n", [f"line 1, column 16: the tag !!set {NOT_A_TAG}"]),
    (b"budget: {mode: 2024-01-01}\n",
     ['line 1, column 10: budget.mode: "2024-01-01" is not allowed; allowed: "daily", "weekly"']),
    (b"1: x\nbogus: y\n", [f"line 1, column 1: 1: {UNKNOWN_TOP}", f"line 2, column 1: bogus: {UNKNOWN_TOP}"]),
    (b"tasks: {custom: [{type: {a: 1}, name: N, description: d}]}\n",
     ["line 1, column 19: tasks.custom[0].type: is a mapping; expected string"]),
    (b"budget: {weekly_tokens: 1" + b"0" * 400 + b"}\n",
     ["line 1, column 10: budget.weekly_tokens: 10000000000000000000000… is out of range; allowed: "
      "-1000000000000000 to "
      "1000000000000000"]),
    (b"budget: {weekly_tokens: 1" + b"0" * 5000 + b"}\n",
     ["line 1, column 25: the number 1000000000000000000… has 5,001 digits; far too large for any setting"]),
    (b'providers: {claude: {timeout: "30m\\n"}}\n',
     ["line 1, column 22: providers.claude.timeout: '30m\\n' is not a duration; use Go syntax such "
      "as 30m, 1h30m, 168h, or 7d"]),
    (b"projects: []\nschedule: {max_tasks: 2}\nprojects: [{path: /x}]\n",
     ["line 3, column 1: duplicate key 'projects' (first on line 1); each key may appear once in a mapping"]),
    (b'projects: [{path: "/tmp/a\\0b"}]\n',
     ["line 1, column 13: projects[0].path: '/tmp/a\\x00b' contains a NUL character, which no path, "
      "argument or name can hold"]),
    (b"tasks: {intervals: {lint-fix: " + b"x" * 100_000 + b"}}\n",
     [f"line 1, column 21: tasks.intervals.lint-fix: '{'x' * 78}… is not a duration; use Go syntax "
      "such as 30m, 1h30m, 168h, "
      "or 7d"]),
    (b"# " + b"x" * 1_000_000 + b"\n", ["file is larger than 1,000,000 bytes; a config is a few kilobytes"]),
    (LAUGHS.encode(), ["line 5, column 4: expands to more than 50,000 values through aliases; a config "
                       "needs far fewer"]),
], ids=["utf-16", "utf-32", "utf-16-no-bom", "latin-1", "nested-5000", "self-alias", "binary", "set", "date",
        "int-and-str-keys", "mapping-as-slug", "10**400", "5001-digits", "duration-newline", "duplicate-key",
        "nul-in-path", "long-value-quoted-briefly", "huge-file", "billion-laughs"])
def test_unreadable_configs_are_one_line_errors(env: Env, content: bytes, expected: list[str]) -> None:
    env.config.write_bytes(content)
    started = time.monotonic()
    result = env.doit("list")
    assert time.monotonic() - started < 20
    assert "Traceback" not in result.stderr
    assert (result.returncode, result.stderr.splitlines()) == (
        2, [f"config error: {env.config}: {line}" for line in expected])
    assert not env.home.exists()


def test_environment_values_with_a_newline_or_huge_number_are_errors(env: Env) -> None:
    env.projects(["alpha"])
    result = env.doit("list", NIGHTSHIFT_PROVIDERS_COMMAND_TIMEOUT="30m\n",
                      NIGHTSHIFT_BUDGET_WEEKLY_TOKENS="9" * 30)
    assert (result.returncode, result.stderr.splitlines()) == (2, [
        "config error: $NIGHTSHIFT_PROVIDERS_COMMAND_TIMEOUT: providers.command.timeout: '30m\\n' is not a "
        "duration; use Go syntax such as 30m, 1h30m, 168h, or 7d",
        "config error: $NIGHTSHIFT_BUDGET_WEEKLY_TOKENS: budget.weekly_tokens: 99999999999999999999999… is "
        "out of range; allowed: -1000000000000000 to 1000000000000000"])
    assert not env.home.exists()


def test_a_custom_task_slug_given_twice_is_a_config_error(env: Env) -> None:
    env.projects(["alpha"])
    entry = {"type": "mine", "name": "Mine", "description": "d"}
    env.write_config({"tasks": {"enabled": ["mine"], "custom": [entry, {**entry, "name": "Other"}, entry]}})
    result = env.doit("run")
    assert (result.returncode, result.stderr.splitlines()) == (2, [
        f"config error: {env.config}: line {line}, column 5: tasks.custom[{i}].type: 'mine' is also "
        "tasks.custom[0].type; each custom task needs its own slug" for i, line in ((1, 22), (2, 23))])
    assert not env.home.exists()


def test_enum_values_ignore_case_and_dashes(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("budget: {mode: Weekly}\nlogging: {level: DEBUG}\ntasks:\n  custom:\n"
                    "  - {type: mine, name: M, description: d, category: PR, cost_tier: Very_High, "
                    "risk_level: Medium}\n")
    config = load_config(path, builtin_slugs(), {"NIGHTSHIFT_PUBLISH_MODE": "PR"})
    assert (config.section("budget")["mode"], config.section("logging")["level"],
            config.section("publish")["mode"]) == ("weekly", "debug", "pr")
    custom = config.section("tasks")["custom"][0]
    assert (custom["category"], custom["cost_tier"], custom["risk_level"]) == ("pr", "very-high", "medium")


def test_the_schema_is_something_editors_use() -> None:
    schema = load_schema("config.schema.json")
    host = schema["$id"].split("/")[2]
    assert schema["$id"].startswith("https://") and schema["$id"].endswith("/schemas/config.schema.json")
    assert not host.endswith((".invalid", ".example", ".test", ".localhost")), host
    missing = []

    def walk(node: dict[str, object], path: str) -> None:
        for key, sub in node.get("properties", {}).items():  # type: ignore[attr-defined]
            if "description" not in sub:
                missing.append(f"{path}{key}")
            walk(sub, f"{path}{key}.")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[].")  # type: ignore[arg-type]

    walk(schema, "")
    assert missing == []
    first = (ROOT / "config.example.yaml").read_text().splitlines()[0]
    assert first == f"# yaml-language-server: $schema={schema['$id']}"


@pytest.mark.parametrize(("text", "key"), [
    ("budget: {billing_mode: api}", "budget.billing_mode"),
    ("budget: {calibrate_enabled: false}", "budget.calibrate_enabled"),
    ("budget: {snapshot_interval: 1h}", "budget.snapshot_interval"),
    ("budget: {snapshot_retention_days: 3}", "budget.snapshot_retention_days"),
    ("logging: {format: text}", "logging.format"),
    ("reporting: {email: me@example.org}", "reporting.email"),
    ("reporting: {slack_webhook: 'https://hooks.example.org/x'}", "reporting.slack_webhook"),
])
def test_keys_that_would_do_nothing_are_unknown(tmp_path: Path, text: str, key: str) -> None:
    (line,) = errors_for(tmp_path, text)
    assert line.startswith("line 1, column ") and f": {key}: unknown key; " in line
