"""Projects by URL with real git: a bare repository in a temp dir is the remote (a file://
URL), the real `doit` CLI runs, and the mirror under $NIGHTSHIFT_HOME/mirrors is made once,
fetched before each task, and pushed from."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import FAKE_AGENT, Env, summary_rows
from tests.test_publish import FAKE_GH, git

SECRET = "s3cr3t-t0ken"
# A url project's prompt names its URL, where no marker file can be: this agent always edits.
ALWAYS_EDITS = FAKE_AGENT.replace('[ -f "$proj/.agent-edit" ]', "true")


@dataclass
class Remote:
    env: Env
    origin: Path
    url: str

    def commit(self, name: str, text: str) -> str:
        """A new commit on the remote's main branch, as someone else would push it."""
        seed = self.env.tmp / "seed"
        if not seed.exists():
            git(self.env.tmp, "clone", "-q", str(self.origin), str(seed))
            git(seed, "checkout", "-q", "-B", "main")
        (seed / name).write_text(text)
        git(seed, "add", ".")
        git(seed, "commit", "-q", "-m", f"add {name}")
        git(seed, "push", "-q", "origin", "HEAD:main")
        return git(seed, "rev-parse", "HEAD")

    def mirrors(self) -> list[Path]:
        return sorted(p for p in (self.env.home / "mirrors").glob("*.git"))


@pytest.fixture
def remote(env: Env) -> Remote:
    env.agent.write_text(ALWAYS_EDITS)
    origin = env.tmp / "remotes" / "alice" / "alpha.git"
    origin.mkdir(parents=True)
    git(origin, "init", "-q", "--bare", "-b", "main")
    found = Remote(env, origin, f"file://{origin}")
    found.commit("README.md", "# alpha\n")
    env.write_config({"projects": [{"url": found.url}], "tasks": {"enabled": ["lint-fix"]},
                      "publish": {"mode": "push", "allowed_owners": ["alice"]}})
    return found


def status(env: Env) -> str:
    return subprocess.run([sys.executable, "-m", "nightshift_tasks", "status", f"config={env.config}"],
                          cwd=env.tmp, env=env.environ(), capture_output=True, text=True,
                          timeout=120, check=True).stdout


def test_the_mirror_is_made_once_fetched_each_task_and_the_branch_pushed(remote: Remote) -> None:
    env = remote.env
    listed = env.doit("list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["alpha", "lint-fix", "via", "command"]
    assert not (env.home / "mirrors").exists()  # planning makes no clone

    first = env.doit("run")
    assert first.returncode == 0, first.stdout + first.stderr
    assert summary_rows(first.stdout)["alpha"][:2] == ["command", "1"]
    [mirror] = remote.mirrors()
    assert mirror.name.startswith("alpha-")
    made = mirror.stat().st_ino
    main = git(remote.origin, "rev-parse", "main")
    assert git(remote.origin, "rev-parse", "nightshift/lint-fix~1") == main
    assert git(remote.origin, "show", "nightshift/lint-fix:edited-by-agent.txt") == "edit by lint-fix"
    # Plan, implement and review, each in the task's worktree (of the mirror).
    assert [(c.phase, c.cwd.parent) for c in env.calls()] == [
        (phase, env.home / "worktrees") for phase in ("plan", "implement", "review")]

    newer = remote.commit("NEWS.md", "news\n")
    second = env.doit("run", "task=lint-fix")  # past the daily guard: a second task today
    assert second.returncode == 0, second.stdout + second.stderr
    assert remote.mirrors() == [mirror] and mirror.stat().st_ino == made  # fetched, not cloned
    assert git(remote.origin, "rev-parse", "nightshift/lint-fix~1") == newer
    assert git(mirror, "rev-parse", "origin/HEAD") == newer
    # The ledger knows the project by its URL: the same on every machine.
    assert f"{remote.url} " in status(env)


def test_credentials_in_a_url_are_never_shown(remote: Remote) -> None:
    env = remote.env
    local = env.repo("beta")
    url = f"https://nightly:{SECRET}@127.0.0.1:1/alice/gamma.git"  # nothing listens on port 1
    env.write_config({"projects": [{"url": url}, {"path": str(local)}]})
    listed = env.doit("list")
    info = env.doit("info", "gamma")
    task_info = env.doit("info", "gamma:lint-fix")
    result = env.doit("run")
    assert result.returncode == 1, result.stdout + result.stderr  # the failed task, not a crash
    assert "Traceback" not in result.stderr
    assert summary_rows(result.stdout)["gamma"][:3] == ["command", "0", "1"]
    assert "mirror of https://127.0.0.1:1/alice/gamma.git: git fetch: " in result.stdout
    shown = "".join([status(env), task_info.stdout, listed.stdout, listed.stderr, info.stdout,
                     result.stdout, result.stderr])
    assert "https://127.0.0.1:1/alice/gamma.git" in info.stdout + status(env)
    assert SECRET not in shown
    logs = [p for p in (env.home / "logs").rglob("*") if p.is_file()]
    assert logs and not [p for p in logs if SECRET in p.read_text()]
    with sqlite3.connect(env.home / "state.db") as db:
        assert SECRET not in "\n".join(db.iterdump())
    # Not even the mirror holds it: the agent can read its config from the worktree.
    [mirror] = [p for p in remote.mirrors() if p.name.startswith("gamma-")]
    assert "url = \"https://127.0.0.1:1/alice/gamma.git\"" in (mirror / "config").read_text()
    assert not [p for p in env.home.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]


def test_a_failed_fetch_fails_that_task_and_the_next_run_tries_again(remote: Remote) -> None:
    env = remote.env
    moved = remote.origin.with_name("moved.git")
    remote.origin.rename(moved)
    failed = env.doit("run")
    assert failed.returncode == 1
    assert summary_rows(failed.stdout)["alpha"][:3] == ["command", "0", "1"]
    assert f"mirror of {remote.url}: git fetch: " in failed.stdout
    assert env.calls() == []  # no agent call, no token spent
    row = sqlite3.connect(env.home / "state.db").execute(
        "SELECT status, iterations, failure FROM attempts WHERE status != 'planned'").fetchall()
    assert row == [("failed", 0, "not-started")]
    moved.rename(remote.origin)
    again = env.doit("run")  # a failure before any token is not final for the day
    assert again.returncode == 0, again.stdout + again.stderr
    assert summary_rows(again.stdout)["alpha"][:2] == ["command", "1"]


def waiting_on(inode: int) -> bool:
    return any("->" in line and f":{inode} " in line
               for line in Path("/proc/locks").read_text().splitlines())


def test_the_mirror_lock_keeps_a_second_fetch_waiting(env: Env, tmp_path: Path) -> None:
    from nightshift_tasks import mirrors

    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    mirror = tmp_path / "cache" / "origin-0.git"
    mirror.parent.mkdir()
    lock = mirror.with_name(mirror.name + ".lock")
    lock.touch()
    with open(lock, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(target=mirrors.sync, args=(f"file://{origin}", mirror))
        worker.start()
        inode = os.stat(lock).st_ino
        deadline = time.monotonic() + 30
        while not waiting_on(inode):  # the kernel lists a blocked flock with "->"
            assert time.monotonic() < deadline, "the second sync never waited on the lock"
            time.sleep(0.01)
        assert not mirror.exists()  # it waits: nothing is made while the lock is held
    worker.join()
    assert (mirror / "HEAD").is_file()


def test_git_itself_refuses_other_transports(tmp_path: Path) -> None:
    """Defence in depth: a URL past the config check still cannot make git run a command."""
    from nightshift_tasks import mirrors

    marker = tmp_path / "ran"
    with pytest.raises(mirrors.MirrorError, match="git fetch: "):
        mirrors.sync(f"ext::touch {marker}", tmp_path / "cache" / "x.git")
    assert not marker.exists()
    config = (tmp_path / "cache" / "x.git" / "config").read_text()
    assert "[protocol]\n\tallow = never" in config


def test_credentials_reach_git_only_as_each_calls_own_setting(remote: Remote) -> None:
    from nightshift_tasks import mirrors

    url = f"https://nightly:{SECRET}@127.0.0.1:1/alice/gamma.git"
    mirror = remote.env.tmp / "cache" / "gamma.git"
    with pytest.raises(mirrors.MirrorError) as failed:
        mirrors.sync(url, mirror)
    assert SECRET not in str(failed.value)
    asked = subprocess.run(["git", "remote", "get-url", "origin"], cwd=mirror, capture_output=True,
                           text=True, check=True, env={**os.environ, **mirrors.git_env(url)})
    assert asked.stdout.strip() == url  # what nightshift's own fetch and push use
    stored = subprocess.run(["git", "remote", "get-url", "origin"], cwd=mirror, capture_output=True,
                            text=True, check=True)
    assert stored.stdout.strip() == "https://127.0.0.1:1/alice/gamma.git"  # what the agent sees


def test_the_mirror_config_is_renewed_before_each_fetch(remote: Remote) -> None:
    """What an agent adds to the mirror's config from its worktree steers no later fetch."""
    from nightshift_tasks import mirrors

    mirror = remote.env.tmp / "cache" / "alpha.git"
    mirrors.sync(remote.url, mirror)
    with (mirror / "config").open("a") as config:
        config.write(f'[url "file:///nowhere"]\n\tinsteadOf = {remote.url}\n')
    newer = remote.commit("NEWS.md", "news\n")
    mirrors.sync(remote.url, mirror)
    assert git(mirror, "rev-parse", "origin/main") == newer
    assert "nowhere" not in (mirror / "config").read_text()


BAD_URLS = [
    ("ext::sh -c touch% /tmp/x", "contains a space or a control character"),
    ("fd::3", "is not an https, ssh or file URL (nor user@host:path)"),
    ("http://example.com/me/repo.git", "is not an https, ssh or file URL (nor user@host:path)"),
    ("https://-oProxyCommand=x/me/repo", "has no usable host name ('-oproxycommand=x')"),
    ("git@-oProxyCommand=x:me/repo", "has no usable host name ('-oProxyCommand=x')"),
    ("file://host/srv/repo.git", "is not a file URL of an absolute path (file:///path)"),
    ("https://example.com", "names no repository path"),
    ("/srv/git/repo.git", "is a local path; use `path` for a checkout, or file:///path for a "
                          "repository to clone"),
]


@pytest.mark.parametrize(("url", "why"), BAD_URLS)
def test_a_url_nightshift_will_not_fetch_is_a_config_error(env: Env, url: str, why: str) -> None:
    env.write_config({"projects": [{"url": url}], "publish": {"mode": "push"}})
    result = env.doit("list")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"config error: {env.config}: line 4, column 3: projects[0].url: {url!r} {why}; allowed: "
        "https://host/owner/repo, ssh://[user@]host/path, user@host:path, file:///path"]
    assert not env.home.exists()


def config_lines(env: Env, data: dict[str, object]) -> list[str]:
    env.write_config(data)
    result = env.doit("list")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not env.home.exists()
    return [line.split(": ", 2)[2] for line in result.stderr.splitlines()]


def test_each_project_names_exactly_one_of_path_pattern_url(env: Env) -> None:
    assert config_lines(env, {"projects": [{"url": "https://example.com/a/b", "path": "/srv/b"}],
                              "publish": {"mode": "push"}}) == [
        "line 4, column 3: projects[0]: each project needs exactly one of 'path', 'pattern' or 'url'"]


def test_url_projects_need_push_or_pr(env: Env) -> None:
    assert config_lines(env, {"projects": [{"path": "/srv/a"}, {"url": "https://example.com/a/b"}]}) == [
        "publish.mode: url projects (projects[1]) need push or pr; under local "
        "their work would stay in nightshift's mirror cache"]


def test_fleet_mode_needs_a_url_for_every_project(env: Env) -> None:
    lines = config_lines(env, {
        "projects": [{"url": "https://example.com/a/b"}, {"path": "/srv/a"}, {"pattern": "/srv/*"}],
        "publish": {"mode": "pr"}, "state": {"database": "postgresql://db.example/nightshift"}})
    assert lines == [
        f"line {line}, column 3: projects[{i}]: fleet mode (state.database is a PostgreSQL URL) needs a "
        f"url for every project, and a {kind} exists on one machine only; give the repository's "
        "url instead" for i, kind, line in ((1, "path", 5), (2, "pattern", 6))]


def test_path_projects_still_work_without_fleet_mode(env: Env) -> None:
    env.projects(["alpha"], state={"lease": "5m"}, tasks={"enabled": ["lint-fix"]})
    assert env.doit("list").stdout.split() == ["alpha", "lint-fix", "via", "command"]


def test_pr_mode_opens_the_pr_on_the_urls_repository(remote: Remote) -> None:
    env = remote.env
    bin_dir = env.tmp / "bin"
    bin_dir.mkdir()
    shutil.copy(FAKE_GH, bin_dir / "gh")
    (bin_dir / "gh").chmod(0o755)
    env.write_config({"publish": {"mode": "pr", "allowed_owners": ["alice"]}})
    gh_state = env.tmp / "gh-state.json"
    result = env.doit("run", PATH=f"{bin_dir}:{os.environ['PATH']}", GH_STATE=str(gh_state))
    assert result.returncode == 0, result.stdout + result.stderr
    [pr] = json.loads(gh_state.read_text())
    # gh is told the repository (GH_REPO): the mirror has no work tree to find it in.
    assert (pr["repo"], pr["headRefName"], pr["baseRefName"]) == ("alpha", "nightshift/lint-fix", "main")
    assert "alpha:lint-fix: committed " in result.stdout and f"PR created: {pr['url']}" in result.stdout
    assert git(remote.origin, "rev-parse", "nightshift/lint-fix~1") == git(remote.origin, "rev-parse", "main")


def test_mirror_names_are_stable_unique_and_inside_the_cache(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from nightshift_tasks import urls
    from nightshift_tasks.projects import mirror_dir

    monkeypatch.setenv("NIGHTSHIFT_HOME", str(tmp_path))
    given = ["https://u:t@github.com/me/repo.git/", "https://github.com/me/repo.git",
             "https://github.com/other/repo.git", "git@github.com:me/repo.git",
             "file:///srv/../../etc/..", "ssh://git@host/../../../x"]
    dirs = [mirror_dir(urls.normalised(u)) for u in given]
    assert dirs[0] == dirs[1]  # the same repository, credentials or not
    assert len(set(dirs[1:])) == len(given) - 1
    assert all(d.parent == tmp_path / "mirrors" and d.name.endswith(".git") and ".." not in d.name
               for d in dirs)
    assert [d.name.rsplit("-", 1)[0] for d in dirs[:4]] == ["repo"] * 4
