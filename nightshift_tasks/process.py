"""Run one agent CLI call: own session (process group), stdin closed or fed from a file,
output to files, timeout, and a TERM -> KILL teardown of the whole group so no grandchild
survives.

Also how any process of a run reacts to SIGTERM/SIGINT: once, with a watchdog that bounds
the orderly stop.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
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
from types import FrameType

from nightshift_tasks import runlock

GRACE_SECONDS = 5.0
# A signalled run is gone within this: its workers' agents get GRACE_SECONDS, the rest is
# doit's own bookkeeping. The watchdog enforces it.
SHUTDOWN_SECONDS = GRACE_SECONDS + 3.0
EXIT_INTERRUPTED = 130
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# The agent starts behind this gate: it execs only once we write "run" to its stdin, which
# we do after its pid is in the ledger. If we die first, the pipe closes and it never runs.
# The agent's own stdin is the file named by the gate's first argument.
GATE = 'read -r go && [ "$go" = run ] || exit 125; feed=$1; shift; exec "$@" <"$feed"'

# Main process: "loading" (nothing started yet: a signal just exits), "running" (it
# interrupts the run), "finishing" (the summary is being written: it only makes the exit
# status 130). Workers: "worker".
_phase = "worker"
_signalled = 0
_signalled_at = 0.0
_subreaper_pid = 0
TICK_SECONDS = 0.25


def set_phase(phase: str) -> None:
    global _phase
    _phase = phase
    if _signalled:
        _arm()  # no more quick ticks once the summary is being written


def signalled() -> int:
    """The first SIGTERM/SIGINT this process received, or 0."""
    return _signalled


def reset_signals() -> None:
    """A freshly forked worker starts unsignalled (it inherits its parent's state)."""
    global _signalled, _phase
    _signalled, _phase = 0, "worker"


def _interrupt() -> None:
    if _phase == "loading":
        raise SystemExit(EXIT_INTERRUPTED)
    if _phase in ("running", "worker"):
        raise KeyboardInterrupt(f"signal {_signalled}")


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """The first signal starts the stop and arms the watchdog; later ones are ignored, so a
    second Ctrl-C or a TERM from doit cannot cut an agent's TERM -> KILL teardown short."""
    global _signalled, _signalled_at
    if _signalled:
        return
    _signalled, _signalled_at = signum, time.monotonic()
    signal.signal(signal.SIGALRM, _tick)
    _arm()
    _interrupt()


def _arm() -> None:
    """One-shot timers only: a process that ends before its deadline must not be left with
    a periodic SIGALRM that would kill it during interpreter shutdown."""
    left = SHUTDOWN_SECONDS - (time.monotonic() - _signalled_at)
    if _phase in ("loading", "running"):
        left = min(left, TICK_SECONDS)
    signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))


def _tick(signum: int, frame: FrameType | None) -> None:
    """The watchdog (SIGALRM, no thread: starting one inside a handler can deadlock).

    In the main process it raises the interrupt again while the run has not reached its
    summary: Python drops an exception raised where it cannot propagate (an at-fork hook,
    a __del__), which is where a signal during doit's start-up often lands.
    """
    if time.monotonic() - _signalled_at >= SHUTDOWN_SECONDS:
        hard_stop()
    _arm()
    if _phase in ("loading", "running"):
        _interrupt()


def interrupt_on_term() -> None:
    """Treat SIGTERM like Ctrl-C, and either of them only once.

    doit saves its state and stops its workers on KeyboardInterrupt but not on SIGTERM, and
    run_process takes an agent's whole process group down on KeyboardInterrupt. Installed in
    doit's main process and in each worker, whatever the start method.
    """
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)


def hard_stop() -> None:
    """The watchdog, SHUTDOWN_SECONDS after the first signal: KILL everything we started and
    exit. No stdio flush: the main thread may hold its lock, stuck on a full pipe."""
    signal.setitimer(signal.ITIMER_REAL, 0)
    os.write(2, f"nightshift: the orderly stop took over {SHUTDOWN_SECONDS:g}s; killing what "
                "is left\n".encode())
    stop_children(0.0)
    os._exit(EXIT_INTERRUPTED)


def _prctl(option: int, value: int) -> bool:
    with contextlib.suppress(OSError, AttributeError):
        return int(ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)) == 0
    return False


def become_subreaper() -> None:
    """Linux: orphans among our descendants (a grandchild that called setsid() and whose
    parent exited) are re-parented to us instead of init, so stop_children can find them.
    Not inherited across fork: each process that wants it calls this."""
    global _subreaper_pid
    if _prctl(PR_SET_CHILD_SUBREAPER, 1):
        _subreaper_pid = os.getpid()


def children(zombies: bool = False) -> list[int]:
    """Our child processes, from /proc (empty where there is none)."""
    me, found = os.getpid(), []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == me and (zombies or fields[0] != "Z"):
                    found.append(int(entry.name))
    return found


def _signal_child(pid: int, sig: int) -> None:
    """A child leading its own group (an agent, a setsid() escapee) is signalled with its
    whole group; a child in our group (a doit worker) alone."""
    with contextlib.suppress(OSError):
        if os.getpgid(pid) == pid != os.getpgid(0):
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def stop_children(grace: float = GRACE_SECONDS, keep: frozenset[int] = frozenset()) -> None:
    """TERM each child of ours not in `keep`, KILL whatever is left after `grace` seconds,
    including children adopted meanwhile (as a subreaper). Bounded: gives up a second after
    the KILL on anything the kernel has not removed (uninterruptible sleep)."""
    deadline = time.monotonic() + grace
    termed: set[int] = set()
    while time.monotonic() < deadline + 1.0:
        live = [pid for pid in children() if pid not in keep]
        if not live:
            return
        for pid in live:
            if time.monotonic() >= deadline:
                _signal_child(pid, signal.SIGKILL)
            elif pid not in termed:
                _signal_child(pid, signal.SIGTERM)
                termed.add(pid)
        time.sleep(0.02)


def _sweep(keep: frozenset[int], grace: float) -> None:
    """After an agent's group is gone: stop and reap the descendants it left that escaped
    the group (setsid) and were re-parented to us."""
    if _subreaper_pid != os.getpid():
        return
    stop_children(grace, keep)
    for pid in set(children(zombies=True)) - keep:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


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
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
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
                _sweep(keep, grace)
                raise
        finally:
            if release >= 0:
                os.close(release)
        # Whatever the agent left behind in its group goes too, timeout or not.
        stop_group(proc, grace)
        _sweep(keep, grace)
        runlock.beat()
        out.seek(0)
        err.seek(0)
        return ProcResult(proc.returncode if not timed_out else -1,
                          out.read().decode("utf-8", "replace"),
                          err.read().decode("utf-8", "replace"),
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
