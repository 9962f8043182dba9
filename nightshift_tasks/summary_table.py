"""The table a run ends with: one row per project (its provider path, counts per status,
tokens, agent time, reasons), fitted to the terminal's width. summary.py fills the rows
from doit's events and the ledger."""

from __future__ import annotations

from dataclasses import dataclass, field

from tabulate import tabulate

from nightshift_tasks import terminal as term
from nightshift_tasks.durations import format_duration
from nightshift_tasks.text import cells, one_line

COUNTED = ("completed", "failed", "abandoned", "skipped", "interrupted")
SHORT = {"completed": "done", "failed": "fail", "abandoned": "aband", "skipped": "skip",
         "interrupted": "intr", "agent time": "time"}  # headers when the full ones leave no room
MIN_REASON = len("reason") + 2  # the narrowest tabulate makes it; long names are cut for it
FULL_HEADERS_ROOM = 40  # the full headers only when they leave the reason this much


@dataclass
class Row:
    project: str
    provider: str = "-"
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTED, 0))
    seconds: float = 0.0
    tokens: int = 0
    reasons: list[str] = field(default_factory=list)


def joined(path: str, more: str) -> str:
    """Append a task's provider path ("claude→codex") to the project's, without repeats."""
    names = [p for p in path.split("→") if p and p != "-"]
    for name in more.split("→"):
        if name and (not names or names[-1] != name):
            names.append(name)
    return "→".join(names) or "-"


def render(rows: list[Row], note: str, width: int, colour: bool) -> str:
    """Fits `width`: the status columns are the ones this run used (completed always), and
    the reason column gets what is left; the problems below it are in full. `note` ends the
    TOTAL row."""
    shown = [k for k in COUNTED if k == "completed" or any(r.counts[k] for r in rows)]
    totals = {k: sum(r.counts[k] for r in rows) for k in shown}
    seconds = sum(r.seconds for r in rows)
    body = [cells(r.project, r.provider, *(r.counts[k] for k in shown), r.tokens,
                  format_duration(r.seconds) if r.seconds else "-", "; ".join(r.reasons))
            for r in rows]
    body.append(cells("TOTAL", "", *totals.values(), sum(r.tokens for r in rows),
                      format_duration(seconds) if seconds else "-", note))
    headers = ["project", "provider", *shown, "tokens", "agent time"]

    def room(names: list[str]) -> int:  # what is left for the reason column
        # tabulate's "simple" columns: 2 spaces apart, headers padded by 2 (MIN_PADDING)
        return width - sum(2 + max(len(h) + 2, *(len(str(row[i])) for row in body))
                           for i, h in enumerate(names))

    if room(headers) < FULL_HEADERS_ROOM:
        headers = [SHORT.get(h, h) for h in headers]
    for column, floor in ((0, 16), (1, 10), (0, 9)):  # still too wide: cut long names
        deficit = MIN_REASON - room(headers)
        longest = max(len(str(row[column])) for row in body)
        if deficit > 0 and longest > floor:
            for row in body:
                row[column] = one_line(row[column], max(floor, longest - deficit))
    left = max(len("reason"), room(headers))
    for row in body:
        row[-1] = one_line(row[-1], left)
    painted = [term.paint(h, colour) for h in headers]
    return "\n" + tabulate(body, headers=[*painted, "reason"], tablefmt="simple")
