from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from nightshift_tasks.projects import resolve_projects, safe_name


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
