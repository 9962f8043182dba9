"""Turn the config's `projects` entries into named, ordered project directories."""

from __future__ import annotations

import fnmatch
import glob
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ProjectRef:
    name: str
    path: str
    priority: int
    tasks: list[str] | None
    missing: str | None = None  # why the project cannot be used, if it cannot
    config: str | None = None  # the project's own config file, if not <path>/nightshift.yaml
    base_branch: str | None = None


def _excluded(path: str, excludes: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, ex) or path == ex or path.startswith(ex.rstrip("/") + "/")
               for ex in excludes)


def _expand(entry: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(absolute path, problem) pairs for one config entry."""
    if "path" in entry:
        path = str(Path(entry["path"]).resolve())
        if not Path(path).exists():
            return [(path, "path does not exist")]
        if not Path(path).is_dir():
            return [(path, "path is not a directory")]
        return [(path, None)]
    matches = sorted(str(Path(m).resolve()) for m in glob.glob(entry["pattern"], recursive=True))
    dirs = [m for m in matches if Path(m).is_dir() and not _excluded(m, entry["exclude"])]
    if not dirs:
        return [(entry["pattern"], "pattern matched no directory")]
    return [(d, None) for d in dirs]


def safe_name(text: str) -> str:
    """A doit-safe task name: no ':' (subtask separator) and no '=' (command-line variable)."""
    return _UNSAFE.sub("-", text).strip("-.") or "project"


def _names(paths: list[str]) -> list[str]:
    """Directory basenames, prefixed with parent directories only where two collide.

    An unmatched pattern is named after its last parts that are not wildcards.
    """
    parts = [[x for x in Path(p).parts if not any(c in x for c in "*?[")] for p in paths]
    depth = [1] * len(paths)
    while True:
        names = [safe_name("-".join(p[-d:])) for p, d in zip(parts, depth, strict=True)]
        clashes = {n for n in names if names.count(n) > 1}
        grow = [i for i, n in enumerate(names) if n in clashes and depth[i] < len(parts[i])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def resolve_projects(entries: list[dict[str, Any]],
                     last_runs: dict[str, datetime]) -> list[ProjectRef]:
    """Every configured project, unusable ones included with their reason.

    Order: priority descending, then least recently run (never run first), then config order.
    """
    found: list[tuple[str, str | None, dict[str, Any]]] = []
    seen: set[str] = set()
    for entry in entries:
        for path, problem in _expand(entry):
            if path not in seen:
                seen.add(path)
                found.append((path, problem, entry))
    names = _names([p for p, _, _ in found])
    refs = [ProjectRef(name=name, path=path, priority=entry["priority"],
                       tasks=entry.get("tasks"), missing=problem, config=entry.get("config"),
                       base_branch=entry.get("base_branch"))
            for name, (path, problem, entry) in zip(names, found, strict=True)]
    order = {ref.path: i for i, ref in enumerate(refs)}
    epoch = datetime.min.replace(tzinfo=datetime.now().astimezone().tzinfo)
    refs.sort(key=lambda r: (-r.priority, last_runs.get(r.path, epoch), order[r.path]))
    return refs
