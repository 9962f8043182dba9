"""Many machines, one ledger: three `doit run` processes, each its own machine (home and
host id), on one PostgreSQL database over 30 projects; and the same properties on one
machine's SQLite where they apply."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nightshift_tasks import db, fleet, recovery, state
from tests.conftest import Env
from tests.fleet import PUBLISH, TASKS, Machine, attempts, fleet_config, kill_machine, run_all, seconds

PROJECTS = 30
K = 2
CAP = 3  # providers.command.max_concurrent, fleet-wide


def _projects(env: Env, n: int) -> list[str]:
    return [str(env.repo(f"p{i:02}")) for i in range(n)]


def _check_once_each(rows: list[Any], paths: list[str]) -> None:
    """Each (project, task) completed exactly once; a fleet knows a project by its URL."""
    done = Counter((r["project_path"], r["task"]) for r in rows if r["status"] == "completed")
    ident = (lambda p: Path(p).as_uri()) if done and next(iter(done))[0].startswith("file:") else str
    assert done == Counter({(ident(p), t): 1 for p in paths for t in TASKS})


def _check_one_host_at_a_time(rows: list[Any]) -> None:
    by_project: dict[str, list[Any]] = {}
    for r in rows:
        by_project.setdefault(r["project_path"], []).append(r)
    for path, worked in by_project.items():
        for a, b in itertools.combinations(worked, 2):
            if a["host"] != b["host"] and a["ended_at"] and b["ended_at"]:
                apart = a["ended_at"] <= b["started_at"] or b["ended_at"] <= a["started_at"]
                assert apart, f"{path} worked by {a['host']} and {b['host']} at once"


def test_three_machines_share_thirty_projects(env: Env, pg_url: str,
                                              overlap: Callable[[list[tuple[float, float]]], int]) -> None:
    paths = _projects(env, PROJECTS)
    fleet_config(env, [env.tmp / "repos" / os.path.basename(p) for p in paths], pg_url,
                 providers={"command": {"enabled": True, "timeout": "1m", "max_concurrent": CAP,
                                        "argv": [str(env.agent), "{prompt}"]}})
    machines = [Machine(env, h) for h in ("alpha", "beta", "gamma")]
    assert run_all(machines, K) == [0, 0, 0], [m.output() for m in machines]
    rows = attempts(pg_url)
    _check_once_each(rows, paths)
    assert all(r["status"] == "completed" for r in rows)  # nothing ran twice, nothing lost
    _check_one_host_at_a_time(rows)
    assert overlap([(seconds(r["started_at"]), seconds(r["ended_at"])) for r in rows]) <= K * 3
    assert overlap([(c.start, c.end) for c in env.calls()]) <= CAP  # the provider's cap, fleet-wide
    hosts = Counter(r["host"] for r in rows)
    assert set(hosts) <= {"alpha", "beta", "gamma"} and sum(hosts.values()) == PROJECTS * len(TASKS)
    # One view: any machine's status shows every machine's tasks, with their host.
    status = machines[0].command("status")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].split()[:6] == ["project", "task", "status", "host", "provider", "tokens"]
    fleet_rows = {line.split()[0]: line.split()[1:] for line in lines
                  if line.split()[:1] and line.split()[0] in hosts}
    assert {h: int(v[1]) for h, v in fleet_rows.items() if len(v) == 6} == dict(hosts)
    # ...and any machine's `report --fleet` every machine's tasks of the day, each with its host.
    shown = machines[1].command("report", "--fleet")
    assert (shown.returncode, shown.stderr) == (0, "")
    text = shown.stdout.splitlines()
    assert text[0] == f"# Nightshift fleet day {rows[0]['started_at'][:10]}"
    assert text[2] == f"- Host: {', '.join(sorted(hosts))}"
    done = [line for line in text if line.startswith("- file://")]
    assert len(done) == PROJECTS * len(TASKS)
    assert Counter(line.split(" — ")[1] for line in done) == {f"on {h}": n for h, n in hosts.items()}


def test_a_killed_machine_s_chains_finish_on_the_others(env: Env, pg_url: str) -> None:
    paths = _projects(env, 8)
    fleet_config(env, [env.tmp / "repos" / os.path.basename(p) for p in paths], pg_url)
    alpha, beta, gamma = (Machine(env, h) for h in ("alpha", "beta", "gamma"))
    doomed = alpha.start(K, AGENT_SLEEP="3")
    conn = db.connect(pg_url)
    deadline = time.monotonic() + 60
    while not conn.execute("SELECT 1 FROM attempts WHERE status = 'running' AND host = 'alpha'").fetchone():
        assert time.monotonic() < deadline and doomed.poll() is None, alpha.output()
        time.sleep(0.05)
    kill_machine(doomed)
    held = {r["project_path"] for r in conn.execute("SELECT project_path FROM claims WHERE host = 'alpha'")}
    expired = conn.execute("SELECT expires_at FROM runners WHERE host = 'alpha'").fetchone()[0]
    assert held
    assert run_all([beta, gamma], K) == [0, 0]
    while "alpha" in fleet.live_hosts(conn):
        assert time.monotonic() < deadline + 60
        time.sleep(0.1)
    assert run_all([beta], K) == [0]
    rows = attempts(pg_url)
    _check_once_each(rows, paths)
    _check_one_host_at_a_time(rows)
    # Until alpha's lease expired, no other machine touched the projects it held.
    assert all(seconds(r["started_at"]) >= seconds(expired) for r in rows
               if r["host"] != "alpha" and r["project_path"] in held)
    left = [r for r in rows if r["host"] == "alpha" and r["status"] != "completed"]
    assert left and all(r["status"] == "interrupted" for r in left)
    assert "on alpha; marked interrupted" in beta.output()


def test_another_host_s_agent_is_never_signalled(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        conn = db.connect(pg_url)
        monkeypatch.setenv("NIGHTSHIFT_HOST_ID", "dead-host")
        chain = state.open_chain(conn, "/p", "2026-01-01", ["a"], "command", "r-dead")
        attempt = state.start_attempt(conn, chain, "r-dead", "/p", "a", "command", agent.pid, "/log")
        state.set_agent_pgid(conn, attempt, agent.pid, "implement")
        fleet.begin_run(conn, "r-dead", lease=0.0)  # its lease is over at once
        monkeypatch.setenv("NIGHTSHIFT_HOST_ID", "survivor")
        notes = recovery.recover_orphans(conn)
        assert notes == ["/p:a was left running by a crashed run on dead-host; marked interrupted, "
                         "it runs again"]
        assert agent.poll() is None  # its pgid is a number on another machine: not ours
        assert conn.execute("SELECT status FROM attempts WHERE id = ?", (attempt,)).fetchone()[0] == \
            "interrupted"
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait()


def test_a_live_host_s_claim_and_task_are_left_alone(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = db.connect(pg_url)
    monkeypatch.setenv("NIGHTSHIFT_HOST_ID", "busy-host")
    fleet.begin_run(conn, "r-busy", lease=60.0)
    assert fleet.claim(conn, "/p", "2026-01-01", "r-busy", "a", forced=False) is None
    chain = state.open_chain(conn, "/p", "2026-01-01", ["a"], "command", "r-busy")
    state.start_attempt(conn, chain, "r-busy", "/p", "a", "command", 1, "/log")
    monkeypatch.setenv("NIGHTSHIFT_HOST_ID", "other")
    assert fleet.claim(conn, "/p", "2026-01-01", "r-other", "a", forced=False) == \
        f"/p is being worked by busy-host (pid {os.getpid()})"
    assert recovery.recover_orphans(conn) == []


def test_a_task_done_elsewhere_is_not_run_again(ledger: str, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = db.connect(ledger)
    monkeypatch.setenv("NIGHTSHIFT_HOST_ID", "first")
    chain = state.open_chain(conn, "/p", "2026-01-01", ["a"], "command", "r1")
    attempt = state.start_attempt(conn, chain, "r1", "/p", "a", "command", 1, "/log")
    state.finish_attempt(conn, attempt, state.Outcome("completed"))
    assert fleet.claim(conn, "/p", "2026-01-01", "r2", "a", forced=False) is None  # `doit run -a`
    monkeypatch.setenv("NIGHTSHIFT_HOST_ID", "second")
    assert fleet.claim(conn, "/p", "2026-01-01", "r3", "a", forced=False) == \
        "a was already done today in /p on first (completed)"
    assert fleet.claim(conn, "/p", "2026-01-01", "r3", "a", forced=True) is None


def test_a_database_down_at_start_stops_the_run(env: Env) -> None:
    env.projects(["solo"], url=True, publish=PUBLISH,
                 state={"database": "postgresql://postgres:hunter2@127.0.0.1:1/nope"})
    result = env.doit("run")
    assert result.returncode == 1
    assert result.stderr.startswith("nightshift: cannot reach the state database "
                                    "postgresql://postgres@127.0.0.1:1/nope (")
    assert "start the server or fix state.database" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert env.calls() == []


CUTTING_AGENT = """#!/bin/sh
# The first call cuts every other connection to the ledger's database, as a server restart
# would, while the task is between ledger writes; then it answers as the fake agent does.
if [ ! -f "$RECORD.cut" ]; then
  touch "$RECORD.cut"
  {python} -c 'import psycopg, sys; psycopg.connect(sys.argv[1], autocommit=True).execute(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid()")' '{database}'
fi
exec {agent} "$@"
"""


def test_a_connection_lost_mid_task_is_opened_again(env: Env, pg_url: str, pg_database: str) -> None:
    import sys

    agent = env.tmp / "cutting-agent"
    agent.write_text(CUTTING_AGENT.format(python=sys.executable, agent=env.agent, database=pg_database))
    agent.chmod(0o755)
    env.projects(["solo"], url=True, publish=PUBLISH, state={"database": pg_url},
                 providers={"command": {"enabled": True, "timeout": "1m",
                                        "argv": [str(agent), "{prompt}"]}})
    result = env.doit("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (env.tmp / "calls.log.cut").exists()
    assert "lost the connection to postgresql://postgres@127.0.0.1:5432/" in result.stderr
    rows = attempts(pg_url)
    assert [(r["task"], r["status"]) for r in rows] == [("lint-fix", "completed")]
    assert len(env.calls()) == 3  # plan, implement, review: the agent's work was not lost


USAGE_AGENT = """#!/bin/sh
{agent} "$@" || exit $?
echo 'NIGHTSHIFT_USAGE {{"input_tokens": 10000, "output_tokens": 5000}}'
"""
TASK_TOKENS = 3 * 15_000  # three calls per task
ESTIMATE = 50_000  # what lint-fix reserves with no history: the top of its cost tier


def test_one_budget_for_the_fleet(env: Env, pg_url: str) -> None:
    agent = env.tmp / "usage-agent"
    agent.write_text(USAGE_AGENT.format(agent=env.agent))
    agent.chmod(0o755)
    paths = _projects(env, PROJECTS)
    # daily mode: 5,000,000 / 7 x (75% - 5%) = 500,000 tokens for the day, fleet-wide.
    fleet_config(env, [env.tmp / "repos" / os.path.basename(p) for p in paths], pg_url,
                 schedule={"max_tasks": 1},
                 budget={"weekly_tokens": 5_000_000, "mode": "daily"},
                 providers={"command": {"enabled": True, "timeout": "1m",
                                        "argv": [str(agent), "{prompt}"]}})
    machines = [Machine(env, h) for h in ("alpha", "beta", "gamma")]
    assert run_all(machines, K) == [0, 0, 0], [m.output() for m in machines]
    conn = db.connect(pg_url)
    spent = conn.execute("SELECT SUM(tokens) FROM calls").fetchone()[0]
    allowance = 5_000_000 // 7 * 70 // 100
    # Stopped only when the next reservation no longer fit; never past one task per machine.
    assert allowance - ESTIMATE < spent <= allowance + len(machines) * TASK_TOKENS
    done = conn.execute("SELECT COUNT(*) FROM attempts WHERE status = 'completed'").fetchone()[0]
    assert done == spent // TASK_TOKENS < PROJECTS  # the rest waited for tomorrow's budget
    assert conn.execute("SELECT COUNT(*) FROM reservations WHERE open = 1").fetchone()[0] == 0
    shown = machines[1].command("budget")
    assert shown.returncode == 0, shown.stderr
    by_host = {line.split()[0]: line.split()[1:] for line in shown.stdout.splitlines()
               if line.split()[:2] in (["alpha", "command"], ["beta", "command"], ["gamma", "command"])}
    assert sum(int(v[1].replace(",", "")) for v in by_host.values()) == spent


def test_one_machine_on_sqlite_keeps_the_same_properties(
        env: Env, overlap: Callable[[list[tuple[float, float]]], int]) -> None:
    paths = _projects(env, PROJECTS)
    fleet_config(env, [env.tmp / "repos" / os.path.basename(p) for p in paths], None,
                 providers={"command": {"enabled": True, "timeout": "1m", "max_concurrent": CAP,
                                        "argv": [str(env.agent), "{prompt}"]}})
    solo = Machine(env, "solo")
    assert run_all([solo], 3 * K) == [0], solo.output()
    rows = attempts(str(solo.home / "state.db"))
    _check_once_each(rows, paths)
    assert all(r["status"] == "completed" and r["host"] == "solo" for r in rows)
    assert overlap([(c.start, c.end) for c in env.calls()]) <= CAP
    assert run_all([solo], 3 * K) == [0]  # the next run of the day finds everything done
    assert len(attempts(str(solo.home / "state.db"))) == len(rows)


def test_a_postgresql_url_without_psycopg_says_how_to_install_it() -> None:
    import sys

    probe = ("import sys; sys.modules['psycopg'] = None\n"
             "from nightshift_tasks import db, storage\n"
             "try:\n    db.connect('postgresql://postgres@127.0.0.1:5432/x')\n"
             "except storage.Unreachable as exc:\n    print(exc.exit_code, exc)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout == ("1 state.database is a PostgreSQL URL, but psycopg is not installed; "
                          "install it with `pip install 'nightshift-tasks[postgres]'`\n")


def test_state_database_must_be_a_postgresql_url(env: Env) -> None:
    env.projects(["solo"], state={"database": "mysql://db/ledger"})
    result = env.doit("run")
    assert result.returncode == 2
    assert result.stderr == (
        f"config error: {env.config}: line 15, column 3: state.database: 'mysql://db/ledger' is "
        "not a PostgreSQL URL; use postgresql://user@host:port/dbname, or leave state.database "
        "out for the SQLite file\n")
    assert not (env.home / "state.db").exists()


LOCKED_GH = """#!/bin/sh
# The fake gh keeps its PRs in one JSON file: machines take turns with it, as GitHub would.
exec flock "$GH_STATE.lock" {python} {fake_gh} "$@"
"""
PR_CAP = 5


def _published_repo(env: Env, name: str) -> Path:
    """A checkout whose origin is a bare repository of the GitHub user alice."""
    origin = env.tmp / "remotes" / "alice" / f"{name}.git"
    origin.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    seed = env.repo(f"seed-{name}")
    subprocess.run(["git", "push", "-q", str(origin), "HEAD:main"], cwd=seed, check=True)
    repo = env.tmp / "repos" / name
    subprocess.run(["git", "clone", "-q", str(origin), str(repo)], check=True)
    (repo / ".agent-edit").write_text("")
    return repo


def test_pull_request_caps_hold_fleet_wide(env: Env, pg_url: str) -> None:
    import sys

    bin_dir = env.tmp / "bin"
    bin_dir.mkdir()
    fake_gh = Path(__file__).with_name("fake_gh.py")
    (bin_dir / "gh").write_text(LOCKED_GH.format(python=sys.executable, fake_gh=fake_gh))
    (bin_dir / "gh").chmod(0o755)
    repos = [_published_repo(env, f"p{i:02}") for i in range(8)]
    fleet_config(env, repos, pg_url, schedule={"max_tasks": 1},
                 publish={"mode": "pr", "max_prs_per_hour": PR_CAP})
    gh_state = env.tmp / "gh-state.json"
    machines = [Machine(env, h) for h in ("alpha", "beta", "gamma")]
    assert run_all(machines, K, PATH=f"{bin_dir}:{os.environ['PATH']}", GH_STATE=str(gh_state),
                   GH_USER="alice") == [0, 0, 0], [m.output() for m in machines]
    prs = json.loads(gh_state.read_text())
    assert len(prs) == PR_CAP  # the hourly cap, for the whole fleet
    assert len({(p["repo"], p["headRefName"]) for p in prs}) == PR_CAP  # one per (project, task)
    rows = attempts(pg_url)
    # A skip before any token is tried again by a later run, another machine's included.
    latest = {r["project_path"]: r["status"] for r in rows}
    assert Counter(latest.values()) == Counter(completed=PR_CAP, skipped=8 - PR_CAP)
    assert sum(r["status"] == "completed" for r in rows) == PR_CAP
    assert all("publish.max_prs_per_hour (5) reached" in (r["error"] or "")
               for r in rows if r["status"] == "skipped")


def test_a_run_of_this_host_holds_its_claims_while_its_doit_lives(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = db.connect(pg_url)
    monkeypatch.setenv("NIGHTSHIFT_HOST_ID", "shared-name")
    fleet.begin_run(conn, "r-first", lease=0.0)  # lease over at once: this host goes by the pid
    assert fleet.claim(conn, "/p", "2026-01-01", "r-first", "a", forced=False) is None
    assert fleet.claim(conn, "/p", "2026-01-01", "r-second", "a", forced=False) == \
        f"/p is being worked by shared-name (pid {os.getpid()})"
    dead = subprocess.Popen(["true"])  # its pid, once it exited, is a crashed doit's
    dead.wait()
    conn.execute("UPDATE runners SET pid = ? WHERE run_id = 'r-first'", (dead.pid,))
    assert fleet.claim(conn, "/p", "2026-01-01", "r-second", "a", forced=False) is None
