"""The real `gemini` binary (npm @google/gemini-cli, pinned in tests/npm) against the Gemini
API stub of tests/stubs.py, driven by the real doit command line, with a HOME of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nightshift_tasks import state
from nightshift_tasks.agents import base
from nightshift_tasks.agents.gemini import HOME_ENV, login_state, read_history
from tests.conftest import Env, max_overlap, require_npm_cli, require_program, summary_rows
from tests.stubs import USAGE, ApiStub
from tests.test_real_clis import calls, phase

MODEL = "gemini-test"
# The user's own settings: API-key auth (without it, a base URL selects the gateway auth
# type and the CLI exits 41), and a key of the user's own that must reach the CLI unchanged.
USER_SETTINGS = ('// the user\'s own file\n{"security": {"auth": {"selectedType": "gemini-api-key"}}, '
                 '"privacy": {"usageStatisticsEnabled": false}, "general": {"vimMode": true}}\n')


@pytest.fixture
def stub() -> Iterator[ApiStub]:
    server = ApiStub().start()
    yield server
    server.stop()


def user_home(env: Env) -> Path:
    """The HOME of the runs, holding the user's ~/.gemini: settings and a GEMINI.md."""
    gemini = env.tmp / "home-cli" / ".gemini"
    if not gemini.is_dir():
        gemini.mkdir(parents=True)
        (gemini / "settings.json").write_text(USER_SETTINGS)
        (gemini / "GEMINI.md").write_text("the user's memory\n")
    return gemini.parent


def gemini_config(env: Env, preference: list[str], **settings: object) -> None:
    require_program("node")  # the CLI is a node script
    env.write_config({"providers": {
        "preference": preference, "command": {"enabled": "command" in preference,
                                              "argv": [str(env.agent), "{prompt}"]},
        "gemini": {"binary": require_npm_cli("gemini"), "model": MODEL, "timeout": "90s",
                   "max_retries": 1, "retry_delay": "10ms", **settings}}})


def run(env: Env, stub: ApiStub, *args: str) -> tuple[int, str]:
    result = env.doit("run", *args, HOME=str(user_home(env)), GOOGLE_GEMINI_BASE_URL=stub.url,
                      GEMINI_API_KEY="test-key")
    return result.returncode, result.stdout + result.stderr


def billable(usage: tuple[int, int, int, int]) -> int:
    prompt, candidates, cached, thoughts = usage
    return prompt - cached + candidates + thoughts


def test_gemini_completes_the_loop_with_the_stubs_usage(env: Env, stub: ApiStub) -> None:
    env.projects(["alpha", "beta"])
    gemini_config(env, ["gemini"])
    code, out = run(env, stub, "-n", "2")
    assert code == 0, out
    rows = calls(env)
    assert len(rows) == 6 and {r["provider"] for r in rows} == {"gemini"}
    for row in rows:
        prompt, candidates, cached, thoughts = USAGE[phase(row)]
        assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"],
                row["reasoning_tokens"], row["tokens"], row["outcome"]) == (
            prompt, candidates, cached, thoughts, billable(USAGE[phase(row)]), "ok")
    per_task = sum(billable(u) for u in USAGE.values())
    assert summary_rows(out)["alpha"][:6] == ["gemini", "1", "0", "0", "0", str(per_task)]
    # The model is always passed: one streaming request per phase, no routing request.
    assert [(r.path, r.phase != "") for r in stub.log] == [
        (f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse", True)] * 6
    # The user's settings file is untouched; ours is it plus one attempt per call.
    assert (user_home(env) / ".gemini" / "settings.json").read_text() == USER_SETTINGS
    ours = env.home / "gemini" / ".gemini"
    assert json.loads((ours / "settings.json").read_text()) == {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": False}, "general": {"vimMode": True, "maxAttempts": 1}}
    assert os.readlink(ours / "GEMINI.md") == str(user_home(env) / ".gemini" / "GEMINI.md")
    # The budget reads the CLI's own session files, in our home: the same tokens.
    view = subprocess.run([sys.executable, "-m", "nightshift_tasks", "budget", "--json",
                           f"config={env.config}"], env=env.environ(HOME=str(user_home(env))),
                          capture_output=True, text=True, check=True)
    (gemini,) = json.loads(view.stdout)
    assert (gemini["reader"], gemini["used_today"]) == ("tmp/*/chats/*.jsonl", 2 * per_task)


def test_a_429_is_retried_by_us_not_by_the_cli_then_the_chain_fails_over(env: Env,
                                                                           stub: ApiStub) -> None:
    env.projects(["alpha"])
    gemini_config(env, ["gemini", "command"])
    stub.gemini.fail = -1
    code, out = run(env, stub)
    assert code == 0, out
    rows = calls(env)
    assert [(r["provider"], phase(r), r["outcome"], r["exit_code"]) for r in rows] == [
        ("gemini", "plan", "transient", 173), ("gemini", "plan", "transient", 173),
        ("command", "plan", "ok", 0), ("command", "implement", "ok", 0),
        ("command", "review", "ok", 0)]
    # One request per call: the CLI's own ten attempts (about 3.5 minutes) are capped at one.
    assert [r.status for r in stub.log] == [429, 429]
    assert summary_rows(out)["alpha"][:2] == ["gemini→command", "1"]


@pytest.mark.parametrize(("status", "exit_code"), [(401, 145), (403, 147)])
def test_an_auth_error_is_not_retried_and_fails_over(env: Env, stub: ApiStub, status: int,
                                                     exit_code: int) -> None:
    env.projects(["alpha"])
    gemini_config(env, ["gemini", "command"], max_retries=3)
    stub.gemini.fail, stub.gemini.status = -1, status
    code, out = run(env, stub)
    assert code == 0, out
    rows = calls(env)
    assert [(r["provider"], r["outcome"], r["exit_code"]) for r in rows] == [
        ("gemini", "auth", exit_code), ("command", "ok", 0), ("command", "ok", 0),
        ("command", "ok", 0)]
    assert len(stub.log) == 1


def test_max_concurrent_holds(env: Env, stub: ApiStub) -> None:
    env.projects(["p0", "p1", "p2"])
    gemini_config(env, ["gemini"], max_concurrent=2)
    stub.gemini.hold = 2  # two calls at once must happen, so the cap is seen to bind
    code, out = run(env, stub, "-n", "3")
    assert code == 0, out
    spans = [(r.start, r.end) for r in stub.requests("gemini")]
    assert len(spans) == 9
    assert max_overlap(spans) == 2


def gemini_processes(home: Path) -> list[int]:
    """The live processes whose environment names `home` as the CLI's home."""
    marker = f"{HOME_ENV}={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_timeout_stops_the_cli_and_the_child_it_relaunched(env: Env, stub: ApiStub) -> None:
    env.projects(["alpha"])
    gemini_config(env, ["gemini"], timeout="20s", max_retries=0)
    stub.gemini.gate = threading.Event()  # never opened: the request hangs, the call times out
    done: list[tuple[int, str]] = []
    runner = threading.Thread(target=lambda: done.append(run(env, stub)))
    runner.start()
    assert stub.gemini.arrived.wait(90)
    running = gemini_processes(env.home / "gemini")
    runner.join(120)
    assert len(running) == 2  # `gemini` and the node process it relaunched itself as
    assert gemini_processes(env.home / "gemini") == []
    code, out = done[0]
    assert code == 1, out
    assert [(r["outcome"], r["error"]) for r in calls(env)] == [
        ("agent", "timed out after 20s (process group stopped)")]


def doctor(env: Env, **extra: str) -> subprocess.CompletedProcess[str]:
    home = env.tmp / "home-doctor"
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    unset = dict.fromkeys(("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"), "")
    return subprocess.run([sys.executable, "-m", "nightshift_tasks", "doctor", f"config={env.config}"],
                          env=env.environ(HOME=str(home), **{**unset, **extra}),
                          capture_output=True, text=True, timeout=180)


def test_doctor_reports_a_missing_key(env: Env) -> None:
    env.projects(["alpha"])
    gemini_config(env, ["gemini"])
    out = doctor(env)
    assert out.returncode == 1, out.stdout
    lines = out.stdout.splitlines()
    assert "[OK] provider gemini: 0.61.0" in lines
    assert ("[WARN] login gemini: no Gemini API key: set GEMINI_API_KEY "
            "(https://aistudio.google.com/apikey), or log in with Google by running `gemini`") in lines
    assert "[FAIL] providers: no enabled provider is logged in" in lines
    out = doctor(env, GEMINI_API_KEY="AIza-secret-1")
    assert out.returncode == 0, out.stdout
    assert "[OK] login gemini: API key in $GEMINI_API_KEY" in out.stdout.splitlines()
    assert "AIza-secret-1" not in out.stdout + out.stderr


def test_login_state_from_the_files_the_cli_reads(tmp_path: Path) -> None:
    settings = {"data_path": str(tmp_path)}
    assert login_state(settings, {"GOOGLE_API_KEY": "k"}) == ("OK", "API key in $GOOGLE_API_KEY")
    assert login_state(settings, {"GOOGLE_GENAI_USE_VERTEXAI": "true"}) == (
        "OK", "Vertex AI ($GOOGLE_GENAI_USE_VERTEXAI)")
    assert login_state(settings, {})[0] == "WARN"
    (tmp_path / "oauth_creds.json").write_text("{}")
    assert login_state(settings, {}) == (
        "OK", f"Google login stored in {tmp_path / 'oauth_creds.json'}")
    (tmp_path / ".env").write_text("# keys\nGEMINI_API_KEY=AIza-secret\n")
    assert login_state(settings, {}) == ("OK", f"API key in {tmp_path / '.env'}")


def test_a_json_error_on_the_output_gives_the_http_status() -> None:
    """The CLI prints its API error last on stderr, as pretty JSON whose message may itself
    be the API's JSON error."""
    nested = json.dumps({"error": {"code": 403, "message": "denied"}})
    text = "Attempt 1 failed\n" + json.dumps(
        {"session_id": "s", "error": {"type": "Error", "message": nested, "code": 401}}, indent=2)
    assert base.error_status(text) == 401
    assert base.error_status('{"error": {"code": "rate_limit_exceeded"}}\n{not json') is None
    assert base.error_status("exit 1: 429 in prose only") is None
    assert base.classify(text, None, ()).kind == "auth"
    quota = 'RetryableQuotaError: quota\n{"error": {"message": "quota", "code": 429}}'
    assert base.classify(quota, None, ()).kind == "transient"


def session_line(id_: str, timestamp: str, tokens: tuple[int, int, int, int]) -> str:
    inp, out, cached, thoughts = tokens
    return json.dumps({"id": id_, "timestamp": timestamp, "type": "gemini", "content": "x",
                       "tokens": {"input": inp, "output": out, "cached": cached,
                                  "thoughts": thoughts, "tool": 0,
                                  "total": inp + out + thoughts}, "model": MODEL}) + "\n"


def test_session_files_by_local_day_read_incrementally(tmp_path: Path) -> None:
    conn = state.connect(tmp_path / "s.db")
    user, ours = tmp_path / "user", tmp_path / "ours"
    chats = user / "tmp" / "proj" / "chats"
    chats.mkdir(parents=True)
    (ours / "tmp" / "wt" / "chats").mkdir(parents=True)
    session = chats / "session-2026-11-28T10-00-aaaaaaaa.jsonl"
    session.write_text(
        '{"sessionId": "s", "kind": "main"}\n{"$set": {"lastUpdated": "x"}}\n'
        + session_line("m1", "2026-11-28T10:00:00", (1000, 100, 300, 20))
        + session_line("m1", "2026-11-28T10:00:00", (1000, 100, 300, 20))  # written twice
        + '{"type": "gemini", "tokens": {"input": 5}, "timestamp": "not a time"}\n')
    (ours / "tmp" / "wt" / "chats" / "session-b.jsonl").write_text(
        session_line("m2", "2026-11-29T10:00:00", (50, 5, 0, 0)))
    reading = read_history(conn, [user, ours])
    assert (reading.by_day, reading.skipped_lines, reading.source) == (
        {"2026-11-28": 820, "2026-11-29": 55}, 1, "tmp/*/chats/*.jsonl")
    with session.open("a") as fh:
        fh.write(session_line("m3", "2026-11-29T11:00:00", (10, 1, 0, 1)))
    assert read_history(conn, [user, ours]).by_day == {"2026-11-28": 820, "2026-11-29": 67}
    assert read_history(conn, [tmp_path / "none"]).source == "none"
