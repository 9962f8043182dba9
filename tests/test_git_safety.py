"""A hostile agent against nightshift's own git calls and report copying: whatever it leaves
in its worktree (a rewritten `.git` file, hooks, repository config, symlinks) must not make
nightshift run its commands or read files outside the worktree, and a kill during
`git worktree add` must not leave a registration behind for good."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from nightshift_tasks import git as ngit
from nightshift_tasks.loop import LoopResult
from nightshift_tasks.publish import read_inside, save_report
from nightshift_tasks.spec import ProjectSpec, PublishSettings, RunSpec, TaskSpec
from tests.conftest import Env, git

# Wraps the fake agent: in the implement phase it first does what $HOSTILE names.
HOSTILE_AGENT = r"""#!/bin/sh
case "$1" in *"# nightshift: implement phase"*)
  proj=$(printf '%s\n' "$1" | sed -n 's/^Project: [^ ]* (\(.*\))$/\1/p')
  case "$HOSTILE" in
    gitfile) printf 'gitdir: %s\n' "$ATTACKER/.git" > .git ;;
    hooks) mkdir -p .husky
      for hook in post-commit post-checkout reference-transaction; do
        printf '#!/bin/sh\ntouch "%s.agent-%s"\n' "$MARKER" "$hook" > ".husky/$hook"
        chmod +x ".husky/$hook"
      done ;;
    filter) git config --file "$proj/.git/config" filter.evil.clean "touch $MARKER"
      echo '* filter=evil' > .gitattributes ;;
    submodule) printf 'gitdir: %s\n' "$ATTACKER/.git" > sub/.git
      echo hi > sub/f && touch -d 2001-01-01 sub/f ;;
    report) mkdir -p .nightshift/reports && ln -s "$SECRET" .nightshift/reports/dead-code.md ;;
  esac ;;
esac
exec "$FAKE_AGENT" "$@"
"""


@pytest.fixture
def hostile(env: Env) -> Env:
    """The env fixture with the hostile agent as the provider's command."""
    script = env.tmp / "hostile-agent"
    script.write_text(HOSTILE_AGENT)
    script.chmod(0o755)
    env.write_config({"providers": {"preference": ["command"],
                                    "command": {"enabled": True, "timeout": "1m",
                                                "argv": [str(script), "{prompt}"]}}})
    return env


def run(env: Env, mode: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return env.doit("run", *args, HOSTILE=mode, FAKE_AGENT=str(env.agent),
                    MARKER=str(env.tmp / "marker"), **extra)


def markers(env: Env) -> list[str]:
    return sorted(p.name for p in env.tmp.glob("marker*"))


def only_main_worktree(repo: Path) -> bool:
    return git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_a_rewritten_git_file_runs_nothing_and_publishes_nothing(hostile: Env) -> None:
    (repo,) = hostile.projects(["alpha"], tasks={"enabled": ["lint-fix"]})
    (repo / ".agent-edit").write_text("")
    attacker = hostile.repo("attacker")
    evil = hostile.tmp / "fsmonitor"
    evil.write_text(f"#!/bin/sh\ntouch {hostile.tmp / 'marker'}\n")
    evil.chmod(0o755)
    git(attacker, "config", "core.fsmonitor", str(evil))
    result = run(hostile, "gitfile", ATTACKER=str(attacker))
    assert result.returncode == 1, result.stdout + result.stderr
    assert markers(hostile) == []
    worktrees = re.escape(str(hostile.home / "worktrees"))
    assert re.search(rf"^  alpha:lint-fix: failed: publish refused: the agent changed "
                     rf"{worktrees}/alpha--lint-fix--\d+/\.git$", result.stdout, re.M), result.stdout
    assert "committed" not in result.stdout
    assert git(repo, "branch", "--list", "nightshift/*") == ""
    assert git(attacker, "for-each-ref", "--format=%(refname)") == "refs/heads/master"
    assert only_main_worktree(repo)  # git refused to remove it: its `.git` no longer points back


def test_no_hook_runs_in_nightshifts_own_git_calls(hostile: Env) -> None:
    """core.hooksPath=.husky makes hooks files of the checkout. Neither the user's committed
    post-checkout nor the ones the agent wrote run: nightshift runs no hooks at all."""
    repo = hostile.repo("alpha")
    (repo / ".husky").mkdir()
    (repo / ".husky" / "post-checkout").write_text(
        f"#!/bin/sh\ntouch {hostile.tmp / 'marker.user-post-checkout'}\n")
    (repo / ".husky" / "post-checkout").chmod(0o755)
    git(repo, "add", ".husky")
    git(repo, "commit", "-q", "-m", "husky")
    git(repo, "config", "core.hooksPath", ".husky")
    (repo / ".agent-edit").write_text("")
    hostile.write_config({"projects": [{"path": str(repo)}], "tasks": {"enabled": ["lint-fix"]}})
    result = run(hostile, "hooks")
    assert result.returncode == 0, result.stdout + result.stderr
    assert markers(hostile) == []
    assert "alpha:lint-fix: committed " in result.stdout
    assert git(repo, "show", "nightshift/lint-fix:.husky/post-commit").startswith("#!/bin/sh")


def test_repository_config_changed_by_the_agent_refuses_publishing(hostile: Env) -> None:
    """The agent defines a clean filter in the repository's config (reachable outside an
    unsandboxed worktree) and selects it in .gitattributes: `git add` would run it."""
    (repo,) = hostile.projects(["alpha"], tasks={"enabled": ["lint-fix"]})
    (repo / ".agent-edit").write_text("")
    assert run(hostile, "none").returncode == 0  # an earlier night published the branch
    branch = git(repo, "rev-parse", "nightshift/lint-fix")
    result = run(hostile, "filter", "-a")
    assert result.returncode == 1, result.stdout + result.stderr
    assert markers(hostile) == []
    assert (f"alpha:lint-fix: failed: publish refused: the agent changed {repo}/.git/config"
            in result.stdout), result.stdout
    assert git(repo, "rev-parse", "nightshift/lint-fix") == branch


def test_a_submodule_turned_into_the_agents_repository_runs_nothing(hostile: Env) -> None:
    """The fresh worktree has the submodule's directory empty; the agent makes it a repository
    whose config and attributes run a clean filter when git looks inside (status, commit)."""
    (repo,) = hostile.projects(["alpha"], tasks={"enabled": ["lint-fix"]})
    library = hostile.repo("library")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "-q", "add", str(library), "sub")
    git(repo, "commit", "-q", "-m", "submodule")
    (repo / ".agent-edit").write_text("")
    attacker = hostile.repo("attacker", {"f": "hi\n"})
    git(attacker, "config", "filter.evil.clean", f"touch {hostile.tmp / 'marker'}; cat")
    (attacker / ".git" / "info" / "attributes").write_text("* filter=evil\n")
    result = run(hostile, "submodule", ATTACKER=str(attacker))
    assert result.returncode == 0, result.stdout + result.stderr
    assert markers(hostile) == []
    assert "alpha:lint-fix: committed " in result.stdout
    assert git(repo, "show", "nightshift/lint-fix:edited-by-agent.txt") == "edit by lint-fix"


def test_a_symlinked_report_is_not_followed(hostile: Env) -> None:
    hostile.projects(["alpha"], tasks={"enabled": ["dead-code"]})
    secret = hostile.tmp / "secret.txt"
    secret.write_text("TOP SECRET\n")
    result = run(hostile, "report", SECRET=str(secret))
    assert result.returncode == 0, result.stdout + result.stderr
    (report,) = (hostile.home / "reports" / "alpha").glob("dead-code-*.md")
    assert report.read_text() == (
        "# Dead Code Detector: alpha\n\nedited one file\n\n(nightshift ignored the agent's report "
        "file: .nightshift/reports/dead-code.md is a symlink)\n")


def test_a_worktree_add_killed_midway_is_forgotten_next_run(env: Env) -> None:
    """Killed while checking out, `git worktree add` leaves its registration locked
    "initializing", which `git worktree prune` never removes."""
    repo = env.repo("alpha", {"README.md": "# alpha\n", ".gitattributes": "slow.txt filter=slow\n",
                              "slow.txt": "slow\n"})
    env.write_config({"projects": [{"path": str(repo)}], "tasks": {"enabled": ["lint-fix"]}})
    ready = env.tmp / "checkout-started"
    git(repo, "config", "filter.slow.smudge", f"touch {ready}; exec sleep 600")
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = env.home / "worktrees" / f"alpha--lint-fix--{dead.pid}"
    adding = subprocess.Popen(["git", "worktree", "add", "--detach", str(leftover), "HEAD"], cwd=repo,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.monotonic() + 30
    while not ready.exists() and adding.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists()
    os.killpg(adding.pid, signal.SIGKILL)
    adding.wait()
    git(repo, "config", "--unset", "filter.slow.smudge")
    git(repo, "worktree", "prune")
    assert f"worktree {leftover}\nHEAD " in git(repo, "worktree", "list", "--porcelain")
    assert (repo / ".git" / "worktrees" / leftover.name / "locked").exists()
    result = env.doit("run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"removed worktree left by a crashed run: {leftover}" in result.stdout
    assert not leftover.exists()
    assert not (repo / ".git" / "worktrees" / leftover.name).exists()
    assert only_main_worktree(repo)


def test_a_worktree_config_the_agent_added_counts_as_tampering(tmp_path: Path, env: Env) -> None:
    repo = env.repo("alpha")
    box = ngit.add_worktree(str(repo), tmp_path / "wt", "HEAD")
    assert box.git_dir == repo / ".git" / "worktrees" / "wt" and box.common_dir == repo / ".git"
    assert box.tampered() is None
    (box.git_dir / "config.worktree").write_text("[core]\n\tfsmonitor = /bin/evil\n")
    assert box.tampered() == box.git_dir / "config.worktree"


@pytest.mark.parametrize("layout", ["plain", "reached through a symlink", "config with an include"])
def test_a_new_worktrees_git_dirs_are_what_git_says(tmp_path: Path, env: Env, layout: str) -> None:
    repo = env.repo("alpha")
    if layout == "config with an include":  # not plain: git is asked
        git(repo, "config", "include.path", str(tmp_path / "none"))
    if layout == "reached through a symlink":
        (tmp_path / "link").symlink_to(repo.parent)
        repo = tmp_path / "link" / repo.name
    box = ngit.add_worktree(str(repo), tmp_path / "wt", "HEAD")
    said = git(box.path, "rev-parse", "--path-format=absolute", "--git-dir", "--git-common-dir")
    assert [str(box.git_dir), str(box.common_dir)] == said.splitlines()
    assert box.common_dir == repo.resolve() / ".git"


@pytest.mark.parametrize("agent_did", ["nothing", "symlinked the admin dir"])
def test_removing_a_worktree_forgets_it_and_touches_nothing_else(tmp_path: Path, env: Env,
                                                                 agent_did: str) -> None:
    repo = env.repo("alpha")
    box = ngit.add_worktree(str(repo), tmp_path / "wt", "HEAD")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("x")
    if agent_did == "symlinked the admin dir":
        moved = tmp_path / "moved"
        box.git_dir.rename(moved)
        box.git_dir.symlink_to(elsewhere)
    ngit.remove_worktree(str(repo), box.path, box)
    assert not box.path.exists() and not os.path.lexists(box.git_dir)
    assert only_main_worktree(repo) and (elsewhere / "keep").read_text() == "x"


def tree(tmp_path: Path) -> Path:
    root = tmp_path / "wt"
    (root / "a").mkdir(parents=True)
    return root


def test_reading_the_report_bounds_its_size(tmp_path: Path) -> None:
    root = tree(tmp_path)
    (root / "a" / "r.md").write_bytes(b"x" * 100)
    assert read_inside(root, ("a", "r.md"), 10) == b"x" * 10
    assert read_inside(root, ("a", "missing.md"), 10) is None


@pytest.mark.parametrize("kind", ["symlinked directory", "file for a directory", "fifo", "hard link",
                                  "directory"])
def test_reading_the_report_refuses_all_but_a_plain_file(tmp_path: Path, kind: str) -> None:
    root = tree(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "r.md").write_text("secret")
    if kind == "symlinked directory":
        (root / "a").rmdir()
        (root / "a").symlink_to(outside)
    elif kind == "file for a directory":
        (root / "a").rmdir()
        (root / "a").write_text("")
    elif kind == "fifo":
        os.mkfifo(root / "a" / "r.md")
    elif kind == "hard link":
        os.link(outside / "r.md", root / "a" / "r.md")
    else:
        (root / "a" / "r.md").mkdir()
    with pytest.raises(OSError) as raised:
        read_inside(root, ("a", "r.md"), 10)
    under = "a/r.md lies under a symlink or a file"
    expected = under if kind in ("symlinked directory", "file for a directory") else \
        "a/r.md is not a regular file of its own"
    assert raised.value.strerror == expected


def test_a_huge_report_is_cut(tmp_path: Path) -> None:
    """At 1 MiB, as the README says."""
    mib = 1 << 20
    reports = tmp_path / "wt" / ".nightshift" / "reports"
    reports.mkdir(parents=True)
    (reports / "dead-code.md").write_bytes(b"x" * (mib * 3))
    run = RunSpec("run", False, "", 0.0, "", "", str(tmp_path / "out"), None, "info")
    settings = PublishSettings("local", "origin", "nightshift/", "report", 3, 10, None)
    project = ProjectSpec("alpha", str(tmp_path), str(tmp_path), None, ("dead-code",), (), (),
                          None, settings)
    spec = TaskSpec(run, project, "dead-code", "Dead Code Detector", "", "analysis", "low", (), None)
    saved = save_report(spec, tmp_path / "wt", LoopResult("completed", 1, summary="s"))
    assert saved.read_bytes() == b"x" * mib + b"\n\n(cut short by nightshift)\n"
