"""Live progress: on a terminal (a real pseudo-terminal here) the run shows what is in
flight; off a terminal, plain lines only."""

from __future__ import annotations

import re

from tests.conftest import Env, on_terminal


def test_a_terminal_sees_projects_in_flight_with_task_and_phase(env: Env) -> None:
    env.projects(["alpha", "beta"])
    # Both plan calls wait until the terminal showed them both in flight. Either project may
    # be dispatched first, so alpha need not lead the list.
    both = (r"in flight: [^\r\n]*(alpha|beta) lint-fix plan via command \S+ \| "
            r"(?!\1)(alpha|beta) lint-fix plan via command ")
    code, text = on_terminal(env, 200, "-n", "2", release=both)
    assert code == 0
    assert re.search(both, text), text
    assert re.search(r"in flight: [^\r\n]*alpha lint-fix plan via command", text), text
    assert "\x1b[K" in text


def test_off_a_terminal_only_plain_lines(env: Env) -> None:
    env.projects(["alpha"])
    result = env.doit("run")
    assert "\x1b[" not in result.stdout and "in flight" not in result.stdout
    assert "   alpha:lint-fix completed in " in result.stdout
