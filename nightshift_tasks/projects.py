"""Turn the config's `projects` entries into named, ordered project directories."""

from __future__ import annotations

import errno
import fnmatch
import glob
import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nightshift_tasks import urls
from nightshift_tasks.paths import nightshift_home

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
    url: str | None = None  # a url project's URL, credentials included: never shown
    mirror: str | None = None  # where a url project's mirror is (or will be)

    @property
    def repo(self) -> str:
        """Where git and gh run for the project: its checkout, or its mirror."""
        return self.mirror or self.path


def _excluded(path: str, excludes: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, ex) or path == ex or path.startswith(ex.rstrip("/") + "/")
               for ex in excludes)


def _check(path: str) -> tuple[str, str | None]:
    """(absolute path, why it cannot be a project or None). Symlink loops and unreadable
    parents make a problem, never an exception."""
    try:
        real = Path(path).resolve()
        if not real.exists():
            return str(real), "path does not exist"
        return str(real), None if real.is_dir() else "path is not a directory"
    except RuntimeError:  # how resolve() reports a symlink loop before Python 3.13
        return os.path.abspath(path), "path is a symlink loop"
    except OSError as exc:  # ELOOP from 3.13 on; EACCES for a parent we may not enter
        why = "is a symlink loop" if exc.errno == errno.ELOOP else f"cannot be read: {exc.strerror}"
        return os.path.abspath(path), f"path {why}"


def _expand(entry: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(identity, problem) pairs for one config entry: an absolute path, or for a url
    project its normalised URL."""
    if "url" in entry:
        return [(urls.normalised(entry["url"]), None)]
    if "path" in entry:
        return [_check(entry["path"])]
    matches = sorted((_check(m) for m in glob.glob(entry["pattern"], recursive=True)), key=lambda c: c[0])
    dirs = [m for m, problem in matches if problem is None and not _excluded(m, entry["exclude"])]
    if not dirs:
        return [(entry["pattern"], "pattern matched no directory")]
    return [(d, None) for d in dirs]


def safe_name(text: str) -> str:
    """A doit-safe task name: no ':' (subtask separator) and no '=' (command-line variable)."""
    return _UNSAFE.sub("-", text).strip("-.") or "project"


def mirror_dir(identity: str) -> Path:
    """Where the mirror of a url project lives: named after the repository, for people, and
    a digest of its normalised URL, so that each URL has its own and no URL can name a path
    outside the cache."""
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    stem = safe_name(urls.display_path(identity).rsplit("/", 1)[-1])[:40]
    return nightshift_home() / "mirrors" / f"{stem}-{digest}.git"


def _names(paths: list[str]) -> list[str]:
    """Directory basenames, prefixed with parent directories only where two collide.

    An unmatched pattern is named after its last parts that are not wildcards.
    """
    parts = [[x for x in Path(p).parts if not any(c in x for c in "*?[")] for p in paths]
    depth = [1] * len(paths)
    while True:
        names = [safe_name("-".join(p[-d:])) for p, d in zip(parts, depth, strict=True)]
        counts = Counter(names)
        clashes = {n for n in names if counts[n] > 1}
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
    names = _names([urls.display_path(p) if "url" in e else p for p, _, e in found])
    refs = [ProjectRef(name=name, path=path, priority=entry["priority"],
                       tasks=entry.get("tasks"), missing=problem, config=entry.get("config"),
                       base_branch=entry.get("base_branch"), url=entry.get("url"),
                       mirror=str(mirror_dir(path)) if "url" in entry else None)
            for name, (path, problem, entry) in zip(names, found, strict=True)]
    order = {ref.path: i for i, ref in enumerate(refs)}
    epoch = datetime.min.replace(tzinfo=datetime.now().astimezone().tzinfo)
    refs.sort(key=lambda r: (-r.priority, last_runs.get(r.path, epoch), order[r.path]))
    return refs
