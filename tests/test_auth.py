"""Offline login signals of copilot (claude and codex: see test_real_clis.py's doctor test)."""

from __future__ import annotations

from pathlib import Path

from nightshift_tasks.agents import login_state


def test_copilot_login_from_env_config_or_gh(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path)}
    level, detail = login_state("copilot", {}, home) or ("", "")
    assert level == "WARN" and detail.startswith("not logged in")
    assert login_state("copilot", {}, {**home, "GH_TOKEN": "gho_secret", "GITHUB_TOKEN": "x"}) == (
        "OK", "token in $GH_TOKEN")
    classic = login_state("copilot", {}, {**home, "COPILOT_GITHUB_TOKEN": "ghp_secret"}) or ("", "")
    assert classic[0] == "WARN" and "classic personal access token" in classic[1]
    assert "ghp_secret" not in classic[1]
    config = tmp_path / ".copilot" / "config.json"
    config.parent.mkdir()
    config.write_text('// User settings belong in settings.json.\n// This file is managed '
                      'automatically.\n{"firstLaunchAt": "2026-11-29T09:11:51.873Z"}\n')
    assert login_state("copilot", {}, home)[0] == "WARN"  # type: ignore[index]
    config.write_text('// managed\n{"loggedInUsers": [{"host": "https://github.com", "login": "me"}]}')
    assert login_state("copilot", {}, home) == ("OK", f"login stored in {config}")
    config.unlink()
    hosts = tmp_path / ".config" / "gh" / "hosts.yml"
    hosts.parent.mkdir(parents=True)
    hosts.write_text("github.com:\n    git_protocol: https\n    users:\n        me:\n    user: me\n")
    assert login_state("copilot", {}, home) == ("OK", f"login stored in {hosts} (gh auth login)")
    assert login_state("command", {"argv": ["x"]}, home) is None
