"""What a project says about itself in CLAUDE.md / AGENTS.md (§9 of the behaviour spec).

Bullets under a task/todo heading that name a catalogue task (by slug or name) give that
task the context bonus; conventions, constraints and allowed/forbidden rules are handed
to the agent in every prompt.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from nightshift_tasks.catalog import TaskDef

CLAUDE_FILES = ("claude.md", "CLAUDE.md", ".claude.md")
AGENTS_FILES = ("AGENTS.md", "agents.md", ".agents.md")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*)$")
BULLET = re.compile(r"^\s*[-*]\s+(.*\S)\s*$")

# (section, words in the heading); the first match wins.
CLAUDE_SECTIONS = [("task", ("task", "todo")), ("convention", ("convention", "coding", "style")),
                   ("constraint", ("constraint", "restriction", "safety"))]
AGENTS_SECTIONS = [("task", ("task", "todo")), ("forbidden", ("forbidden", "prohibited", "never",
                                                               "don't", "do not")),
                   ("allowed", ("allow", "permitted", "can")), ("tools", ("tool", "restrict")),
                   ("constraint", ("safety", "constraint"))]
LABELS = {"convention": "Convention", "constraint": "Constraint", "allowed": "Allowed",
          "forbidden": "Forbidden", "tools": "Tool restriction"}


@dataclass(frozen=True)
class ProjectContext:
    mentioned: frozenset[str]
    notes: tuple[str, ...]  # one line each, for the prompt
    files: tuple[str, ...]


def _first(root: Path, names: tuple[str, ...]) -> Path | None:
    folder = str(root)  # os.path rather than a Path per name: this runs for every project
    return next((root / n for n in names if os.path.isfile(os.path.join(folder, n))), None)


def _section(heading: str, table: list[tuple[str, tuple[str, ...]]]) -> str | None:
    words = heading.lower()
    for name, keys in table:
        if any(re.search(rf"(?<![a-z]){re.escape(k)}", words) for k in keys):
            return name
    return None


def parse(text: str, table: list[tuple[str, tuple[str, ...]]], sticky: bool) -> list[tuple[str, str]]:
    """(section, bullet text) pairs. With `sticky`, a heading that matches nothing keeps the
    section of the one before it (CLAUDE.md); otherwise it ends it (AGENTS.md)."""
    section: str | None = None
    found = []
    for line in text.splitlines():
        heading = HEADING.match(line)
        if heading:
            matched = _section(heading.group(1), table)
            section = matched if matched or not sticky else section
            continue
        bullet = BULLET.match(line)
        if bullet and section:
            found.append((section, bullet.group(1)))
    return found


def names_task(text: str, task: TaskDef) -> bool:
    lower = text.lower()
    return bool(re.search(rf"(?<![a-z0-9-]){re.escape(task.slug)}(?![a-z0-9-])", lower)
                or task.name.lower() in lower)


def read_context(root: Path, catalog: list[TaskDef], claude_md: bool,
                 agents_md: bool) -> ProjectContext:
    hints: list[tuple[str, str]] = []
    files = []
    for enabled, names, table, sticky in ((claude_md, CLAUDE_FILES, CLAUDE_SECTIONS, True),
                                          (agents_md, AGENTS_FILES, AGENTS_SECTIONS, False)):
        path = _first(root, names) if enabled else None
        if path is None:
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        files.append(path.name)
        hints += parse(text, table, sticky)
    tasks = [h for kind, h in hints if kind == "task"]
    mentioned = frozenset(t.slug for t in catalog if tasks and any(names_task(h, t) for h in tasks))
    notes = tuple(f"{LABELS[kind]}: {h}" for kind, h in hints if kind in LABELS)
    return ProjectContext(mentioned, notes, tuple(files))
