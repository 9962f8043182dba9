"""ProviderAgent's retry schedule in process, where hundreds of draws of its jitter cost
nothing: the doit-level tests in test_execute.py see three delays of a real run, too few to
tell a factor drawn from [0.5, 1.5] from a constant one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nightshift_tasks.agents import Failure
from nightshift_tasks.provider_agent import ProviderAgent, ProviderExhausted
from nightshift_tasks.spec import Candidate, Section

RETRIES = 400  # the odds that no factor lands in [0.5, 0.55) or (1.45, 1.5]: 2 x 0.95**400


def test_transient_failures_retry_with_doubling_delays_and_jitter_over_the_whole_range(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = ProviderAgent.__new__(ProviderAgent)  # only the log: no call reaches the ledger
    agent.log = tmp_path / "task.log"
    tries: list[str] = []

    def once(cand: Candidate, phase: str, prompt: str) -> Failure:
        tries.append(phase)
        return Failure("transient", "HTTP 429 too many requests")

    slept: list[float] = []
    monkeypatch.setattr(agent, "_once", once)
    monkeypatch.setattr("nightshift_tasks.provider_agent.time.sleep", slept.append)
    cand = Candidate("command", Section({}), 60.0, 0.05, RETRIES, None)
    with pytest.raises(ProviderExhausted) as exc:
        agent._with_retries(cand, "plan", "the prompt")
    assert str(exc.value) == "command: HTTP 429 too many requests"
    assert len(tries) == RETRIES + 1 and len(slept) == RETRIES
    factors = [delay / (0.05 * 2 ** attempt) for attempt, delay in enumerate(slept)]
    assert all(0.5 <= f <= 1.5 for f in factors)
    assert min(factors) < 0.55 and max(factors) > 1.45
    retries = re.findall(r"^----- nightshift: command transient failure \(HTTP 429 too many "
                         r"requests\); retry (\d+)/(\d+) in ", agent.log.read_text(), re.M)
    assert retries == [(str(n), str(RETRIES)) for n in range(1, RETRIES + 1)]
