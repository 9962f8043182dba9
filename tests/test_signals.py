"""signals.py's watchdog and teardown of children: the watchdog's arithmetic in-process with
its clock and timer stood in for; whatever changes a process's own state (a subreaper, its
children, its exit) in a Python of its own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from nightshift_tasks import signals

ROOT = str(Path(__file__).resolve().parent.parent)
SHUTDOWN, TICK = signals.SHUTDOWN_SECONDS, signals.TICK_SECONDS


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """signals' monotonic clock, set by the test; the first signal came at 100.0."""
    now = [100.0]
    monkeypatch.setattr(signals, "time", SimpleNamespace(monotonic=lambda: now[0], sleep=time.sleep))
    monkeypatch.setattr(signals, "_signalled_at", 100.0)
    return now


@pytest.fixture
def timers(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every one-shot timer signals sets, in seconds, instead of setting it."""
    set_: list[float] = []
    monkeypatch.setattr(signals.signal, "setitimer", lambda which, seconds: set_.append(seconds))
    return set_


@pytest.mark.parametrize(("phase", "elapsed", "timer"), [
    ("worker", 3.0, SHUTDOWN - 3.0), ("finishing", 3.0, SHUTDOWN - 3.0),
    ("running", 3.0, TICK), ("loading", 3.0, TICK),  # the run can still be interrupted: tick
    ("worker", SHUTDOWN + 1.0, 0.001)])  # overdue: at once (0 would disarm it)
def test_the_watchdog_is_set_to_the_time_left_ticking_while_the_run_can_be_interrupted(
        monkeypatch: pytest.MonkeyPatch, clock: list[float], timers: list[float], phase: str,
        elapsed: float, timer: float) -> None:
    monkeypatch.setattr(signals, "_phase", phase)
    clock[0] += elapsed
    signals._arm()
    assert timers == [pytest.approx(timer)]


@pytest.mark.parametrize(("elapsed", "stops"), [(SHUTDOWN - 0.5, False), (SHUTDOWN, True),
                                                (SHUTDOWN + 0.5, True)])
def test_the_watchdog_stops_hard_once_the_bound_has_passed(
        monkeypatch: pytest.MonkeyPatch, clock: list[float], timers: list[float], elapsed: float,
        stops: bool) -> None:
    stopped: list[bool] = []
    monkeypatch.setattr(signals, "hard_stop", lambda: stopped.append(True))
    monkeypatch.setattr(signals, "_phase", "finishing")
    clock[0] += elapsed
    signals._tick(signal.SIGALRM, None)
    assert (stopped, len(timers)) == ([True] * stops, 1)


@pytest.mark.parametrize(("phase", "raised"), [("running", KeyboardInterrupt), ("loading", SystemExit)])
def test_each_tick_interrupts_again_a_run_not_yet_summarising(
        monkeypatch: pytest.MonkeyPatch, clock: list[float], timers: list[float], phase: str,
        raised: type[BaseException]) -> None:
    monkeypatch.setattr(signals, "_phase", phase)
    clock[0] += 1.0
    with pytest.raises(raised):
        signals._tick(signal.SIGALRM, None)
    assert timers == [TICK]


@pytest.mark.parametrize(("phase", "raised"), [("loading", SystemExit), ("running", KeyboardInterrupt),
                                               ("worker", KeyboardInterrupt), ("finishing", None)])
def test_a_signal_exits_before_the_run_interrupts_it_and_only_sets_the_status_once_summarising(
        monkeypatch: pytest.MonkeyPatch, phase: str, raised: type[BaseException] | None) -> None:
    monkeypatch.setattr(signals, "_phase", phase)
    if raised is None:
        signals._interrupt()
    else:
        with pytest.raises(raised):
            signals._interrupt()


def test_prctl_failing_is_false(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = SimpleNamespace(prctl=lambda *args: -1)
    monkeypatch.setattr(signals, "ctypes", SimpleNamespace(CDLL=lambda *a, **k: libc))
    assert signals._prctl(signals.PR_SET_CHILD_SUBREAPER, 1) is False


@pytest.mark.parametrize("parent_gone", [False, True])
def test_a_worker_whose_parent_is_already_gone_stops_at_once(
        monkeypatch: pytest.MonkeyPatch, parent_gone: bool) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(signals, "_prctl", lambda option, value: calls.append((option, value)) or True)
    parent = SimpleNamespace(pid=os.getppid() + parent_gone)  # another pid: we were adopted
    monkeypatch.setattr(signals.multiprocessing, "parent_process", lambda: parent)
    if parent_gone:
        with pytest.raises(KeyboardInterrupt):
            signals.die_with_parent()
    else:
        signals.die_with_parent()
    assert calls == [(signals.PR_SET_PDEATHSIG, signal.SIGTERM)]


DEATH_SIGNAL = """
import ctypes, multiprocessing
from nightshift_tasks import signals

def worker(queue):
    signals.die_with_parent()
    got = ctypes.c_int()
    ctypes.CDLL(None).prctl(2, ctypes.byref(got), 0, 0, 0)  # PR_GET_PDEATHSIG
    queue.put(got.value)

if __name__ == "__main__":
    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=worker, args=(queue,))
    child.start()
    print(queue.get(timeout=30))
    child.join()
"""


def test_a_worker_gets_sigterm_when_doits_main_process_dies() -> None:
    assert probe(DEATH_SIGNAL).stdout == f"{int(signal.SIGTERM)}\n"


def probe(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": ROOT})


def test_a_process_becomes_a_subreaper_only_where_prctl_succeeds() -> None:
    no_libc = ("signals.ctypes = type('C', (), {'CDLL': staticmethod(lambda *a, **k: open('/'))})\n")
    missing = probe("from nightshift_tasks import signals\n" + no_libc +
                    "print(signals._prctl(signals.PR_SET_CHILD_SUBREAPER, 1))\n"
                    "signals.become_subreaper()\nprint(signals._subreaper_pid)\n")
    assert missing.stdout == "False\n0\n"
    linux = probe("import os\nfrom nightshift_tasks import signals\nsignals.become_subreaper()\n"
                  "print(signals._subreaper_pid == os.getpid())\n")
    assert linux.stdout == "True\n"


def test_without_proc_there_are_no_children_to_find() -> None:
    out = probe("import os, subprocess\nfrom nightshift_tasks import signals\n"
                "def gone(*args): raise FileNotFoundError('/proc')\n"
                "signals.os.listdir = signals.os.scandir = gone\n"
                "child = subprocess.Popen(['sleep', '30'], stdout=subprocess.DEVNULL)\n"
                "print(signals.children(), signals.children(zombies=True))\nchild.kill()\n")
    assert out.stdout == "[] []\n", out.stderr


STOP_CHILDREN = """
import subprocess, time
from nightshift_tasks import signals
group = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], start_new_session=True,
                         stdout=subprocess.PIPE, text=True)
print(group.stdout.readline().strip(), flush=True)  # the grandchild, in the child's group
stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"],
                            stdout=subprocess.PIPE, text=True)  # in our group
stubborn.stdout.readline()
start = time.monotonic()
signals.stop_children(grace=0.5)
took = time.monotonic() - start
try:
    print(group.wait(timeout=5), stubborn.wait(timeout=5), took >= 0.5)
finally:
    stubborn.kill()
"""


def gone(pid: int) -> bool:
    """Whether the process has ended, waited for up to 5 s (init reaps an orphan when it can)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        time.sleep(0.01)
    return False


def test_stopping_children_terms_a_child_with_its_group_and_kills_what_ignores_term() -> None:
    out = probe(STOP_CHILDREN)
    grandchild, results = out.stdout.split("\n", 1)
    assert results == f"{-signal.SIGTERM} {-signal.SIGKILL} True\n", out.stderr
    assert gone(int(grandchild))


SWEEP = """
import os, subprocess
from nightshift_tasks import signals
child = subprocess.Popen(["sleep", "60"])
signals.sweep(frozenset(), 0.5)  # not a subreaper: nothing of its business
print(child.poll(), flush=True)
signals.become_subreaper()
kept = subprocess.Popen(["sleep", "60"])
zombie = subprocess.Popen(["true"])
os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)
signals.sweep(frozenset({kept.pid}), 0.5)  # the subreaper: stops and reaps all but `kept`
print(kept.poll(), os.path.exists(f"/proc/{child.pid}"), os.path.exists(f"/proc/{zombie.pid}"))
kept.kill()
"""


def test_only_the_subreaper_sweeps_and_it_reaps_what_it_stops_and_every_zombie() -> None:
    out = probe(SWEEP)
    assert out.stdout == "None\nNone False False\n", out.stderr


HARD_STOP = """
import subprocess, sys
from nightshift_tasks import signals
child = subprocess.Popen(["sh", "-c", "trap 'echo TERM >> %s' TERM; echo ready; while :; do sleep 0.1; done"],
                         stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print(child.pid, flush=True)
signals.hard_stop()
print("not reached")
"""


def test_the_hard_stop_kills_every_child_without_a_term_and_exits_130_saying_why(tmp_path: Path) -> None:
    termed = tmp_path / "termed"
    out = probe(HARD_STOP % termed)
    assert (out.returncode, out.stderr) == (signals.EXIT_INTERRUPTED, (
        f"nightshift: the orderly stop took over {SHUTDOWN:g}s; killing what is left\n"))
    assert gone(int(out.stdout))
    assert not termed.exists()  # no grace left: KILL at once


SCAN = """
import os, subprocess
from nightshift_tasks import signals
child = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
grandchild = int(child.stdout.readline())
try:
    print(signals._scan_children(os.getpid()) == [child.pid] == signals.children(), grandchild > child.pid)
finally:
    os.kill(grandchild, 9)
    child.wait()
"""


def test_the_scan_of_proc_finds_exactly_our_children_not_theirs() -> None:
    # The grandchild's parent is a pid above ours: a scan comparing loosely would take it too.
    out = probe(SCAN)
    assert out.stdout == "True True\n", out.stderr


def test_a_child_in_another_childs_group_is_signalled_alone() -> None:
    joiner = subprocess.Popen([sys.executable, "-c", "import os, sys, time\nos.setpgid(0, int(input()))\n"
                               "print('joined', flush=True)\ntime.sleep(60)\n"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    leader = subprocess.Popen(["sleep", "60"], process_group=0)  # a group led by a later pid
    try:
        assert joiner.stdin is not None and joiner.stdout is not None
        joiner.stdin.write(f"{leader.pid}\n")
        joiner.stdin.flush()
        assert joiner.stdout.readline() == "joined\n"
        assert os.getpgid(joiner.pid) == leader.pid > joiner.pid
        signals._signal_child(joiner.pid, signal.SIGTERM)
        assert (joiner.wait(timeout=10), leader.poll()) == (-signal.SIGTERM, None)
    finally:
        joiner.kill()
        leader.kill()
        leader.wait()


def test_the_readme_states_the_stop_bounds_the_code_enforces() -> None:
    readme = (Path(ROOT) / "README.md").read_text()
    stated = re.search(r"within about (\d+) seconds, with exit status 130: each agent's process\s+"
                       r"group gets TERM, then KILL after (\d+) s", readme)
    assert stated is not None
    assert (float(stated[1]), float(stated[2])) == (SHUTDOWN, signals.GRACE_SECONDS) == (8.0, 5.0)
