from __future__ import annotations

from pathlib import Path

from nightshift_tasks.paths import find_config, nightshift_home


def test_home_defaults_to_xdg_data(tmp_path: Path) -> None:
    assert nightshift_home({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "nightshift"
    assert nightshift_home({"NIGHTSHIFT_HOME": str(tmp_path / "h")}) == tmp_path / "h"
    assert nightshift_home({}) == Path.home() / ".local/share/nightshift"


def test_lookup_order(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg" / "nightshift" / "config.yaml"
    xdg.parent.mkdir(parents=True)
    xdg.write_text("{}")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert find_config(None, tmp_path, env) == (xdg, None)
    local = tmp_path / "nightshift.yaml"
    local.write_text("{}")
    assert find_config(None, tmp_path, env) == (local, None)
    named = tmp_path / "named.yaml"
    named.write_text("{}")
    assert find_config(None, tmp_path, {**env, "NIGHTSHIFT_CONFIG": "named.yaml"}) == (named, None)
    var = tmp_path / "var.yaml"
    var.write_text("{}")
    assert find_config("var.yaml", tmp_path, {**env, "NIGHTSHIFT_CONFIG": str(named)}) == (var, None)


def test_nothing_found(tmp_path: Path) -> None:
    assert find_config(None, tmp_path, {"XDG_CONFIG_HOME": str(tmp_path)}) == (None, None)
    path, why = find_config("missing.yaml", tmp_path, {})
    assert path is None and why == f"config= names {tmp_path / 'missing.yaml'}, which does not exist"
