"""Issue sources (`integrations.task_sources`): GitHub issues labelled `nightshift`, `td`
tasks, and a plain file. An item that names a catalogue task (by label, slug or name)
gives it the source bonus, and its text goes into that task's prompt.

A missing CLI or a failing call is a warning, never a crash.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightshift_tasks.agents import agent_env
from nightshift_tasks.catalog import TaskDef
from nightshift_tasks.context import names_task

CALL_TIMEOUT = 60
GH_FIELDS = "number,title,body,labels,state"
TD_TEACHING = (
    "This project tracks work with the `td` CLI. `td list` shows open issues, `td show <id>` "
    "one issue, `td start <id>` begins work on it, `td log <message>` records progress, "
    "`td handoff <id> --done <text> --remaining <text>` records where you stopped and "
    "`td review <id>` submits it for review. Start an issue before working on it and log "
    "what you did."
)


@dataclass(frozen=True)
class SourceItem:
    origin: str  # e.g. "GitHub issue #12"
    text: str
    slugs: frozenset[str]


@dataclass(frozen=True)
class Sources:
    items: tuple[SourceItem, ...]
    notes: tuple[str, ...]  # extra guidance for the agent (td teaching)
    warnings: tuple[str, ...]

    @property
    def sourced(self) -> frozenset[str]:
        return frozenset(s for item in self.items for s in item.slugs)


class SourceError(Exception):
    pass


def missing_program(program: str) -> str | None:
    """Why a source's program cannot run (the same words for every project, so the warning is
    shown once per command), or None. `doctor` shows it with what to do."""
    if shutil.which(program, path=agent_env()["PATH"]) is None:
        return f"`{program}` is not installed (not on PATH; `nightshift-tasks doctor` explains)"
    return None


def _run(argv: list[str], cwd: Path) -> Any:
    missing = missing_program(argv[0])
    if missing:
        raise SourceError(missing)
    env = agent_env()
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=CALL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise SourceError(f"`{' '.join(argv[:3])}` took longer than {CALL_TIMEOUT}s") from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise SourceError(f"`{' '.join(argv[:3])}` exited {proc.returncode}: {detail}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise SourceError(f"`{' '.join(argv[:3])}` did not print JSON") from None


def _match(catalog: list[TaskDef], labels: list[str], text: str) -> frozenset[str]:
    return frozenset(t.slug for t in catalog if t.slug in labels or names_task(text, t))


def github_issues(root: Path, catalog: list[TaskDef]) -> list[SourceItem]:
    missing = missing_program("gh")  # before the remote: a missing gh is one problem, not one per project
    if missing:
        raise SourceError(missing)
    remote = subprocess.run(["git", "remote", "get-url", "origin"], cwd=root, capture_output=True,
                            text=True, check=False).stdout
    if "github.com" not in remote:
        raise SourceError("no github.com `origin` remote")
    issues = _run(["gh", "issue", "list", "--label", "nightshift", "--state", "open", "--json",
                   GH_FIELDS], root)
    items = []
    for issue in issues if isinstance(issues, list) else []:
        labels = [str(lab.get("name", "")) for lab in issue.get("labels") or [] if isinstance(lab, dict)]
        title, body = str(issue.get("title", "")), str(issue.get("body") or "")
        items.append(SourceItem(f"GitHub issue #{issue.get('number')}", f"{title}\n{body}".strip(),
                                _match(catalog, labels, f"{title}\n{body}")))
    return items


def td_tasks(root: Path, catalog: list[TaskDef]) -> list[SourceItem]:
    """`td list` shows issues not closed; with --format json, an array of td's Issue
    objects (`title`, `description`, `status`, `labels`, ...)."""
    issues = _run(["td", "list", "--format", "json"], root)
    items = []
    for issue in issues if isinstance(issues, list) else []:
        if not isinstance(issue, dict) or issue.get("status") == "closed":
            continue
        labels = [str(lab) for lab in issue.get("labels") or []]
        text = f"{issue.get('title', '')}\n{issue.get('description') or ''}".strip()
        items.append(SourceItem(f"td task {issue.get('id')}", text, _match(catalog, labels, text)))
    return items


def file_items(path: Path, catalog: list[TaskDef]) -> list[SourceItem]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}") from None
    return [SourceItem(f"{path.name}:{n}", line.strip(), _match(catalog, [], line))
            for n, line in enumerate(lines, 1) if line.strip()]


def gather(entries: list[dict[str, Any]], root: Path, catalog: list[TaskDef]) -> Sources:
    items: list[SourceItem] = []
    notes: list[str] = []
    warnings: list[str] = []
    for entry in entries:
        try:
            if entry.get("github_issues"):
                items += github_issues(root, catalog)
            elif "td" in entry and entry["td"].get("enabled"):
                items += td_tasks(root, catalog)
                if entry["td"].get("teach_agent"):
                    notes.append(TD_TEACHING)
            elif "file" in entry:
                items += file_items(root / Path(entry["file"]).expanduser(), catalog)
        except SourceError as exc:
            kind = next(iter(entry))
            warnings.append(f"task source {kind}: {exc}; skipped")
    return Sources(tuple(i for i in items if i.slugs), tuple(notes), tuple(warnings))
