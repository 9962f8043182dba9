from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nightshift_tasks.process import (
    GRACE_SECONDS,
    ProcResult,
    alive,
    append_log,
    capture,
    run_process,
    stop_pgid,
)


def test_output_exit_code_and_cwd(tmp_path: Path) -> None:
    result = run_process(["sh", "-c", 'pwd; echo err >&2; exit 4'], str(tmp_path), 10, os.environ)
    assert (result.exit_code, result.stdout.strip(), result.stderr.strip()) == (4, str(tmp_path), "err")
    assert not result.ok


def test_the_prompt_stays_one_argument_without_a_shell(tmp_path: Path) -> None:
    prompt = 'a "b" $(touch pwned) ; rm -rf /'
    result = run_process(["printf", "%s|", prompt, "x"], str(tmp_path), 10, os.environ)
    assert result.stdout == f"{prompt}|x|"
    assert not (tmp_path / "pwned").exists()


def test_timeout_stops_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "gc"
    script = f"sleep 300 & echo $! > {pidfile}; trap '' TERM; wait"
    result = run_process(["sh", "-c", script], str(tmp_path), 0.5, os.environ, grace=0.5)
    assert result.timed_out and result.exit_code == -1
    pid = int(pidfile.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]


def test_missing_program_is_an_error_not_an_exception(tmp_path: Path) -> None:
    (tmp_path / "not-executable").write_text("#!/bin/sh\n")
    assert [run_process([program, "x"], str(tmp_path), 10, os.environ) for program in
            ["/nonexistent/agent", "./not-executable", "no-such-agent-on-path"]] == [
        ProcResult(-1, "", "", 0.0, error="cannot start /nonexistent/agent: No such file or directory"),
        ProcResult(-1, "", "", 0.0, error="cannot start ./not-executable: Permission denied"),
        ProcResult(-1, "", "", 0.0, error="cannot start no-such-agent-on-path: not found on PATH")]


def test_a_working_directory_that_is_gone_is_an_error_not_an_exception(tmp_path: Path) -> None:
    result = run_process(["true", "x"], str(tmp_path / "gone"), 10, os.environ)
    assert (result.exit_code, result.error, result.ok) == (
        -1, "cannot start true: No such file or directory", False)
    assert 0 <= result.duration < 10


def test_only_exit_0_in_time_without_error_is_ok(tmp_path: Path) -> None:
    signalled = run_process(["sh", "-c", "kill -TERM $$"], str(tmp_path), 10, os.environ)
    assert (signalled.exit_code, signalled.ok) == (-signal.SIGTERM, False)
    assert 0 <= signalled.duration < 10
    assert [ProcResult(0, "", "", 1.0).ok, ProcResult(1, "", "", 1.0).ok,
            ProcResult(0, "", "", 1.0, timed_out=True).ok, ProcResult(0, "", "", 1.0, error="x").ok] == [
        True, False, False, False]


def test_timeout_without_pidfd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where os.pidfd_open is missing (macOS), the polling fallback still times out."""
    monkeypatch.delattr(os, "pidfd_open")
    result = run_process(["sleep", "30"], str(tmp_path), 0.3, os.environ, grace=0.5)
    assert result.timed_out
    assert run_process(["true"], str(tmp_path), 5, os.environ).ok


def test_stdin_comes_from_a_file_and_is_empty_by_default(tmp_path: Path) -> None:
    data = "é".encode() * 500_000  # 1 MB: more than a pipe buffer holds
    assert run_process(["cat"], str(tmp_path), 10, os.environ, stdin=data).stdout == data.decode()
    # A regular file, so a child that never reads it cannot block us writing it.
    assert run_process(["sh", "-c", "test -f /dev/stdin"], str(tmp_path), 10, os.environ,
                       stdin=data).ok
    assert run_process(["true"], str(tmp_path), 10, os.environ, stdin=data).ok
    assert run_process(["cat"], str(tmp_path), 10, os.environ).stdout == ""


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.01)
    return False


def test_an_interrupt_while_recording_the_agent_means_it_never_runs(tmp_path: Path) -> None:
    """A signal during the ledger write of the agent's pgid: the agent must not be left
    running unrecorded. It is held at the gate until the write is done, so it never ran."""
    ran = tmp_path / "ran"
    seen: list[int] = []

    def record(pgid: int) -> None:
        seen.append(pgid)
        raise KeyboardInterrupt("signal 15")

    fds = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(KeyboardInterrupt):
        run_process(["sh", "-c", f"echo $$ > {ran}; exec sleep 300"], str(tmp_path), 30,
                    os.environ, grace=1, started=record)
    assert _gone(seen[0])
    assert not ran.exists()
    assert sorted(os.listdir("/proc/self/fd")) == fds  # the gate's pipe is closed too


def test_a_kill_9_while_recording_the_agent_means_it_never_runs(tmp_path: Path) -> None:
    """The worker dies (kill -9) between starting the agent and recording it: the gate
    sees its pipe close and exits without running the agent."""
    ran, gate = tmp_path / "ran", tmp_path / "gate"
    script = (f"import os, signal; from nightshift_tasks.process import run_process\n"
              f"def record(pgid):\n    open({str(gate)!r}, 'w').write(str(pgid))\n"
              f"    os.kill(os.getpid(), signal.SIGKILL)\n"
              f"run_process(['sh', '-c', 'echo $$ > {ran}; exec sleep 300'], {str(tmp_path)!r}, "
              f"30, os.environ, started=record)\n")
    worker = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(
        Path(__file__).resolve().parent.parent)}, timeout=60, check=False)
    assert worker.returncode == -signal.SIGKILL
    assert _gone(int(gate.read_text()))
    assert not ran.exists()


# A grandchild that catches TERM, notes when it came (CLOCK_MONOTONIC is system-wide), and
# carries on: only KILL stops it. It writes its pid once its handler is in place.
STUBBORN = """import os, signal, sys, time
def noted(*_):
    with open(sys.argv[1], "a") as fh:
        fh.write(f"{time.monotonic()}\\n")
signal.signal(signal.SIGTERM, noted)
with open(sys.argv[2] + ".tmp", "w") as fh:
    fh.write(str(os.getpid()))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
while True:
    signal.pause()
"""


def stubborn_agent(tmp_path: Path, then: str) -> tuple[list[str], Path, Path]:
    """argv of an agent that starts a stubborn grandchild, waits until it is ready, then
    runs `then` (a shell command); the files the grandchild writes its TERMs and pid to."""
    termed, pidfile = tmp_path / "termed", tmp_path / "grandchild"
    script = (f'"{sys.executable}" -c "$0" "{termed}" "{pidfile}" &\n'
              f'while [ ! -e "{pidfile}" ]; do sleep 0.01; done\n{then}')
    return ["sh", "-c", script, STUBBORN], termed, pidfile


def test_a_timed_out_agent_and_its_stubborn_grandchild_get_term_then_kill_as_a_group(
        tmp_path: Path) -> None:
    argv, termed, pidfile = stubborn_agent(tmp_path, "trap '' TERM\nsleep 300")
    result = run_process(argv, str(tmp_path), 1.0, os.environ, grace=0.3)
    assert result.timed_out
    assert len(termed.read_text().splitlines()) == 1  # the TERM reached the grandchild too
    assert _gone(int(pidfile.read_text()))  # and so did the KILL


def test_what_an_agent_leaves_behind_gets_term_then_kill_after_five_seconds(tmp_path: Path) -> None:
    """The real grace (GRACE_SECONDS), waited once: the agent exits at once and leaves a
    grandchild that ignores TERM."""
    assert GRACE_SECONDS == 5.0  # the README's "KILL after 5 s"
    argv, termed, pidfile = stubborn_agent(tmp_path, "exit 0")
    result = run_process(argv, str(tmp_path), 60, os.environ)
    ended = time.monotonic()
    assert (result.exit_code, result.timed_out) == (0, False)
    (term_at,) = [float(line) for line in termed.read_text().splitlines()]
    # term_at is when the grandchild's handler ran, a moment after the TERM was sent: allow
    # that moment, not a shorter grace (a 1 s grace fails by 4 s).
    assert ended - term_at >= GRACE_SECONDS - 0.5
    assert _gone(int(pidfile.read_text()))


CHILDREN_PROBE = """
import os, subprocess, sys
from nightshift_tasks import signals
if sys.argv[1] == "scan":  # a kernel without /proc/<pid>/task/<tid>/children
    listdir = os.listdir
    signals.os.listdir = lambda p: (_ for _ in ()).throw(OSError("no")) if "/task" in str(p) else listdir(p)
live = subprocess.Popen(["sleep", "30"])
dead = subprocess.Popen(["true"])
os.waitid(os.P_PID, dead.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
print(live.pid, dead.pid, sorted(signals.children(zombies=True)), signals.children())
live.kill()
"""


@pytest.mark.parametrize("how", ["kernel list", "scan"])
def test_children_are_exactly_ours_zombies_only_when_asked(how: str) -> None:
    root = str(Path(__file__).resolve().parent.parent)
    out = subprocess.run([sys.executable, "-c", CHILDREN_PROBE, how.split()[0]], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": root})
    live, dead, rest = out.stdout.split(" ", 2)
    assert rest.strip() == f"{sorted([int(live), int(dead)])} [{live}]"


def test_capture_returns_exit_code_and_both_outputs(tmp_path: Path) -> None:
    got = capture(["sh", "-c", "pwd; echo oops >&2; exit 3"], tmp_path, 30)
    assert got == (3, f"{tmp_path}\n", "oops\n")


def test_capture_does_not_wait_for_a_background_process_holding_its_output(tmp_path: Path) -> None:
    # A pipe would stay open until the sleep ends, past the timeout: TimeoutExpired.
    code, out, _ = capture(["sh", "-c", "sleep 30 & echo $!"], tmp_path, 5)
    os.kill(int(out), signal.SIGKILL)
    assert code == 0


def test_capture_kills_what_outlives_its_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(subprocess.TimeoutExpired):
        capture(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"], tmp_path, 0.5)
    assert not alive(int(pid_file.read_text()))


def test_a_group_of_zombies_only_is_not_alive_whatever_else_runs() -> None:
    gone = subprocess.Popen(["true"], start_new_session=True)
    os.waitid(os.P_PID, gone.pid, os.WEXITED | os.WNOWAIT)  # a zombie, its group's only member
    later = subprocess.Popen(["sleep", "30"], start_new_session=True)  # a group with a higher id
    try:
        assert (alive(gone.pid), alive(gone.pid, group=True), alive(later.pid, group=True)) == (
            False, False, True)
    finally:
        later.kill()
        later.wait()
        gone.wait()


def test_each_call_adds_one_log_section(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    ok = ProcResult(0, "out", "err", 1.234)
    assert append_log(log, "plan via claude", ok) == "plan via claude (exit 0, 1.23s)"
    append_log(log, "review 1 via claude", ProcResult(-1, "", "", 0.5, timed_out=True), output=False)
    append_log(log, "review 2 via claude", ProcResult(-1, "", "", 0.0, error="cannot start x: gone"),
               output=False)
    assert log.read_text() == (
        "===== plan via claude (exit 0, 1.23s) =====\n----- stdout -----\nout\n----- stderr -----\nerr\n"
        "===== review 1 via claude (timed out, 0.50s) =====\n"
        "===== review 2 via claude (exit -1, 0.00s) =====\nerror: cannot start x: gone\n")


def test_alive_asks_about_a_process_unless_told_a_group(monkeypatch: pytest.MonkeyPatch) -> None:
    child = subprocess.Popen(["sleep", "30"])  # in our group: its pid names no group
    try:
        assert (alive(child.pid), alive(child.pid, group=True)) == (True, False)
    finally:
        child.kill()
        child.wait()


def test_alive_when_it_cannot_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user's process (EPERM), or a system without /proc: assume it runs."""
    real_is_dir = Path.is_dir
    monkeypatch.setattr(Path, "is_dir", lambda p: False if str(p) == "/proc" else real_is_dir(p))
    assert alive(os.getpid())
    monkeypatch.setattr(os, "kill", lambda pid, sig: (_ for _ in ()).throw(PermissionError(1, "no")))
    assert alive(1)


def test_a_zombie_whose_name_has_a_parenthesis_is_not_alive(tmp_path: Path) -> None:
    (tmp_path / "x) R y").symlink_to("/bin/true")  # /proc/<pid>/stat: "<pid> (x) R y) Z ..."
    gone = subprocess.Popen([str(tmp_path / "x) R y")])
    os.waitid(os.P_PID, gone.pid, os.WEXITED | os.WNOWAIT)
    try:
        assert not alive(gone.pid)
    finally:
        gone.wait()


def test_a_group_led_by_a_process_outside_a_new_session_is_alive() -> None:
    member = subprocess.Popen(["sleep", "30"], process_group=0)  # its own group, our session
    try:
        assert alive(member.pid, group=True)
    finally:
        member.kill()
        member.wait()


def test_stopping_a_group_without_a_reaper_ends_once_only_zombies_are_left() -> None:
    leader = subprocess.Popen(["sleep", "30"], start_new_session=True)
    stop_pgid(leader.pid, grace=20)  # nobody reaps the leader: its zombie must not count
    assert (leader.wait(), alive(leader.pid, group=True)) == (-signal.SIGTERM, False)


SWEEP_PROBE = """
import os, subprocess, sys
from nightshift_tasks import signals
from nightshift_tasks.process import run_process
signals.become_subreaper()  # as in doit's processes: sweep() reaps what agents leave
theirs = subprocess.Popen(["sh", "-c", "exit 3"])
os.waitid(os.P_PID, theirs.pid, os.WEXITED | os.WNOWAIT)  # a zombie someone else will reap
run_process(["true"], ".", 10, os.environ)
print(theirs.wait())
"""


def test_an_agent_call_never_reaps_a_child_it_did_not_start(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parent.parent)
    out = subprocess.run([sys.executable, "-c", SWEEP_PROBE], cwd=tmp_path, check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": root})
    assert out.stdout == "3\n"
