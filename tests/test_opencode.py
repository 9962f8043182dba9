"""The real `opencode` binary (npm, pinned in tests/npm) against the Responses API stub, in
a HOME of the test's own, driven by the real doit command line; and its adapter's parts on
opencode's real output lines and on a database shaped like its own."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from nightshift_tasks import agents, state
from nightshift_tasks.agents import opencode
from tests.conftest import DODO, Env, max_overlap, require_npm_cli, summary_rows
from tests.stubs import USAGE, ApiStub
from tests.test_real_clis import calls, phase


@pytest.fixture
def stub() -> Iterator[ApiStub]:
    server = ApiStub().start()
    yield server
    server.stop()


def opencode_env(env: Env, stub: ApiStub, api_key: str | None = "test-key",
                 model: str | None = "stub/m1") -> dict[str, str]:
    """opencode's own config (under the test's $XDG_CONFIG_HOME) naming the stub as its
    provider, and an environment that keeps all its files in the test's HOME and every
    request local: no model catalogue fetch, and an npm registry that is the stub."""
    home = env.tmp / "home-oc"
    options = {"baseURL": f"{stub.url}/v1", **({"apiKey": api_key} if api_key else {})}
    config = {"provider": {"stub": {"npm": "@ai-sdk/openai", "name": "stub", "options": options,
                                    "models": {"m1": {"name": "m1"}}}},
              **({"model": model} if model else {})}
    path = env.tmp / "xdg" / "opencode" / "opencode.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return {"HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_STATE_HOME": str(home / ".local" / "state"), "XDG_CACHE_HOME": str(home / ".cache"),
            "OPENCODE_DISABLE_MODELS_FETCH": "true", "NPM_CONFIG_REGISTRY": f"{stub.url}/npm/"}


def data_dir(env: Env) -> Path:
    return env.tmp / "home-oc" / ".local" / "share" / "opencode"


def oc_config(env: Env, preference: list[str], **settings: object) -> None:
    own = {"binary": require_npm_cli("opencode"), "timeout": "90s", "max_retries": 0,
           "retry_delay": "10ms", **settings}
    others = {} if "command" in preference else {"command": {"enabled": False}}
    env.write_config({"providers": {"preference": preference, "opencode": own, **others}})


def run(env: Env, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`doit run` with a longer limit than Env.doit's: an opencode call takes 4 s to start on
    an idle machine, and several times that on a loaded one."""
    return subprocess.run([sys.executable, "-m", "doit", "-f", str(DODO), "run", *args,
                           f"config={env.config}"], cwd=env.tmp, env=env.environ(**extra),
                          capture_output=True, text=True, timeout=600)


def budget(env: Env, extra: dict[str, str]) -> dict[str, object]:
    view = subprocess.run([sys.executable, "-m", "nightshift_tasks", "budget", "--json",
                           f"config={env.config}"], env=env.environ(**extra), capture_output=True,
                          text=True, check=True)
    (found,) = json.loads(view.stdout)
    assert isinstance(found, dict)
    return found


def test_opencode_completes_the_loop_with_the_stubs_usage_in_the_ledger(env: Env,
                                                                       stub: ApiStub) -> None:
    """One request per call (`--title` spares the title request, whose tokens opencode reports
    nowhere), so the ledger has exactly what the stub served for each agent turn."""
    env.projects(["alpha"])
    oc_config(env, ["opencode"])
    extra = opencode_env(env, stub)
    result = run(env, **extra)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = calls(env)
    assert [(r["provider"], phase(r), r["outcome"]) for r in rows] == [
        ("opencode", p, "ok") for p in ("plan", "implement", "review")]
    for row in rows:
        inp, outp, cached, reasoning = USAGE[phase(row)]
        assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"],
                row["reasoning_tokens"], row["tokens"]) == (inp, outp, cached, reasoning,
                                                            inp - cached + outp)
    served = stub.requests("openai")
    assert [(r.phase, r.status) for r in served] == [(phase(r), 200) for r in rows]
    assert len(stub.log) == 3  # nothing else reached the stub: no title request
    per_task = sum(u[0] - u[2] + u[1] for u in USAGE.values())
    assert summary_rows(result.stdout)["alpha"][:6] == ["opencode", "1", "0", "0", "0", str(per_task)]
    # opencode worked in the task's worktree, and its database says so.
    db = sqlite3.connect(f"file:{data_dir(env) / 'opencode.db'}?mode=ro", uri=True)
    directories = [d for (d,) in db.execute("SELECT directory FROM session")]
    db.close()
    assert len(directories) == 3
    assert all(d.startswith(str(env.home / "worktrees" / "alpha--lint-fix--")) for d in directories)
    # The budget reads the same tokens from opencode's database, creating no file beside it.
    before = sorted(p.name for p in data_dir(env).iterdir())
    found = budget(env, extra)
    assert (found["reader"], found["used_today"]) == ("opencode.db", per_task)
    assert sorted(p.name for p in data_dir(env).iterdir()) == before


def test_a_429_is_retried_then_the_chain_fails_over(env: Env, stub: ApiStub) -> None:
    """opencode makes six attempts of its own (`retry-after-ms` keeps them short), then prints
    a retryable 429 error line: nightshift retries once, then hands the chain on."""
    env.projects(["alpha"])
    oc_config(env, ["opencode", "command"], max_retries=1)
    stub.openai.fail = -1
    stub.error_headers = {"retry-after-ms": "10"}
    result = run(env, **opencode_env(env, stub))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = calls(env)
    assert [(r["provider"], phase(r), r["outcome"]) for r in rows] == [
        ("opencode", "plan", "transient"), ("opencode", "plan", "transient"),
        ("command", "plan", "ok"), ("command", "implement", "ok"), ("command", "review", "ok")]
    assert rows[0]["error"] == "APIError: Rate limit reached (HTTP 429)"
    assert [r.status for r in stub.requests("openai")] == [429] * 12
    assert summary_rows(result.stdout)["alpha"][:2] == ["opencode→command", "1"]


def test_max_concurrent_holds_across_workers(env: Env, stub: ApiStub) -> None:
    """opencode has been run before, as `doctor` runs it: two first starts at once collide
    on creating its database ("database is locked")."""
    env.projects(["p0", "p1", "p2"])
    oc_config(env, ["opencode"], max_concurrent=2)
    extra = opencode_env(env, stub)
    subprocess.run([require_npm_cli("opencode"), "debug", "config"], env=env.environ(**extra),
                   stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=120)
    stub.openai.hold, stub.openai.delay = 2, 0.4  # two at once do happen: the cap binds
    result = run(env, "-n", "3", **extra)
    assert result.returncode == 0, result.stdout + result.stderr
    served = [(r.start, r.end) for r in stub.requests("openai")]
    assert len(served) == 9
    assert max_overlap(served) == 2
    logs = "".join(p.read_text() for p in (env.home / "logs").rglob("*.log"))
    assert "waiting for a opencode slot (providers.opencode.max_concurrent = 2)" in logs


def doctor(env: Env, extra: dict[str, str]) -> tuple[int, list[str]]:
    out = subprocess.run([sys.executable, "-m", "nightshift_tasks", "doctor", f"config={env.config}"],
                         env=env.environ(**extra), capture_output=True, text=True, timeout=180)
    return out.returncode, [line for line in (out.stdout + out.stderr).splitlines()
                            if re.match(r"\[\w+\] (provider opencode|login opencode|providers):", line)]


def test_doctor_tells_the_model_and_a_missing_key(env: Env, stub: ApiStub) -> None:
    env.projects(["alpha"])
    oc_config(env, ["opencode"])
    code, lines = doctor(env, opencode_env(env, stub, api_key=None))
    assert code == 1
    assert lines == [
        "[OK] provider opencode: 1.18.33",
        "[WARN] login opencode: model stub/m1 (opencode's config): opencode has no credentials "
        "for its provider `stub`: run `opencode auth login`, set its API key variable, or set "
        "provider.stub.options.apiKey in opencode's config",
        "[FAIL] providers: no enabled provider is logged in"]
    code, lines = doctor(env, opencode_env(env, stub, api_key="sk-oc-secret-1"))
    assert code == 0
    assert lines[1] == "[OK] login opencode: model stub/m1 (opencode's config); API key in opencode's config"
    assert not any("sk-oc-secret-1" in line for line in lines)


def test_doctor_asks_opencode_whether_a_catalogue_provider_has_credentials(env: Env,
                                                                          stub: ApiStub) -> None:
    env.projects(["alpha"])
    oc_config(env, ["opencode"], model="anthropic/claude-sonnet-4-5")
    extra = opencode_env(env, stub, model=None)
    code, lines = doctor(env, {**extra, "ANTHROPIC_API_KEY": ""})
    assert (code, lines[1]) == (1, (
        "[WARN] login opencode: model anthropic/claude-sonnet-4-5 (providers.opencode.model): "
        "opencode has no credentials for its provider `anthropic`: run `opencode auth login`, set "
        "its API key variable, or set provider.anthropic.options.apiKey in opencode's config"))
    code, lines = doctor(env, {**extra, "ANTHROPIC_API_KEY": "sk-ant-secret-2"})
    assert (code, lines[1]) == (0, "[OK] login opencode: model anthropic/claude-sonnet-4-5 "
                                "(providers.opencode.model); credentials from the environment")
    oc_config(env, ["opencode"])  # no model here, nor in opencode's config
    code, lines = doctor(env, extra)
    assert lines[1] == ("[WARN] login opencode: no model chosen: set \"model\": \"provider/model\" "
                        "in ~/.config/opencode/opencode.json or providers.opencode.model; opencode "
                        "would pick one itself")


# ---- the adapter's parts ---------------------------------------------------------------------

SETTINGS = {"dangerously_skip_permissions": False, "extra_args": [], "data_path": "/nonexistent"}
# opencode 1.18.33's own lines (ids shortened) for the Responses stub's plan answer.
STEP = ('{"type":"step_finish","timestamp":1,"sessionID":"s","part":{"id":"p","reason":"stop",'
        '"type":"step-finish","tokens":{"total":1100,"input":993,"output":95,"reasoning":5,'
        '"cache":{"write":2,"read":7}},"cost":0.25}}')
TEXT = '{"type":"text","timestamp":1,"sessionID":"s","part":{"type":"text","text":"%s"}}'


def error_line(status: int, retryable: bool, message: str = "Rate limit reached") -> str:
    return json.dumps({"type": "error", "timestamp": 1, "sessionID": "s", "error": {
        "name": "APIError", "data": {"message": message, "statusCode": status,
                                     "isRetryable": retryable, "responseHeaders": {}}}})


def test_argv_takes_the_prompt_on_stdin_and_auto_only_on_opt_in() -> None:
    with agents.invocation("opencode", {**SETTINGS, "binary": "oc"}, "say \"hi\" to me") as call:
        assert call.argv == ["oc", "run", "--format", "json", "--title", "nightshift"]
        assert call.stdin == b'say "hi" to me'
    argv = agents.build_argv("opencode", {**SETTINGS, "binary": "oc", "model": "a/b",
                                          "dangerously_skip_permissions": True,
                                          "extra_args": ["--agent", "build"]}, "p")
    assert argv[6:] == ["-m", "a/b", "--auto", "--agent", "build"]


def test_usage_adds_back_cache_reads_and_reasoning_over_every_step() -> None:
    reply = agents.parse_reply("opencode", "\n".join([TEXT % "first", STEP, TEXT % "last", STEP]))
    assert reply.text == "last" and reply.error is None
    assert reply.usage == agents.Usage(input_tokens=2 * 1000, output_tokens=2 * 100,
                                       cache_read_tokens=2 * 7, cache_write_tokens=2 * 2,
                                       reasoning_tokens=2 * 5, tokens=2 * (993 + 2 + 95 + 5),
                                       cost_usd=0.5)


def test_lines_of_another_shape_count_nothing() -> None:
    odd = ['{"type":"step_finish","part":"p"}', '{"type":"step_finish","part":{"tokens":[1]}}',
           '{"type":"step_finish","part":{"tokens":{"input":"9","cache":[2]}}}', "[1]", "not json"]
    reply = agents.parse_reply("opencode", "\n".join(odd))
    assert (reply.text, reply.usage, reply.error) == ("", agents.Usage(), None)


@pytest.mark.parametrize(("line", "kind", "message"), [
    (error_line(429, True), "transient", "APIError: Rate limit reached (HTTP 429)"),
    (error_line(401, False, "Incorrect API key provided"), "auth",
     "APIError: Incorrect API key provided (HTTP 401)"),
    (error_line(429, False, "You exceeded your current quota"), "quota",
     "APIError: You exceeded your current quota"),
    (error_line(400, False, "bad request"), "agent", "APIError: bad request (HTTP 400)"),
    ('{"type":"error","error":{"name":"UnknownError","data":{"message":"Unexpected server error. '
     'Check server logs for details.","ref":"err_1"}}}', "agent",
     "UnknownError: Unexpected server error. Check server logs for details. (" +
     opencode.FAILURE_HINTS[0][1] + ")"),
])
def test_an_error_line_decides_retry_fail_over_or_failure(line: str, kind: str, message: str) -> None:
    reply = agents.parse_reply("opencode", f"{STEP}\n{line}\n")
    assert reply.error is not None
    failure = agents.classify("opencode", reply.error, reply.status)
    assert (failure.kind, failure.message) == (kind, message)


# ---- its database, read-only and incrementally ------------------------------------------------

PART = ("CREATE TABLE part (id text PRIMARY KEY, message_id text NOT NULL, session_id text NOT "
        "NULL, time_created integer NOT NULL, time_updated integer NOT NULL, data text NOT NULL)")
AT = datetime(2026, 11, 29, 12, 0)
NOW_MS = int(AT.timestamp() * 1000)
HOUR_MS = 3_600_000


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """opencode's data directory."""
    (tmp_path / "opencode").mkdir()
    return tmp_path / "opencode"


def opencode_db(data: Path) -> sqlite3.Connection:
    """A database in WAL mode with opencode's `part` table, as opencode leaves it."""
    conn = sqlite3.connect(data / "opencode.db")
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute(PART)
    return conn


def add_part(conn: sqlite3.Connection, at_ms: int, tokens: int | None, text: str = "") -> None:
    data = ({"type": "step-finish", "tokens": {"input": tokens, "output": 1, "reasoning": 0,
                                              "cache": {"read": 50, "write": 0}}}
            if tokens is not None else {"type": "text", "text": text})
    conn.execute("INSERT INTO part VALUES (?, 'm', 's', ?, ?, ?)",
                 (f"prt_{at_ms}_{tokens}", at_ms, at_ms, json.dumps(data, separators=(",", ":"))))
    conn.commit()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = state.connect(tmp_path / "state.db")
    yield conn
    conn.close()


def read(ledger: sqlite3.Connection, data: Path, at: datetime = AT) -> dict[str, int]:
    reading = opencode.read_history(ledger, data, at)
    assert reading.source == "opencode.db"
    return reading.by_day


def test_history_is_read_without_a_file_beside_it_and_only_from_where_it_stopped(
        data: Path, ledger: sqlite3.Connection) -> None:
    writer = opencode_db(data)
    add_part(writer, NOW_MS - 25 * HOUR_MS, 100)
    add_part(writer, NOW_MS - 2 * HOUR_MS, 200, text="unused")
    add_part(writer, NOW_MS - 2 * HOUR_MS, None, text='"type":"step-finish" in a reply')
    writer.close()  # opencode has exited: its -wal and -shm are gone
    assert sorted(p.name for p in data.iterdir()) == ["opencode.db"]
    assert read(ledger, data) == {"2026-11-28": 101, "2026-11-29": 201}
    assert sorted(p.name for p in data.iterdir()) == ["opencode.db"]
    writer = sqlite3.connect(data / "opencode.db")  # opencode runs again, and keeps it open
    writer.execute("UPDATE part SET data = 'not json'")  # rows already read are not read again
    add_part(writer, NOW_MS - HOUR_MS, 300)
    live = sorted(p.name for p in data.iterdir())
    assert live == ["opencode.db", "opencode.db-shm", "opencode.db-wal"]
    assert read(ledger, data) == {"2026-11-28": 101, "2026-11-29": 502}
    assert sorted(p.name for p in data.iterdir()) == live
    writer.close()


def test_a_part_written_in_the_last_minute_is_counted_but_read_again(
        data: Path, ledger: sqlite3.Connection) -> None:
    writer = opencode_db(data)
    add_part(writer, NOW_MS - 10_000, 100)
    assert read(ledger, data) == {"2026-11-29": 101}
    writer.execute("UPDATE part SET data = json_set(data, '$.tokens.input', 400)")  # completed
    writer.commit()
    assert read(ledger, data) == {"2026-11-29": 401}
    writer.close()


def test_another_database_in_its_place_is_read_from_the_start(
        data: Path, ledger: sqlite3.Connection) -> None:
    writer = opencode_db(data)
    for hour in (5, 4, 3):
        add_part(writer, NOW_MS - hour * HOUR_MS, 100)
    writer.close()
    assert read(ledger, data) == {"2026-11-29": 303}
    os.unlink(data / "opencode.db")
    writer = opencode_db(data)
    add_part(writer, NOW_MS - HOUR_MS, 10)
    writer.close()
    assert read(ledger, data) == {"2026-11-29": 11}


def test_a_missing_or_unreadable_database(tmp_path: Path, ledger: sqlite3.Connection) -> None:
    assert opencode.read_history(ledger, tmp_path, AT).source == "none"
    (tmp_path / "opencode.db").write_text("not a database")
    reading = opencode.read_history(ledger, tmp_path, AT)
    assert (reading.source, reading.skipped_files, reading.by_day) == ("opencode.db", 1, {})
