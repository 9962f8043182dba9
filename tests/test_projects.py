from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from nightshift_tasks.projects import resolve_projects, safe_name
from tests.conftest import Env


def entry(**kw: object) -> dict[str, object]:
    return {"priority": 0, "exclude": [], **kw}


def test_names_are_basenames_disambiguated_by_parent(tmp_path: Path) -> None:
    for rel in ("work/api", "home/api", "solo"):
        (tmp_path / rel).mkdir(parents=True)
    refs = resolve_projects([entry(path=str(tmp_path / r)) for r in ("work/api", "home/api", "solo")],
                            {})
    assert [r.name for r in refs] == ["work-api", "home-api", "solo"]


def test_pattern_exclude_missing_and_order(tmp_path: Path) -> None:
    for rel in ("src/a", "src/b", "src/old/c", "x"):
        (tmp_path / rel).mkdir(parents=True)
    now = datetime.now().astimezone()
    refs = resolve_projects([
        entry(pattern=str(tmp_path / "src/**"), exclude=[str(tmp_path / "src/old")]),
        entry(path=str(tmp_path / "x"), priority=5),
        entry(path=str(tmp_path / "nope")),
        entry(pattern=str(tmp_path / "none/*")),
    ], {str(tmp_path / "src"): now, str(tmp_path / "src/a"): now - timedelta(days=1)})
    assert [(r.name, r.missing) for r in refs] == [
        ("x", None), ("b", None), ("nope", "path does not exist"), ("none", "pattern matched no directory"),
        ("a", None), ("src", None)]


def test_safe_name() -> None:
    assert safe_name("my app:v2=x") == "my-app-v2-x"


def test_symlink_loops_are_a_reason_not_a_crash(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    (tmp_path / "src" / "ok").mkdir(parents=True)
    (tmp_path / "src" / "bad").symlink_to(tmp_path / "src" / "bad")
    refs = resolve_projects([entry(path=str(loop)), entry(pattern=str(tmp_path / "src" / "*"))], {})
    assert [(r.name, r.path, r.missing) for r in refs] == [
        ("loop", str(loop), "path is a symlink loop"), ("ok", str(tmp_path / "src" / "ok"), None)]


def test_a_symlink_loop_project_is_skipped_and_the_others_run(env: Env) -> None:
    (good,) = env.projects(["good"])
    loop = env.tmp / "loop"
    loop.symlink_to(loop)
    env.write_config({"projects": [{"path": str(loop)}, {"path": str(good)}]})
    result = env.doit("run")
    assert (result.returncode, "Traceback" in result.stderr) == (0, False)
    assert {c.project for c in env.calls()} == {"good"}
    assert f"loop   skipped: path is a symlink loop: {loop}" in env.doit("list").stdout
