from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from nightshift_tasks.paths import find_config, nightshift_home
from tests.conftest import Env


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
    # The current directory's nightshift.yaml is a project's own file, never the main config.
    (tmp_path / "nightshift.yaml").write_text("{}")
    assert find_config(None, tmp_path, env) == (xdg, None)
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


def ns(env: Env, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nightshift_tasks", *args], cwd=cwd, env=env.environ(),
                          capture_output=True, text=True, timeout=120)


def test_inside_a_project_its_own_file_only_overrides_that_project(env: Env) -> None:
    (alpha,) = env.projects(["alpha"])
    xdg = env.tmp / "xdg" / "nightshift" / "config.yaml"
    xdg.parent.mkdir(parents=True)
    env.config.rename(xdg)
    (alpha / "nightshift.yaml").write_text("tasks:\n  enabled: [dead-code]\n")
    listed = ns(env, "list", cwd=alpha)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:4] == ["alpha", "dead-code", "via", "command"]
    ran = ns(env, "run", cwd=alpha)
    assert ran.returncode == 0, ran.stderr
    assert sorted({(c.project, c.task) for c in env.calls()}) == [("alpha", "dead-code")]


def test_a_projects_own_file_as_the_main_config_is_an_error(env: Env) -> None:
    (alpha,) = env.projects(["alpha"])
    own = alpha / "nightshift.yaml"
    own.write_text("tasks:\n  enabled: [dead-code]\n")
    for result in (ns(env, "run", f"config={own}", cwd=alpha),
                   env.doit("list", f"config={own}", config=False)):
        assert result.returncode == 2
        assert result.stderr == (
            f"config error: {own}: this is a project's own nightshift.yaml (at the top of a git "
            "checkout, with no `projects:`), which only overrides settings for that project; the "
            "main config lists your repositories under `projects:`: `nightshift-tasks init` writes "
            f"one to {env.tmp / 'xdg' / 'nightshift' / 'config.yaml'}\n")
    assert not env.record.exists()


def test_a_main_config_inside_a_project_is_named_as_one(env: Env) -> None:
    (alpha,) = env.projects(["alpha"])
    (alpha / "nightshift.yaml").write_text(yaml.safe_dump({"projects": [{"path": str(alpha)}]}))
    listed = env.doit("list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split(None, 1)[1].strip() == (
        "skipped: invalid config: nightshift.yaml: line 1, column 1: projects: a project's own "
        "nightshift.yaml cannot list projects; this looks like a main config: pass it as "
        "config=PATH or move it to "
        f"{env.tmp / 'xdg' / 'nightshift' / 'config.yaml'}")


def test_a_config_without_projects_says_so_and_lists_nothing(env: Env) -> None:
    env.write_config({"projects": []})
    for result in (env.doit("list"), ns(env, "list", f"config={env.config}", cwd=env.tmp)):
        assert (result.returncode, result.stdout) == (0, "")
        assert result.stderr == (f"nightshift: warning: {env.config} lists no projects; add your "
                                 "repositories under `projects:` (`nightshift-tasks init DIR` finds them)\n")
