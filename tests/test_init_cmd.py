"""`nightshift-tasks init`: a commented starting config from the shipped example, with the
git repositories found under the given directories and the agent CLIs found on the PATH."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from nightshift_tasks.catalog import builtin_slugs
from nightshift_tasks.config import load_config
from nightshift_tasks.paths import example_config
from tests.conftest import ROOT, Env, require_program

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
EXAMPLE = ROOT / "config.example.yaml"


def init(env: Env, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """init with HOME and PATH of the test's own, so only its stand-in CLIs are found."""
    path = f"{env.tmp / 'bin'}:{SYSTEM_PATH}"
    return subprocess.run([sys.executable, "-m", "nightshift_tasks", "init", *args], cwd=env.tmp,
                          env=env.environ(HOME=str(env.tmp), PATH=path, **extra),
                          capture_output=True, text=True, timeout=60)


def standin(env: Env, name: str) -> None:
    (env.tmp / "bin").mkdir(exist_ok=True)
    (env.tmp / "bin" / name).write_text("#!/bin/sh\nexit 0\n")
    (env.tmp / "bin" / name).chmod(0o755)


def written(env: Env) -> Path:
    return env.tmp / "xdg" / "nightshift" / "config.yaml"


def test_init_lists_the_repositories_and_enables_the_clis_on_path(env: Env) -> None:
    require_program("git")
    src = env.tmp / "repos"
    mine = [env.repo("alpha"), env.repo("org/beta")]
    env.repo("alpha/vendor/inner")  # inside a checkout: not a project of its own
    env.repo(".hidden/gamma")
    env.repo("web/node_modules/dep")
    (src / "plain" / "dir").mkdir(parents=True)
    standin(env, "claude")
    result = init(env, str(src))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:3] == [f"wrote {written(env)}", "projects: 2 found", "agents: claude"]
    text = written(env).read_text()
    # The example's comments are kept, the editor's schema line first.
    first, second = text.splitlines()[:2]
    assert first == example_config().read_text().splitlines()[0]
    assert second.startswith("# nightshift-tasks configuration")
    data = yaml.safe_load(text)
    assert data["projects"] == [{"path": str(p)} for p in mine]
    others = {name: shutil.which(name, path=SYSTEM_PATH) is not None for name in ("codex", "copilot")}
    assert {n: data["providers"][n]["enabled"] for n in ("claude", "codex", "copilot")} == \
        {"claude": True, **others}
    # Everything else is the example's, and the result is a valid config the commands find.
    example = yaml.safe_load(EXAMPLE.read_text())
    assert {k: v for k, v in data.items() if k not in ("projects", "providers")} == \
        {k: v for k, v in example.items() if k not in ("projects", "providers")}
    load_config(written(env), builtin_slugs(), {})
    listed = subprocess.run([sys.executable, "-m", "nightshift_tasks", "list"], cwd=env.tmp,
                            env=env.environ(), capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["alpha", "beta"]


def test_init_without_directories_writes_the_example(env: Env) -> None:
    result = init(env)
    assert result.returncode == 0, result.stderr
    assert "projects: the example's placeholders" in result.stdout
    assert "agents: " in result.stdout
    example = yaml.safe_load(EXAMPLE.read_text())
    data = yaml.safe_load(written(env).read_text())
    assert data["projects"] == example["projects"]
    assert data["providers"]["claude"]["enabled"] is (shutil.which("claude", path=SYSTEM_PATH) is not None)


def test_init_never_overwrites(env: Env) -> None:
    written(env).parent.mkdir(parents=True)
    written(env).write_text("mine: true\n")
    result = init(env)
    assert result.returncode == 1
    assert result.stderr == (f"nightshift-tasks init: {written(env)} exists; nothing written (edit it, "
                             "or move it away and run init again)\n")
    assert written(env).read_text() == "mine: true\n"


def test_init_writes_where_the_commands_look_first(env: Env) -> None:
    chosen = env.tmp / "elsewhere" / "my.yaml"
    assert init(env, f"config={chosen}").returncode == 0
    assert chosen.is_file() and not written(env).exists()
    named = env.tmp / "named.yaml"
    assert init(env, NIGHTSHIFT_CONFIG=str(named)).returncode == 0
    assert named.is_file() and not written(env).exists()


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_init_bad_directories_write_nothing(env: Env, case: str) -> None:
    where = env.tmp / case
    if case == "empty":
        where.mkdir()
    result = init(env, str(where))
    expected = ((2, f"nightshift-tasks init: {where}: not a directory; nothing written\n")
                if case == "missing" else
                (1, f"nightshift-tasks init: no git repository under {where}; nothing written\n"))
    assert (result.returncode, result.stderr) == expected
    assert not written(env).exists()


def test_no_config_message_points_at_init(env: Env) -> None:
    for result in (env.doit("list", config=False),
                   subprocess.run([sys.executable, "-m", "nightshift_tasks", "list"], cwd=env.tmp,
                                  env=env.environ(), capture_output=True, text=True, timeout=60)):
        assert result.returncode == 2
        assert "`nightshift-tasks init ~/src` writes a commented config there" in result.stderr
        assert "config.example.yaml" not in result.stderr


def test_the_wheel_ships_the_example(tmp_path: Path) -> None:
    """The example init copies is inside the package, not only in a checkout."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("nightshift_tasks-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("nightshift_tasks/config.example.yaml").decode()
    assert shipped == (ROOT / "config.example.yaml").read_text()
    assert "not read yet" not in shipped
