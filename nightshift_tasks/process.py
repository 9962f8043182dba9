"""Run one agent CLI call: own session (process group), stdin closed or fed from a file,
output to files, timeout, and a TERM -> KILL teardown of the whole group so no grandchild
survives; and the section each call adds to the task's log. signals.py says how a run
stops.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from nightshift_tasks import runlock
from nightshift_tasks.signals import GRACE_SECONDS, children, stat_fields, sweep

# The agent starts behind this gate: it execs only once we write "run" to its stdin, which
# we do after its pid is in the ledger. If we die first, the pipe closes and it never runs.
# The agent's own stdin is the file named by the gate's first argument.
GATE = 'read -r go && [ "$go" = run ] || exit 125; feed=$1; shift; exec "$@" <"$feed"'


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
    for entry in [e.name for e in proc.iterdir() if e.name.isdigit()] if group else [pid]:
        fields = stat_fields(entry)
        if fields and fields[0] != "Z" and (not group or fields[2] == str(pid)):
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


def capture(argv: list[str], cwd: str | Path, timeout: float,
            env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run a short helper (git) to its end: (exit code, stdout, stderr); KILL it and raise
    subprocess.TimeoutExpired past `timeout`. Output goes to files, so a background process
    it leaves holding them never blocks us, and its exit is seen at once (see _wait), where
    subprocess.run sleeps up to milliseconds polling for it: per git call, every task."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=env)
        if not _wait(proc, timeout):
            proc.kill()
            proc.wait()
            raise subprocess.TimeoutExpired(argv, timeout)
        stdout, stderr = _read_back(out, err)
        return proc.returncode, stdout, stderr


def _read_back(*files: IO[bytes]) -> list[str]:
    """What a child wrote to each of its output files, as text."""
    texts = []
    for fh in files:
        fh.seek(0)
        texts.append(fh.read().decode("utf-8", "replace"))
    return texts


@contextlib.contextmanager
def _feed(data: bytes | None) -> Iterator[str]:
    """The path the child's stdin is read from: /dev/null, or a private file holding `data`,
    which, unlike a pipe, never blocks us on a child that does not read it."""
    if data is None:
        yield os.devnull
        return
    with tempfile.NamedTemporaryFile(prefix="nightshift-stdin-") as fh:  # 0600, gone on close
        fh.write(data)
        fh.flush()
        yield fh.name


def _unrunnable(program: str, cwd: str, env: Mapping[str, str]) -> str | None:
    """Why `program` cannot be executed, checked up front: behind the gate, an exec failure
    would only show as the shell's exit 127."""
    if os.sep in program:
        path = os.path.join(cwd, program)
        if not os.path.isfile(path):
            return "No such file or directory"
        return None if os.access(path, os.X_OK) else "Permission denied"
    return None if shutil.which(program, path=env.get("PATH", os.defpath)) else "not found on PATH"


def run_process(argv: list[str], cwd: str, timeout: float, env: Mapping[str, str],
                grace: float = GRACE_SECONDS,
                started: Callable[[int], None] | None = None,
                stdin: bytes | None = None) -> ProcResult:
    """Run argv without a shell and return what it printed.

    `started(pgid)` records the agent's group before the agent can run (see GATE), so a
    kill of this process at any moment leaves no agent that the ledger does not name.
    Output goes to temporary files, not pipes, so a grandchild holding a pipe open can
    never block us after the child exits.
    """
    start = time.monotonic()
    missing = _unrunnable(argv[0], cwd, env)
    if missing:
        return ProcResult(-1, "", "", 0.0, error=f"cannot start {argv[0]}: {missing}")
    runlock.beat()
    keep = frozenset(children(zombies=True))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, _feed(stdin) as feed:
        gate, release = os.pipe()
        try:
            try:
                proc = subprocess.Popen(["sh", "-c", GATE, "nightshift-gate", feed, *argv],
                                        cwd=cwd, stdin=gate, stdout=out, stderr=err, env=dict(env),
                                        start_new_session=True)
            except OSError as exc:
                return ProcResult(-1, "", "", time.monotonic() - start,
                                  error=f"cannot start {argv[0]}: {exc.strerror or exc}")
            finally:
                os.close(gate)
            try:
                if started:
                    started(proc.pid)
                with contextlib.suppress(BrokenPipeError):  # the gate was killed: see its exit
                    os.write(release, b"run\n")
                os.close(release)
                release = -1
                timed_out = not _wait(proc, timeout)
            except BaseException:
                # Interrupted (SIGINT/SIGTERM turned into KeyboardInterrupt): take the group down.
                stop_group(proc, grace)
                sweep(keep, grace)
                raise
        finally:
            if release >= 0:
                os.close(release)
        # Whatever the agent left behind in its group goes too, timeout or not.
        stop_group(proc, grace)
        sweep(keep, grace)
        runlock.beat()
        stdout, stderr = _read_back(out, err)
        return ProcResult(proc.returncode if not timed_out else -1, stdout, stderr,
                          time.monotonic() - start, timed_out=timed_out)


def append_log(log: Path, header: str, result: ProcResult, output: bool = True) -> str:
    """One section per agent call in the task's log file; the agent's output only when
    `output` (logging.level warn and error keep it for failed calls only). Returns the
    section's first line."""
    status = "timed out" if result.timed_out else f"exit {result.exit_code}"
    line = f"{header} ({status}, {result.duration:.2f}s)"
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"===== {line} =====\n")
        if result.error:
            fh.write(f"error: {result.error}\n")
        if output:
            fh.write("----- stdout -----\n" + result.stdout)
            fh.write("\n----- stderr -----\n" + result.stderr + "\n")
    return line
