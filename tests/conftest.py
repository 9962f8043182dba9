"""Shared fixtures: real git repositories in temp dirs, a fake agent CLI that records
every call, a runner for the real `doit` command line, and require_program for the programs
the tests need beyond Python."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DODO = ROOT / "dodo.py"

# Every program a test needs beyond Python, one "program debian-package" a line: .ci/run
# installs the packages of the missing ones, and the README's "Run the tests" shows INSTALL.
PACKAGES = dict(line.split() for line in (ROOT / "tests" / "programs.txt").read_text().splitlines())
INSTALL = "sudo apt-get install -y " + " ".join(PACKAGES.values())
# The reason of every skip for a program the platform cannot have starts with this.
UNAVAILABLE = "unavailable on this platform: "
STATUSES = ("completed", "failed", "abandoned", "skipped", "interrupted")
# Set by .ci/run: on Debian every program can be installed, so such a skip is a failure there.
REQUIRE_ALL = "NIGHTSHIFT_REQUIRE_ALL_PROGRAMS"


def require_program(name: str, only_on: str | None = None) -> str:
    """The path of `name`, else fail the test with one line saying how to install it (not a
    FileNotFoundError deep in a subprocess call). `only_on` is the sys.platform prefix of the
    platform that has it (e.g. "linux" for systemd): elsewhere the test is skipped."""
    if name not in PACKAGES:
        pytest.fail(f"require_program({name!r}): add `{name}` and its Debian package to "
                    "tests/programs.txt and the README's install line", pytrace=False)
    if only_on is not None and not sys.platform.startswith(only_on):
        reason = f"{UNAVAILABLE}`{name}` exists only on {only_on}, this is {sys.platform}"
        if os.environ.get(REQUIRE_ALL) == "1":
            pytest.fail(f"{reason}; {REQUIRE_ALL}=1 allows no such skip", pytrace=False)
        pytest.skip(reason)
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"needs `{name}`: install it with: {INSTALL}", pytrace=False)
    return path


def require_npm_cli(name: str) -> str:
    """The path of a real agent CLI pinned in tests/npm, else fail the test with one line."""
    path = ROOT / "tests" / "npm" / "node_modules" / ".bin" / name
    if not path.exists():
        pytest.fail(f"needs the pinned `{name}` CLI ({path} is missing): "
                    "run `npm install --prefix tests/npm`", pytrace=False)
    return str(path)


# A stand-in for an agent CLI. It speaks the loop's format (a JSON object per phase) and
# behaves according to marker files in the project's own checkout (it runs in a worktree;
# the prompt names the project and its path):
#   .agent-fail-<slug>   exit 3 with a message on stderr
#   .agent-reject        every review says "passed": false
#   .agent-hang          start a grandchild `sleep`, record its pid, and wait forever
#   .agent-edit          the implement phase appends a line to edited-by-agent.txt
# and to variables the test sets, for synchronising on events instead of sleeps:
#   AGENT_HOLD=N         the first N calls wait until N are in flight at once (a barrier:
#                        proof that N concurrent calls happen; at most 60 s)
#   AGENT_GATE=DIR       each call creates DIR/waiting.<project>.<task>.<phase>, then waits
#                        until DIR/open, DIR/open.<task> or DIR/open.<task>.<phase> exists
FAKE_AGENT = r"""#!/bin/sh
start=$(date +%s.%N)
case "$1" in
  *"# nightshift: plan phase"*) phase=plan ;;
  *"# nightshift: implement phase"*) phase=implement ;;
  *) phase=review ;;
esac
task=$(printf '%s\n' "$1" | sed -n 's/^Task: .* \[\(.*\)\]$/\1/p')
name=$(printf '%s\n' "$1" | sed -n 's/^Project: \([^ ]*\) (.*)$/\1/p')
proj=$(printf '%s\n' "$1" | sed -n 's/^Project: [^ ]* (\(.*\))$/\1/p')
proj=${proj#file://}  # a url project on disk: its checkout
if [ -f "$proj/.agent-fail-$task" ]; then echo "fake agent: $task is broken today" >&2; exit 3; fi
if [ "$phase" = implement ] && [ -f "$proj/.agent-edit" ]; then
  echo "edit by $task" >> "edited-by-agent.txt"
fi
if [ -f "$proj/.agent-hang" ]; then
  sleep 1000 &
  echo $! > "$RECORD.grandchild"
  echo $$ > "$RECORD.child"
  wait
fi
printf '%s' "$1" > "$RECORD.prompt.$task.$phase"
if [ -n "$AGENT_HOLD" ]; then
  hold="$RECORD.hold"; mkdir -p "$hold"; : > "$hold/$$"; i=0
  while [ ! -e "$hold/open" ] && [ $i -lt 6000 ]; do
    [ "$(ls "$hold" | grep -c '^[0-9]')" -ge "$AGENT_HOLD" ] && : > "$hold/open"
    sleep 0.01; i=$((i+1))
  done
fi
if [ -n "$AGENT_GATE" ]; then
  : > "$AGENT_GATE/waiting.$name.$task.$phase"; i=0
  until [ -e "$AGENT_GATE/open" ] || [ -e "$AGENT_GATE/open.$task" ] || \
        [ -e "$AGENT_GATE/open.$task.$phase" ] || [ $i -ge 6000 ]; do sleep 0.01; i=$((i+1)); done
fi
sleep "${AGENT_SLEEP:-0.2}"
end=$(date +%s.%N)
echo "$start $end $name $task $phase $(cat /proc/self/stat | cut -d' ' -f6) $(pwd)" >> "$RECORD"
case $phase in
  plan) echo 'Plan follows. {"description": "tidy one thing", "steps": ["edit"], "files": []}' ;;
  implement) echo '{"summary": "edited one file", "files_modified": ["x.py"]}' ;;
  review)
    if [ -f "$proj/.agent-reject" ]; then echo '{"passed": false, "feedback": "not good enough"}';
    else echo 'Reviewed. {"passed": true, "feedback": "fine", "issues": []}'; fi ;;
esac
"""

# "Billion laughs": ten levels of nine aliases each, 9**10 values if expanded.
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefghi", "bcdefghij", strict=True))


@dataclass(frozen=True)
class Call:
    start: float
    end: float
    project: str
    task: str
    phase: str
    session: int
    cwd: Path


@dataclass
class Env:
    """One isolated world: state home, repos dir, config file and the agent's record."""

    tmp: Path
    home: Path
    record: Path
    agent: Path
    config: Path

    def repo(self, name: str, files: dict[str, str] | None = None) -> Path:
        require_program("git")
        path = self.tmp / "repos" / name
        path.mkdir(parents=True)
        for rel, text in (files or {"README.md": f"# {name}\n"}).items():
            (path / rel).write_text(text)
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
        subprocess.run(["git", "init", "-q"], cwd=path, check=True)
        subprocess.run(["git", "add", "."], cwd=path, check=True)
        subprocess.run([*git, "commit", "-q", "-m", "init"], cwd=path, check=True)
        return path

    def write_config(self, data: dict[str, Any]) -> Path:
        """Merge `data` section by section over the current config (or the defaults)."""
        base: dict[str, Any] = yaml.safe_load(self.config.read_text()) if self.config.exists() else {
            "providers": {"preference": ["command"],
                          "command": {"enabled": True, "timeout": "1m",
                                      "argv": [str(self.agent), "{prompt}"]}},
            "tasks": {"enabled": ["lint-fix", "docs-backfill", "dead-code"]},
            # Large enough that the budget filter keeps every tier unless a test lowers it.
            "budget": {"weekly_tokens": 100_000_000},
        }
        for key, value in data.items():
            base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
        self.config.write_text(yaml.safe_dump(base))
        return self.config

    def projects(self, names: list[str], url: bool = False, **config: Any) -> list[Path]:
        """Repositories named by path, or by file:// URL (url projects, as a fleet needs)."""
        repos = [self.repo(n) for n in names]
        entries = [{"url": r.as_uri()} if url else {"path": str(r)} for r in repos]
        self.write_config({"projects": entries, **config})
        return repos

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NIGHTSHIFT_")}
        env.update(NIGHTSHIFT_HOME=str(self.home), RECORD=str(self.record),
                   XDG_CONFIG_HOME=str(self.tmp / "xdg"), **extra)
        return env

    def doit(self, *args: str, config: bool = True, cwd: Path | None = None,
             **env: str) -> subprocess.CompletedProcess[str]:
        """The real doit CLI on this checkout's dodo.py."""
        cmd = [sys.executable, "-m", "doit", "-f", str(DODO), *args]
        if config:
            cmd.append(f"config={self.config}")
        return subprocess.run(cmd, cwd=cwd or self.tmp, env=self.environ(**env),
                              capture_output=True, text=True, timeout=120)

    def calls(self) -> list[Call]:
        if not self.record.exists():
            return []
        out = []
        for line in self.record.read_text().splitlines():
            start, end, name, task, phase, session, cwd = line.split()
            out.append(Call(float(start), float(end), name, task, phase, int(session), Path(cwd)))
        return sorted(out, key=lambda c: c.start)


def git(cwd: Path, *args: str) -> str:
    """git with a test identity; its stdout."""
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
                          cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def commit(repo: Path, name: str, text: str) -> str:
    """A commit on the checked-out branch that writes `text` to `name`."""
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", f"{name}: {text}")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository on branch main with one commit."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    commit(path, "README", "one\n")
    return path


@pytest.fixture
def env(tmp_path: Path) -> Env:
    agent = tmp_path / "fake-agent"
    agent.write_text(FAKE_AGENT)
    agent.chmod(0o755)
    return Env(tmp=tmp_path, home=tmp_path / "home", record=tmp_path / "calls.log", agent=agent,
               config=tmp_path / "nightshift.yaml")


FULL_HEADERS = {"done": "completed", "fail": "failed", "aband": "abandoned", "skip": "skipped",
                "intr": "interrupted", "time": "agent time"}  # the table's narrow headers


def summary_table(stdout: str) -> dict[str, dict[str, str]]:
    """The summary table's cells by project and by (full) column name. A status column the
    run did not use is left out of the table: it reads as "0" here."""
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("project "))
    spans = [m.span() for m in re.finditer(r"-+", lines[header + 1])]
    spans[-1] = (spans[-1][0], None)  # the reason column runs to the end of the line
    names = [FULL_HEADERS.get(n, n) for n in re.split(r"\s{2,}", lines[header].strip())]
    rows = {}
    for line in lines[header + 2:]:
        if not line.strip():
            break
        values = dict(zip(names, (line[a:b].strip() for a, b in spans), strict=True))
        rows[values["project"]] = {**dict.fromkeys(STATUSES, "0"), **values}
    return rows


def summary_rows(stdout: str) -> dict[str, list[str]]:
    """The summary table's rows by project: [provider, completed, failed, abandoned, skipped,
    tokens, agent time, reason words...] (TOTAL has an empty provider, so it starts later)."""
    rows = {}
    for name, cells in summary_table(stdout).items():
        words = [cells[k] for k in ("provider", *STATUSES[:4], "tokens", "agent time")]
        rows[name] = [w for w in words if w] + cells["reason"].split()
    return rows


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant; an end at the same instant as a start comes first."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


@pytest.fixture
def overlap() -> Callable[[list[tuple[float, float]]], int]:
    return max_overlap


def on_terminal(env: Env, columns: int, *args: str, release: str | None = None,
                **extra: str) -> tuple[int, str]:
    """A run on a real pseudo-terminal `columns` wide: its exit code and what it showed.

    With `release` (a regex), every agent call waits at a gate until the terminal has shown
    text matching it: what is in flight then stays in flight until the test has seen it."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    gate = env.tmp / "terminal-gate"
    if release is not None:
        gate.mkdir()
        extra = {**extra, "AGENT_GATE": str(gate)}
    environ = {k: v for k, v in env.environ(**extra).items() if k not in ("COLUMNS", "NO_COLOR")}
    environ.update(extra, TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), "run", *args,
                             f"config={env.config}"], cwd=env.tmp, env=environ,
                            stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
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
        if release is not None and re.search(release, seen.decode(errors="replace")):
            (gate / "open").touch()
            release = None
    os.close(leader)
    return proc.wait(timeout=60), seen.decode(errors="replace").replace("\r\n", "\n")


# ---- PostgreSQL: the fleet's ledger ------------------------------------------------------
# The server the fleet tests use (`.ci/run` starts it when it is down); never skipped.
PG_SERVER = os.environ.get("NIGHTSHIFT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_database() -> Any:
    """A throwaway database for this test session (each xdist worker has its own), dropped
    at the end; a server that cannot be reached fails the test naming it."""
    import uuid

    import psycopg

    name = f"nst_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_SERVER} is unreachable ({exc}); start it (.ci/run does) "
                    "or point NIGHTSHIFT_TEST_PG at one", pytrace=False)
    admin.execute(f'CREATE DATABASE "{name}"')
    yield PG_SERVER.rsplit("/", 1)[0] + f"/{name}"
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """A fresh, empty schema of the session's database for one test, as a state.database URL."""
    import uuid

    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{pg_database}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state database's location on each backend: a file, then a server URL."""
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    return str(request.getfixturevalue("pg_url"))
