"""plan -> implement -> review, up to three implement/review rounds, with lenient parsing
of the agent's JSON replies."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nightshift_tasks import prompts

MAX_ITERATIONS = 3
PASS_WORDS = ("passed", "approved", "looks good", "lgtm", "ship it", "no issues", "complete",
              "correct", "successful")
FAIL_WORDS = ("failed", "rejected", "issues found", "needs work", "incorrect", "bug", "error",
              "missing", "incomplete")


class AgentFailure(Exception):
    """An agent call that did not produce a reply (exit status, timeout, reported error).

    kind "provider" means only provider trouble (rate limits, quota) was to blame.
    """

    def __init__(self, message: str, kind: str = "agent") -> None:
        super().__init__(message)
        self.kind = kind


# (phase label, prompt) -> reply text; raises AgentFailure.
Agent = Callable[[str, str], str]


@dataclass(frozen=True)
class LoopResult:
    status: str  # completed | failed | abandoned
    iterations: int
    summary: str = ""
    error: str | None = None
    failure: str | None = None  # AgentFailure.kind of a failed task
    plan: str = ""  # the plan's description, for the commit message
    review: str = ""  # the last review's feedback, for the PR body


def extract_json(text: str, wanted: tuple[str, ...]) -> dict[str, Any] | None:
    """The last JSON object in the text that has one of the wanted keys.

    Replies often wrap the object in prose or a code fence; other keys are ignored.
    """
    decoder = json.JSONDecoder()
    found = None
    pos = text.find("{")
    while pos != -1:
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            pos = text.find("{", pos + 1)
            continue
        if isinstance(value, dict) and any(k in value for k in wanted):
            found = value
        pos = text.find("{", end)
    return found


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def parse_plan(text: str) -> tuple[str, list[str]]:
    doc = extract_json(text, ("description", "steps", "files"))
    if doc is None:
        return text.strip(), []
    return str(doc.get("description") or "").strip() or text.strip(), _strings(doc.get("steps"))


def parse_implement(text: str) -> tuple[str, list[str]]:
    doc = extract_json(text, ("summary", "files_modified"))
    if doc is None:
        return text.strip(), []
    return str(doc.get("summary") or "").strip() or text.strip(), _strings(doc.get("files_modified"))


def parse_review(text: str) -> tuple[bool, str]:
    """With JSON, `passed` must be true; without, a vote of pass words against fail words."""
    doc = extract_json(text, ("passed",))
    if doc is not None:
        feedback = str(doc.get("feedback") or "")
        issues = _strings(doc.get("issues"))
        if issues:
            feedback = (feedback + " Issues: " + "; ".join(issues)).strip()
        return doc.get("passed") is True, feedback
    lower = text.lower()
    votes = sum(w in lower for w in PASS_WORDS) - sum(w in lower for w in FAIL_WORDS)
    return votes > 0, text.strip()


def run_loop(agent: Agent, brief: prompts.TaskBrief) -> LoopResult:
    try:
        plan_text = agent("plan", prompts.plan_prompt(brief))
    except AgentFailure as exc:
        return LoopResult("failed", 0, error=f"planning failed: {exc}", failure=exc.kind)
    plan, steps = parse_plan(plan_text)
    feedback: list[str] = []
    summary = ""
    for iteration in range(1, MAX_ITERATIONS + 1):
        try:
            reply = agent(f"implement {iteration}",
                          prompts.implement_prompt(brief, plan, steps, iteration, feedback))
            summary, files = parse_implement(reply)
            passed, note = parse_review(agent(f"review {iteration}",
                                              prompts.review_prompt(brief, summary, files)))
        except AgentFailure as exc:
            return LoopResult("failed", iteration, summary,
                              f"iteration {iteration} failed: {exc}", exc.kind)
        if passed:
            return LoopResult("completed", iteration, summary, plan=plan, review=note)
        feedback.append(note)
    return LoopResult("abandoned", MAX_ITERATIONS, summary,
                      f"review rejected {MAX_ITERATIONS} attempts; last: {feedback[-1][:300]}")
