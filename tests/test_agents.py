from __future__ import annotations

import json
from pathlib import Path

import pytest

from nightshift_tasks.agents import augmented_path, build_argv, reply_text, unavailable

OFF = {"dangerously_skip_permissions": False, "dangerously_bypass_approvals_and_sandbox": False}
ON = {"dangerously_skip_permissions": True, "dangerously_bypass_approvals_and_sandbox": True}


@pytest.mark.parametrize(("provider", "settings", "argv"), [
    ("claude", OFF, ["claude", "-p", "--output-format", "json", "P"]),
    ("claude", ON, ["claude", "-p", "--output-format", "json", "--dangerously-skip-permissions", "P"]),
    ("codex", OFF, ["codex", "exec", "--json", "--sandbox", "workspace-write", "P"]),
    ("codex", ON, ["codex", "exec", "--json", "--dangerously-bypass-approvals-and-sandbox", "P"]),
    ("copilot", OFF, ["copilot", "-p", "P", "--no-ask-user", "--silent"]),
    ("copilot", ON, ["copilot", "-p", "P", "--no-ask-user", "--silent", "--allow-all-tools",
                     "--allow-all-urls"]),
    ("command", {"argv": ["agent", "--x", "{prompt}", "{prompt}x"]}, ["agent", "--x", "P", "{prompt}x"]),
])
def test_argv_passes_flags_only_when_opted_in(provider: str, settings: dict[str, object],
                                              argv: list[str]) -> None:
    assert build_argv(provider, settings, "P") == argv


def test_claude_reply_and_error() -> None:
    ok = {"type": "result", "is_error": False, "result": "hi", "usage": {"input_tokens": 1}}
    assert reply_text("claude", json.dumps(ok)) == ("hi", None)
    bad = {**ok, "is_error": True, "result": "API Error: Request rejected (429)"}
    assert reply_text("claude", json.dumps(bad)) == (bad["result"], bad["result"])


def test_codex_reply_from_jsonl_events() -> None:
    lines = [{"type": "thread.started"}, {"type": "item.completed",
                                          "item": {"type": "agent_message", "text": "done"}},
             {"type": "turn.completed", "usage": {"input_tokens": 3}}]
    assert reply_text("codex", "\n".join(map(json.dumps, lines))) == ("done", None)
    failed = [{"type": "turn.failed", "error": {"message": "exceeded retry limit"}}]
    assert reply_text("codex", json.dumps(failed[0])) == ("", "exceeded retry limit")


def test_availability_and_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = tmp_path / "bin" / "claude"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tool.parent))
    assert unavailable("claude", OFF) is None
    assert unavailable("codex", OFF) == "CLI not in PATH: codex"
    assert unavailable("command", {"argv": [str(tmp_path / "nope")]}) == \
        f"CLI not executable: {tmp_path / 'nope'}"
    assert augmented_path({"PATH": "/a:/b"}).startswith("/a:/b")
