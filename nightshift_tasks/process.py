"""Run one agent CLI call: own session (process group), stdin closed or fed from a file,
output to files, timeout, and a TERM -> KILL teardown of the whole group so no grandchild
survives."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

GRACE_SECONDS = 5.0
PR_SET_PDEATHSIG = 1


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def interrupt_on_term() -> None:
    """Treat SIGTERM like Ctrl-C.

    doit saves its state and stops its workers on KeyboardInterrupt but not on SIGTERM, and
    run_process takes an agent's whole process group down on KeyboardInterrupt. Installed in
    doit's main process and again in each worker, whatever the start method.
    """
    signal.signal(signal.SIGTERM, _raise_interrupt)


@dataclass(frozen=True)
class ProcResult:
    exit_code: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    error: str | None = None  # the program could not be started

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.error is None


def alive(pid: int, group: bool = False) -> bool:
    """Whether a process (or any process of a group) still runs. Zombies do not count: an
    orphaned grandchild stays one until whoever adopted it reaps it."""
    try:
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir() if group else [proc / str(pid)]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and (not group or int(fields[2]) == pid):
                return True
    return False


def stop_pgid(pgid: int, grace: float = GRACE_SECONDS,
              reap: Callable[[], object] | None = None) -> None:
    """TERM a process group, then KILL whatever is still there after `grace` seconds.

    `reap` collects our own child's exit while we wait, or its zombie would keep the group
    looking alive.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if reap:
            reap()
        if not alive(pgid, group=True):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def stop_group(proc: subprocess.Popen[bytes], grace: float = GRACE_SECONDS) -> None:
    """Stop our child's whole group (it leads its own session, so its pid is the group id)."""
    stop_pgid(proc.pid, grace, proc.poll)
    proc.wait()


def die_with_parent() -> None:
    """In a doit worker on Linux: have the kernel send us SIGTERM when doit's main process
    dies, so a `kill -9` of it still stops the workers and, through them, the agents."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return  # serial mode: this is doit's main process
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent.pid:  # it was already gone
        raise KeyboardInterrupt("doit's main process is gone")


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Block until the child exits (True) or the timeout passes (False).

    Popen.wait(timeout=...) polls with sleeps of up to 50 ms, which would delay every agent
    call; a pidfd wakes us the moment the child exits. Falls back where there is none.
    """
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if ready:
        proc.wait()
    return bool(ready)


@contextlib.contextmanager
def _feed(data: bytes | None) -> Iterator[IO[bytes] | int]:
    """The child's stdin: nothing, or `data` in an unlinked file, which, unlike a pipe,
    never blocks us on a child that does not read it."""
    if data is None:
        yield subprocess.DEVNULL
        return
    with tempfile.TemporaryFile() as fh:
        fh.write(data)
        fh.seek(0)
        yield fh


def run_process(argv: list[str], cwd: str, timeout: float, env: Mapping[str, str],
                grace: float = GRACE_SECONDS,
                started: Callable[[int], None] | None = None,
                stdin: bytes | None = None) -> ProcResult:
    """Run argv without a shell and return what it printed.

    Output goes to temporary files, not pipes, so a grandchild holding a pipe open can
    never block us after the child exits.
    """
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, _feed(stdin) as feed:
        try:
            proc = subprocess.Popen(argv, cwd=cwd, stdin=feed, stdout=out,
                                    stderr=err, env=dict(env), start_new_session=True)
        except OSError as exc:
            return ProcResult(-1, "", "", time.monotonic() - start,
                              error=f"cannot start {argv[0]}: {exc.strerror or exc}")
        if started:
            started(proc.pid)
        try:
            timed_out = not _wait(proc, timeout)
        except BaseException:
            # Interrupted (SIGINT/SIGTERM turned into KeyboardInterrupt): take the group down.
            stop_group(proc, grace)
            raise
        # Whatever the agent left behind in its group goes too, timeout or not.
        stop_group(proc, grace)
        out.seek(0)
        err.seek(0)
        return ProcResult(proc.returncode if not timed_out else -1,
                          out.read().decode("utf-8", "replace"),
                          err.read().decode("utf-8", "replace"),
                          time.monotonic() - start, timed_out=timed_out)


def append_log(log: Path, header: str, result: ProcResult) -> None:
    """One section per agent call in the task's log file."""
    with log.open("a", encoding="utf-8") as fh:
        status = "timed out" if result.timed_out else f"exit {result.exit_code}"
        fh.write(f"===== {header} ({status}, {result.duration:.2f}s) =====\n")
        if result.error:
            fh.write(f"error: {result.error}\n")
        fh.write("----- stdout -----\n" + result.stdout)
        fh.write("\n----- stderr -----\n" + result.stderr + "\n")
