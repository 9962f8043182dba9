from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from nightshift_tasks.agents import (
    MAX_ARG_BYTES,
    OUTPUT_BOUND,
    Failure,
    PromptTooLong,
    Usage,
    augmented_path,
    build_argv,
    classify,
    invocation,
    parse_reply,
    unavailable,
)
from nightshift_tasks.prompts import TaskBrief, plan_prompt
from tests.conftest import Env, summary_rows

OFF = {"dangerously_skip_permissions": False, "dangerously_bypass_approvals_and_sandbox": False}
ON = {"dangerously_skip_permissions": True, "dangerously_bypass_approvals_and_sandbox": True}


@pytest.mark.parametrize(("provider", "settings", "argv"), [
    ("claude", OFF, ["claude", "-p", "--output-format", "json"]),
    ("claude", {**ON, "model": "opus", "binary": "/opt/claude", "extra_args": ["--verbose"]},
     ["/opt/claude", "-p", "--output-format", "json", "--model", "opus",
      "--dangerously-skip-permissions", "--verbose"]),
    ("codex", OFF, ["codex", "exec", "--json", "--sandbox", "workspace-write", "-"]),
    ("codex", {**ON, "model": "m"},
     ["codex", "exec", "--json", "-m", "m", "--dangerously-bypass-approvals-and-sandbox", "-"]),
    ("copilot", OFF, ["copilot", "-p", "P", "--no-ask-user", "--silent", "--output-format", "json",
                      "--no-auto-update", "--usage-output-file", "/u.json"]),
    ("copilot", ON, ["copilot", "-p", "P", "--no-ask-user", "--silent", "--output-format", "json",
                     "--no-auto-update", "--usage-output-file", "/u.json", "--allow-all-tools",
                     "--allow-all-urls"]),
    ("command", {"argv": ["agent", "--x", "{prompt}", "{prompt}x"]}, ["agent", "--x", "P", "{prompt}x"]),
])
def test_argv_passes_flags_only_when_opted_in(provider: str, settings: dict[str, object],
                                              argv: list[str]) -> None:
    assert build_argv(provider, settings, "P", "/u.json") == argv


LONG = "x" * MAX_ARG_BYTES  # one byte too many for an argument, with its final NUL


@pytest.mark.parametrize(("provider", "settings", "prompt", "in_argv", "stdin"), [
    ("claude", OFF, "P", False, b"P"),
    ("codex", OFF, "P", False, b"P"),
    ("copilot", OFF, "P", True, None),
    ("copilot", OFF, LONG, False, LONG.encode()),
    ("command", {"argv": ["agent", "{prompt}"]}, "P", True, None),
    ("command", {"argv": ["agent", "{prompt_file}"]}, LONG, False, None),
    ("command", {"argv": ["agent", "--read-stdin"]}, LONG, False, LONG.encode()),
])
def test_where_the_prompt_goes(provider: str, settings: dict[str, object], prompt: str,
                               in_argv: bool, stdin: bytes | None) -> None:
    with invocation(provider, settings, prompt, "/u.json") as call:
        assert (prompt in call.argv, call.stdin) == (in_argv, stdin)


def test_prompt_file_is_private_and_removed_after_the_call() -> None:
    with invocation("command", {"argv": ["agent", "-f", "{prompt_file}"]}, "é" * 70_000) as call:
        path = Path(call.argv[2])
        assert path.read_text(encoding="utf-8") == "é" * 70_000
        assert path.stat().st_mode & 0o777 == 0o600
    assert not path.exists()


def test_a_prompt_slot_cannot_take_an_oversized_prompt() -> None:
    assert build_argv("command", {"argv": ["agent", "{prompt}"]}, LONG[1:]) == ["agent", LONG[1:]]
    with pytest.raises(PromptTooLong, match=r'providers\.command\.argv passes it as "\{prompt\}": '
                       r'use "\{prompt_file\}"'):
        build_argv("command", {"argv": ["agent", "{prompt}"]}, LONG)


def test_claude_reply_usage_and_error() -> None:
    ok = {"type": "result", "is_error": False, "result": "hi", "total_cost_usd": 0.25,
          "usage": {"input_tokens": 123, "output_tokens": 45, "cache_read_input_tokens": 7,
                    "cache_creation_input_tokens": 5}}
    reply = parse_reply("claude", json.dumps(ok))
    assert (reply.text, reply.error) == ("hi", None)
    assert reply.usage == Usage(input_tokens=123, output_tokens=45, cache_read_tokens=7,
                                cache_write_tokens=5, tokens=173, cost_usd=0.25)
    bad = {**ok, "is_error": True, "api_error_status": 429,
           "result": "API Error: Request rejected (429) · rate limited"}
    reply = parse_reply("claude", json.dumps(bad))
    assert (reply.error, reply.status) == (bad["result"], 429)


def test_codex_reply_from_jsonl_events() -> None:
    lines = [{"type": "thread.started", "thread_id": "t"},
             {"type": "item.completed", "item": {"id": "i0", "type": "error", "message": "metadata"}},
             {"type": "item.completed", "item": {"id": "i1", "type": "agent_message", "text": "done"}},
             {"type": "turn.completed", "usage": {"input_tokens": 200, "cached_input_tokens": 50,
                                                  "cache_write_input_tokens": 0, "output_tokens": 30,
                                                  "reasoning_output_tokens": 10}}]
    reply = parse_reply("codex", "\n".join(map(json.dumps, lines)))
    assert reply.text == "done" and reply.error is None
    assert reply.usage == Usage(input_tokens=200, output_tokens=30, cache_read_tokens=50,
                                reasoning_tokens=10, tokens=180)
    failed = {"type": "turn.failed", "error": {"message": "exceeded retry limit, last status: 429"}}
    assert parse_reply("codex", json.dumps(failed)).error == "exceeded retry limit, last status: 429"


def test_copilot_events_and_usage_report() -> None:
    events = [{"type": "session.start", "data": {}},
              {"type": "assistant.message", "data": {"messageId": "m", "content": "done",
                                                     "toolRequests": []}}]
    report = {"totalPremiumRequestCost": 2, "totalUserRequests": 1, "modelMetrics": {
        "gpt-5": {"requests": {"count": 1, "cost": 2},
                  "usage": {"inputTokens": 900, "outputTokens": 80, "cacheReadTokens": 300,
                            "cacheWriteTokens": 0}}}, "lastCallInputTokens": 900}
    reply = parse_reply("copilot", "\n".join(map(json.dumps, events)), json.dumps(report))
    assert reply.text == "done"
    assert reply.usage == Usage(input_tokens=900, output_tokens=80, cache_read_tokens=300,
                                tokens=980, requests=2)
    assert parse_reply("copilot", "plain text answer", None).text == "plain text answer"


@pytest.mark.parametrize(("message", "status", "kind", "reset"), [
    ("API Error: Request rejected (429) · rate limited", 429, "transient", None),
    ("exceeded retry limit, last status: 429 Too Many Requests", None, "transient", None),
    ("API Error: 529 overloaded_error", None, "transient", None),
    ("stream disconnected before completion: error sending request", None, "transient", None),
    ("You've hit your usage limit. Try again in 20 minutes.", None, "quota", 1200),
    ("insufficient_quota: You exceeded your current quota", None, "quota", None),
    ("exit 1: TypeError: cannot read properties of undefined", None, "agent", None),
])
def test_classify(message: str, status: int | None, kind: str, reset: int | None) -> None:
    failure = classify("claude", message, status)
    assert (failure.kind, failure.reset_in) == (kind, reset)


def test_codex_sandbox_failure_points_to_the_setting() -> None:
    failure = classify("codex", "exit 1: error: sandbox failed to start: landlock not supported")
    assert failure.kind == "agent"
    assert "providers.codex.dangerously_bypass_approvals_and_sandbox" in failure.message


def test_availability_and_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "bin" / "claude"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tool.parent))
    assert unavailable("claude", OFF) is None
    assert unavailable("codex", OFF) == "CLI not in PATH: codex"
    assert unavailable("codex", {"binary": str(tool)}) is None
    assert unavailable("command", {"argv": [str(tmp_path / "nope")]}) == \
        f"CLI not executable: {tmp_path / 'nope'}"
    assert augmented_path({"PATH": "/a:/b"}).startswith("/a:/b")


# A command agent that reads its prompt from the file named by its one argument, or from
# stdin without one; records the prompt (and the file's mode) and replies as each phase asks.
READER = r"""
import os, stat, sys
path = sys.argv[1] if len(sys.argv) > 1 else None
prompt = open(path, encoding="utf-8").read() if path else sys.stdin.read()
phase = next(p for p in ("plan", "implement", "review") if f"# nightshift: {p} phase" in prompt)
with open(f"{os.environ['RECORD']}.{phase}", "w", encoding="utf-8") as fh:
    fh.write(prompt)
if path:
    with open(f"{os.environ['RECORD']}.files", "a", encoding="utf-8") as fh:
        fh.write(f"{path} {stat.S_IMODE(os.stat(path).st_mode):o}\n")
print({"plan": '{"description": "d", "steps": [], "files": []}',
       "implement": '{"summary": "s", "files_modified": []}',
       "review": '{"passed": true, "feedback": "ok"}'}[phase])
"""
LONG_DESCRIPTION = " ".join(f"step{i:06d}" for i in range(14_000)) + " END-OF-THE-LONG-TASK"
LONG_TASK = {"enabled": ["long-spec"],
             "custom": [{"type": "long-spec", "name": "Long spec", "description": LONG_DESCRIPTION}]}


def test_an_oversized_prompt_for_the_prompt_slot_fails_naming_the_key(env: Env) -> None:
    (repo,) = env.projects(["alpha"], tasks=LONG_TASK)
    result = env.doit("run")
    assert result.returncode == 1
    size = len(plan_prompt(TaskBrief("long-spec", "Long spec", LONG_DESCRIPTION, "alpha",
                                     str(repo))).encode())
    message = (f"the prompt is {size:,} bytes, more than one command-line argument may hold "
               '(131,071 bytes); providers.command.argv passes it as "{prompt}": use '
               '"{prompt_file}" (the path of a file holding the prompt) instead, or neither, to '
               "get the prompt on stdin")
    assert f"alpha:long-spec: failed: planning failed: plan: {message}; see " in result.stdout
    assert "Argument list too long" not in result.stdout + result.stderr
    assert env.calls() == []
    conn = sqlite3.connect(env.home / "state.db")
    row = conn.execute("SELECT outcome, error, exit_code FROM calls").fetchall()
    assert row == [("agent", message, -1)]  # -1: no exit status, as for a call that timed out
    (log,) = conn.execute("SELECT log_path FROM attempts WHERE log_path IS NOT NULL").fetchone()
    assert f"===== plan via command (exit -1, 0.00s) =====\nerror: {message}\n" in Path(log).read_text()


@pytest.mark.parametrize("slot", [["{prompt_file}"], []])
def test_a_long_prompt_reaches_a_command_by_file_or_stdin(env: Env, slot: list[str]) -> None:
    env.projects(["alpha"], tasks=LONG_TASK)
    reader = env.tmp / "reader.py"
    reader.write_text(READER)
    env.write_config({"providers": {"command": {"enabled": True,
                                                "argv": [sys.executable, str(reader), *slot]}}})
    result = env.doit("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary_rows(result.stdout)["alpha"][:2] == ["command", "1"]
    for phase in ("plan", "implement", "review"):
        prompt = Path(f"{env.record}.{phase}").read_text(encoding="utf-8")
        assert prompt.startswith(f"# nightshift: {phase} phase") and LONG_DESCRIPTION in prompt
    files = Path(f"{env.record}.files")
    if slot:
        used = [line.split() for line in files.read_text().splitlines()]
        assert [mode for _, mode in used] == ["600"] * 3
        assert not any(Path(path).exists() for path, _ in used)
    else:
        assert not files.exists()
# copilot 1.0.102's real stderr (exit 1): the error first, then advice the tail would keep.
COPILOT_ADVICE = """
To authenticate, you can use any of the following methods:
  • Start 'copilot' and run the '/login' command
  • Set the COPILOT_GITHUB_TOKEN, GH_TOKEN, or GITHUB_TOKEN environment variable
  • Run 'gh auth login' to authenticate with the GitHub CLI
"""
COPILOT_NO_AUTH = """Error: No authentication information found.

Copilot can be authenticated with GitHub using an OAuth Token or a Fine-Grained Personal Access Token.
""" + COPILOT_ADVICE
COPILOT_OFFLINE = """Error: Authentication token found but could not be validated.

  Failed to fetch PAT user login: network fetch failed: request failed: error sending request for url (https://api.github.com/copilot_internal/user)
  Failed to fetch GitHub CLI user login: network fetch failed: request failed: error sending request for url (https://api.github.com/copilot_internal/user)

Your token may still be valid. Check your network connection and try again.
""" + COPILOT_ADVICE


def test_copilot_failures_are_classified_from_the_whole_output() -> None:
    assert classify("copilot", COPILOT_NO_AUTH) == Failure(
        "auth", "Error: No authentication information found.")
    offline = classify("copilot", COPILOT_OFFLINE)
    assert offline.kind == "transient"
    assert offline.message == (
        "Error: Authentication token found but could not be validated. (Failed to fetch PAT user "
        "login: network fetch failed: request failed: error sending request for url "
        "(https://api.github.com/copilot_internal/user))")


def test_failure_reasons_are_one_bounded_line() -> None:
    assert classify("claude", "").message == "no output"
    assert classify("command", "starting\nwarming up\nfatal: repository gone\nbye").message == \
        "fatal: repository gone"
    assert classify("command", "a\nb\nTypeError: x is undefined\n    at f (a.js:1)").message == \
        "TypeError: x is undefined"
    assert classify("command", "one\r\ntwo\x1b[31m\ttail").message == "two [31m tail"
    huge = "Error: " + "x" * 5000 + "\n" + "noise\n" * OUTPUT_BOUND + "429 Too Many Requests\n"
    failure = classify("command", huge)
    assert failure.kind == "transient" and len(failure.message) == 400
    assert "\n" not in failure.message


def test_a_cli_in_local_bin_is_found_and_run_under_crons_bare_path(env: Env) -> None:
    """cron's PATH is /usr/bin:/bin; a CLI installed in ~/.local/bin is still the agent."""
    home = env.tmp / "user"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "night-agent").symlink_to(env.agent)
    env.projects(["alpha"])
    env.write_config({"providers": {"preference": ["command"], "command": {
        "enabled": True, "timeout": "1m", "argv": ["night-agent", "{prompt}"]}}})
    listed = env.doit("list", PATH="/usr/bin:/bin", HOME=str(home))
    assert "alpha   lint-fix via command" in listed.stdout, listed.stdout + listed.stderr
    result = env.doit("run", PATH="/usr/bin:/bin", HOME=str(home))
    assert result.returncode == 0, result.stdout + result.stderr
    assert [(c.task, c.phase) for c in env.calls()] == [
        ("lint-fix", "plan"), ("lint-fix", "implement"), ("lint-fix", "review")]
