from __future__ import annotations

import pytest

from nightshift_tasks.loop import AgentFailure, extract_json, parse_plan, parse_review, run_loop
from nightshift_tasks.prompts import TaskBrief

BRIEF = TaskBrief("lint-fix", "Linter Fixes", "Fix lint.", "alpha", "/src/alpha")


def test_extract_json_tolerates_prose_fences_and_unknown_keys() -> None:
    text = 'Sure! {not json} here:\n```json\n{"summary": "x", "extra": 1, "files_modified": []}\n```'
    assert extract_json(text, ("summary",)) == {"summary": "x", "extra": 1, "files_modified": []}
    assert extract_json('{"other": 1}', ("summary",)) is None


def test_plan_without_json_uses_the_text() -> None:
    assert parse_plan("  I will fix the imports.  ") == ("I will fix the imports.", [])


@pytest.mark.parametrize(("text", "passed"), [
    ('{"passed": true, "feedback": "ok"}', True),
    ('{"passed": "yes"}', False),
    ('{"feedback": "no verdict", "passed": false}', False),
    ("LGTM, looks good and correct.", True),
    ("Needs work: a bug and missing tests.", False),
])
def test_review_verdicts(text: str, passed: bool) -> None:
    assert parse_review(text)[0] is passed


class Script:
    """A scripted agent: replies in order, recording the phases asked for."""

    def __init__(self, replies: list[str | Exception]) -> None:
        self.replies = replies
        self.phases: list[str] = []

    def __call__(self, phase: str, prompt: str) -> str:
        self.phases.append(phase)
        assert f"# nightshift: {phase.split()[0]} phase" in prompt
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def test_pass_after_a_rejection_feeds_the_feedback_back() -> None:
    agent = Script(['{"description": "p"}', '{"summary": "s1"}', '{"passed": false, "feedback": "F1"}',
                    '{"summary": "s2"}', '{"passed": true}'])
    prompts: list[str] = []
    original = agent.__call__

    def spy(phase: str, prompt: str) -> str:
        prompts.append(prompt)
        return original(phase, prompt)

    result = run_loop(spy, BRIEF)
    assert (result.status, result.iterations, result.summary) == ("completed", 2, "s2")
    assert "review 1: F1" in prompts[3]


def test_abandoned_after_three_rejections() -> None:
    agent = Script(["plan"] + ["impl", '{"passed": false, "feedback": "no"}'] * 3)
    result = run_loop(agent, BRIEF)
    assert result.status == "abandoned" and result.iterations == 3
    assert result.error == "review rejected 3 attempts; last: no"


def test_agent_failure_fails_the_task() -> None:
    result = run_loop(Script(["plan", AgentFailure("exit 2: boom")]), BRIEF)
    assert (result.status, result.error) == ("failed", "iteration 1 failed: exit 2: boom")
    result = run_loop(Script([AgentFailure("timed out")]), BRIEF)
    assert (result.status, result.error) == ("failed", "planning failed: timed out")
