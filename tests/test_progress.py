"""Live progress: on a terminal (a real pseudo-terminal here) the run shows what is in
flight; off a terminal, plain lines only."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

from tests.conftest import DODO, Env


def test_a_terminal_sees_projects_in_flight_with_task_and_phase(env: Env) -> None:
    env.projects(["alpha", "beta"])
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), "run", "-n", "2",
                             f"config={env.config}"], cwd=env.tmp,
                            env=env.environ(AGENT_SLEEP="1.3", COLUMNS="200"), stdin=subprocess.DEVNULL,
                            stdout=follower, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the run ended and closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=60) == 0
    text = seen.decode(errors="replace")
    # Either project may be dispatched first, so alpha need not lead the list.
    assert re.search(r"in flight: [^\r\n]*alpha lint-fix plan via command", text), text
    assert "beta lint-fix" in text
    assert "\x1b[K" in text


def test_off_a_terminal_only_plain_lines(env: Env) -> None:
    env.projects(["alpha"])
    result = env.doit("run")
    assert "\x1b[" not in result.stdout and "in flight" not in result.stdout
    assert "   alpha:lint-fix completed in " in result.stdout
