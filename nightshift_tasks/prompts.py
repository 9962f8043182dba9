"""The three prompts of the loop. Each names the phase, the task and the project, and
ends with the exact JSON object it expects back.

What a project contributes (its CLAUDE.md/AGENTS.md rules, the requests that asked for a
task) is capped, so a huge file or issue costs neither a failed call nor a pile of tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

HANDS_OFF = (
    "Work only inside the current working directory. Change files; do not run git commit, "
    "git push, or open pull requests: nightshift reviews, commits and publishes the result "
    "itself. Nobody is watching this run, so never wait for a reply; if something is "
    "ambiguous, choose the smallest safe interpretation and say so."
)
PART_MAX_BYTES = 4 * 1024  # one convention/constraint line, or one request's text
SECTION_MAX_BYTES = 16 * 1024  # all notes together; all requests for one task together
PROJECT_RULES = "conventions and constraints (CLAUDE.md, AGENTS.md)"


@dataclass(frozen=True)
class TaskBrief:
    slug: str
    name: str
    description: str
    project: str
    path: str
    notes: tuple[str, ...] = ()  # the project's conventions and constraints (CLAUDE.md, AGENTS.md)
    sources: tuple[str, ...] = ()  # issues and td tasks that ask for this task


def _cut(text: str, limit: int) -> str:
    """At most `limit` bytes of UTF-8, never splitting a character."""
    return text.encode()[:limit].decode("utf-8", "ignore")


def bounded(parts: tuple[str, ...], what: str) -> tuple[tuple[str, ...], str | None]:
    """The parts, each cut to PART_MAX_BYTES and, in order, as many as fit SECTION_MAX_BYTES,
    with a "[… N bytes omitted]" marker wherever something was left out; and a warning
    naming `what` when anything was."""
    kept: list[str] = []
    used = omitted = 0
    for i, part in enumerate(parts):
        size = len(part.encode())
        cut = 0
        if size > PART_MAX_BYTES:
            head = _cut(part, PART_MAX_BYTES)
            cut = size - len(head.encode())
            part = f"{head} [… {cut:,} bytes omitted]"
        if used + len(part.encode()) > SECTION_MAX_BYTES:
            rest = sum(len(p.encode()) for p in parts[i:])
            kept.append(f"[… {len(parts) - i:,} more, {rest:,} bytes omitted]")
            omitted += rest
            break
        kept.append(part)
        used += len(part.encode())
        omitted += cut
    if not omitted:
        return parts, None
    total = sum(len(p.encode()) for p in parts)
    return tuple(kept), (f"{what}: {omitted:,} of {total:,} bytes left out of the prompts (at most "
                         f"{PART_MAX_BYTES:,} bytes per item, {SECTION_MAX_BYTES:,} in all)")


def _header(phase: str, brief: TaskBrief) -> str:
    text = (
        f"# nightshift: {phase} phase\n\n"
        f"Project: {brief.project} ({brief.path})\n"
        f"Task: {brief.name} [{brief.slug}]\n\n"
        f"## The task\n{brief.description.strip()}\n"
    )
    if brief.sources:
        text += ("\n## Requests that asked for this task\nAddress these first where they fit "
                 "the task:\n" + "".join(f"- {s}\n" for s in brief.sources))
    if brief.notes:
        text += ("\n## The project's conventions and constraints\nFollow these; they come from "
                 "the project's own agent instructions:\n" + "".join(f"- {n}\n" for n in brief.notes))
    return text


def plan_prompt(brief: TaskBrief) -> str:
    return _header("plan", brief) + (
        "\n## What to do now\n"
        "Read the project and decide the smallest useful piece of this task that can be "
        "finished in one unattended session. Do not change any file yet.\n\n"
        f"{HANDS_OFF}\n\n"
        "## Reply\nEnd your reply with one JSON object and nothing after it:\n"
        '{"description": "<what you will do and why, in 1-3 sentences>", '
        '"steps": ["<step>", "..."], "files": ["<relative path you expect to touch>", "..."]}\n'
    )


def implement_prompt(brief: TaskBrief, plan: str, steps: list[str], iteration: int,
                     feedback: list[str]) -> str:
    listed = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1)) or "(no separate steps)"
    again = ""
    if feedback:
        notes = "\n".join(f"- review {i}: {f}" for i, f in enumerate(feedback, 1))
        again = (f"\n## Earlier attempts\nThis is attempt {iteration}. The reviewer rejected "
                 f"the previous attempt(s); address every point:\n{notes}\n")
    return _header("implement", brief) + (
        f"\n## The plan\n{plan.strip()}\n\nSteps:\n{listed}\n{again}\n"
        "## What to do now\nCarry out the plan: make the changes, keep the project's tests "
        "and linters passing, and keep the change focused on this task.\n\n"
        f"{HANDS_OFF}\n\n"
        "## Reply\nEnd your reply with one JSON object and nothing after it:\n"
        '{"summary": "<what changed and why>", "files_modified": ["<relative path>", "..."]}\n'
    )


def review_prompt(brief: TaskBrief, summary: str, files: list[str]) -> str:
    listed = "\n".join(f"- {f}" for f in files) or "- (none reported)"
    return _header("review", brief) + (
        f"\n## The implementation to review\n{summary.strip()}\n\nFiles reported changed:\n"
        f"{listed}\n\n"
        "## What to do now\nInspect the working tree (for example with `git diff`). Pass the "
        "work only if it does what the task asks, is correct, introduces no bug, and leaves "
        "tests passing. Do not fix anything yourself.\n\n"
        f"{HANDS_OFF}\n\n"
        "## Reply\nEnd your reply with one JSON object and nothing after it:\n"
        '{"passed": true or false, "feedback": "<what must change, or why it passes>", '
        '"issues": ["<problem>", "..."]}\n'
    )
