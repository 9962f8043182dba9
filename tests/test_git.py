"""git.py's own operations against real repositories: exactly what each one answers."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nightshift_tasks import git as ngit
from tests.conftest import commit, git


@pytest.fixture
def box(repo: Path, tmp_path: Path) -> ngit.Worktree:
    return ngit.add_worktree(str(repo), tmp_path / "work" / "repo--lint-fix--1",
                             git(repo, "rev-parse", "HEAD"))  # a commit id, as base_commit gives


def side_commit(repo: Path, base: str, name: str, text: str) -> str:
    """A commit on top of `base` that no branch holds; main stays checked out."""
    git(repo, "checkout", "-q", "--detach", base)
    made = commit(repo, name, text)
    git(repo, "checkout", "-q", "main")
    return made


def test_contains_holds_for_an_ancestor_only(repo: Path, box: ngit.Worktree) -> None:
    first = git(repo, "rev-parse", "HEAD")
    second = commit(repo, "a", "1\n")
    unrelated = git(repo, "commit-tree", git(repo, "rev-parse", "HEAD^{tree}"), "-m", "root")
    assert ngit.contains(box, second, first)
    assert not ngit.contains(box, first, second)
    assert not ngit.contains(box, unrelated, first)  # no merge base at all
    # A sibling whose id sorts before `first` (ids are hashes: made until there is one), so
    # only an equality test tells the merge base `first` from the sibling asked about.
    below = None
    for i in range(64):
        sibling = side_commit(repo, first, "sibling", f"{i}\n")
        if sibling < first:
            below = sibling
            break
    assert below is not None
    assert not ngit.contains(box, first, below)


@pytest.mark.parametrize("text", ["work\n", "more work\n", "other work\n", "last\n"])
def test_merge_onto_a_branch_adds_the_work_on_top(repo: Path, box: ngit.Worktree, text: str) -> None:
    """Tree ids are content hashes: these four put the merged tree on both sides of the
    branch's tree in sort order, so only an equality test passes them all."""
    base = git(repo, "rev-parse", "HEAD")
    tip = side_commit(repo, base, "theirs", "branch\n")
    work = side_commit(repo, base, "ours", text)
    merged = ngit.merge_onto(box, tip, work, "nightshift: merge")
    assert merged is not None
    assert git(repo, "log", "-1", "--format=%P%n%B", merged).splitlines() == [
        f"{tip} {work}", "nightshift: merge"]
    assert git(repo, "ls-tree", "--name-only", merged).splitlines() == ["README", "ours", "theirs"]


def test_merge_onto_a_branch_that_holds_the_work_is_the_branch(repo: Path, box: ngit.Worktree) -> None:
    base = git(repo, "rev-parse", "HEAD")
    work = side_commit(repo, base, "ours", "work\n")
    tip = side_commit(repo, work, "theirs", "later\n")
    assert ngit.merge_onto(box, tip, work, "nightshift: merge") == tip


def test_merge_onto_conflicting_work_is_none(repo: Path, box: ngit.Worktree) -> None:
    base = git(repo, "rev-parse", "HEAD")
    tip = side_commit(repo, base, "README", "theirs\n")
    work = side_commit(repo, base, "README", "ours\n")
    assert ngit.merge_onto(box, tip, work, "nightshift: merge") is None


def test_merge_onto_an_unknown_commit_names_both(repo: Path, box: ngit.Worktree) -> None:
    tip = git(repo, "rev-parse", "HEAD")
    missing = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(ngit.GitError) as raised:
        ngit.merge_onto(box, tip, missing, "nightshift: merge")
    assert str(raised.value) == f"git merge-tree: cannot merge 0123456789 into {tip[:10]}"


def test_checked_out_names_the_checkout_that_has_the_branch(repo: Path, box: ngit.Worktree) -> None:
    git(repo, "branch", "idle")
    assert ngit.checked_out(box, "main") == repo
    assert ngit.checked_out(box, "idle") is None


def test_a_failed_git_call_says_its_last_line_or_its_exit_code(repo: Path) -> None:
    with pytest.raises(ngit.GitError) as raised:
        ngit.git(repo, "rev-parse", "--verify", "no-such-ref")
    assert str(raised.value) == "git rev-parse: fatal: Needed a single revision"
    (repo / "README").write_text("changed\n")
    with pytest.raises(ngit.GitError) as silent:
        ngit.git(repo, "diff", "--quiet")
    assert str(silent.value) == "git diff: exit 1"


def test_trailers_only_needs_both_trailers_of_the_task_on_every_commit(
        repo: Path, box: ngit.Worktree) -> None:
    base = git(repo, "rev-parse", "HEAD")

    def on_top(parent: str, message: str) -> str:
        return git(repo, "commit-tree", f"{parent}^{{tree}}", "-p", parent, "-m", message)

    ours = on_top(base, "fix\n\nNightshift-Task: lint-fix\nNightshift-Run: r1")
    again = on_top(ours, "more\n\nNightshift-Task: lint-fix\nNightshift-Run: r2")
    assert ngit.trailers_only(box, again, base, "lint-fix")
    assert not ngit.trailers_only(box, again, base, "dead-code")
    assert not ngit.trailers_only(box, again, base, "tests")  # sorting after is no match either
    assert not ngit.trailers_only(box, on_top(again, "a person's commit"), base, "lint-fix")
    assert not ngit.trailers_only(box, on_top(base, "half\n\nNightshift-Task: lint-fix"), base,
                                  "lint-fix")


def test_remote_tip_is_the_remote_branchs_commit_fetched(repo: Path, box: ngit.Worktree,
                                                        tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    pushed = side_commit(repo, git(repo, "rev-parse", "HEAD"), "a", "remote work\n")
    git(repo, "push", "-q", "origin", f"{pushed}:refs/heads/nightshift/lint-fix")
    assert ngit.remote_tip(box, "origin", "nightshift/lint-fix") == pushed
    assert git(repo, "rev-parse", "refs/remotes/origin/nightshift/lint-fix") == pushed
    assert ngit.remote_tip(box, "origin", "nightshift/dead-code") is None


@pytest.mark.parametrize("marker", ["rebase-merge/head-name", "rebase-apply/head-name",
                                    "BISECT_START"])
def test_a_branch_being_rebased_or_bisected_counts_as_checked_out(
        repo: Path, box: ngit.Worktree, tmp_path: Path, marker: str) -> None:
    """Its HEAD is detached meanwhile; finishing sets the branch. In the user's checkout or
    in a linked worktree."""
    git(repo, "branch", "feature")
    other = tmp_path / "other"
    git(repo, "worktree", "add", "-q", "--detach", str(other))
    found = []
    for git_dir, name in ((repo / ".git", "refs/heads/feature"),
                          (Path(git(other, "rev-parse", "--absolute-git-dir")), "feature")):
        (git_dir / marker).parent.mkdir(parents=True, exist_ok=True)
        (git_dir / marker).write_text(name + "\n")
        found.append(ngit.checked_out(box, "feature"))
        (git_dir / marker).unlink()
    assert found == [repo, other]
    assert ngit.checked_out(box, "feature") is None


def test_set_ref_moves_a_ref_only_from_the_commit_it_was_judged_at(
        repo: Path, box: ngit.Worktree) -> None:
    first = git(repo, "rev-parse", "HEAD")
    second = side_commit(repo, first, "a", "1\n")
    ngit.set_ref(box, "refs/heads/nightshift/lint-fix", first, "")  # "": only if absent
    with pytest.raises(ngit.GitError):
        ngit.set_ref(box, "refs/heads/nightshift/lint-fix", second, "")
    with pytest.raises(ngit.GitError):
        ngit.set_ref(box, "refs/heads/nightshift/lint-fix", second, second)
    assert ngit.tip(box, "refs/heads/nightshift/lint-fix") == first
    ngit.set_ref(box, "refs/heads/nightshift/lint-fix", second, first)
    assert ngit.tip(box, "refs/heads/nightshift/lint-fix") == second
    ngit.delete_ref(box, "refs/heads/nightshift/lint-fix")
    assert ngit.tip(box, "refs/heads/nightshift/lint-fix") is None


def test_removing_a_worktree_the_agent_already_deleted_forgets_it(
        repo: Path, box: ngit.Worktree) -> None:
    shutil.rmtree(box.path)
    ngit.remove_worktree(str(repo), box.path, box)
    assert str(box.path) not in git(repo, "worktree", "list")


@pytest.mark.parametrize("where", ["above", "below"])
def test_removing_a_worktree_deletes_no_git_dir_outside_the_repositorys_worktrees(
        repo: Path, box: ngit.Worktree, tmp_path: Path, where: str) -> None:
    """A box whose git dir is not <common>/worktrees/<id> (as git would never make it) has
    its worktree removed by git, and that directory left alone."""
    elsewhere = (tmp_path / "a-git-dir" if where == "above"
                 else box.common_dir / "worktrees-other" / box.git_dir.name)
    elsewhere.mkdir(parents=True)
    ngit.remove_worktree(str(repo), box.path, dataclasses.replace(box, git_dir=elsewhere))
    assert elsewhere.is_dir() and not box.path.exists()


def test_base_commit_is_the_configured_branch_remote_first(repo: Path, tmp_path: Path) -> None:
    main = git(repo, "rev-parse", "HEAD")
    feature = side_commit(repo, main, "f", "feature\n")
    git(repo, "branch", "feature", feature)
    assert ngit.base_commit(str(repo), "feature", "origin") == (feature, "feature")
    assert ngit.base_commit(str(repo), None, "origin") == (main, "main")
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "fetch", "-q", "origin")
    git(repo, "branch", "-f", "feature", main)  # the local branch moved on; the remote did not
    assert ngit.base_commit(str(repo), "feature", "origin") == (feature, "origin/feature")
    with pytest.raises(ngit.GitError) as raised:
        ngit.base_commit(str(repo), "nope", "origin")
    assert str(raised.value) == "base branch 'nope' not found locally or on origin"


@pytest.mark.parametrize(("url", "owner"), [
    ("git@github.com:me/repo.git", "me"), ("https://github.com/me/repo", "me"),
    ("ssh://git@example.org:2222/team/repo.git", "team"), ("/srv/git/me/repo.git", "me"),
    ("file:///srv/git/them/repo.git", "them"), ("https://example.org/repo.git", None)])
def test_remote_owner(repo: Path, url: str, owner: str | None) -> None:
    git(repo, "remote", "add", "origin", url)
    assert ngit.remote_owner(str(repo), "origin") == owner


def test_a_remote_that_does_not_exist_has_no_owner(repo: Path) -> None:
    assert ngit.remote_owner(str(repo), "origin") is None


def test_a_git_that_dies_of_a_signal_fails_the_call(repo: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "git").write_text("#!/bin/sh\nkill -9 $$\n")
    (shim / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    with pytest.raises(ngit.GitError) as raised:
        ngit.git(repo, "status")
    assert str(raised.value) == "git status: exit -9"


def test_a_git_error_of_several_lines_is_told_by_its_last(repo: Path) -> None:
    told = subprocess.run(["git", "log", "no-such-thing"], cwd=repo, capture_output=True, text=True)
    lines = told.stderr.strip().splitlines()
    assert len(lines) > 1
    with pytest.raises(ngit.GitError) as raised:
        ngit.git(repo, "log", "no-such-thing")
    assert str(raised.value) == f"git log: {lines[-1]}"


@pytest.mark.parametrize("identity", [True, False])
def test_commit_uses_the_users_identity_else_nightshifts(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, identity: bool) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no global identity
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    if identity:
        git(repo, "config", "user.name", "Ada")
        git(repo, "config", "user.email", "ada@example.invalid")
    box = ngit.add_worktree(str(repo), tmp_path / "a" / "b" / "repo--lint-fix--1", "HEAD")
    (box.path / "new").write_text("x\n")
    made = ngit.commit(box, "nightshift: lint-fix")
    assert git(repo, "log", "-1", "--format=%an <%ae>|%s", made) == (
        "Ada <ada@example.invalid>|nightshift: lint-fix" if identity
        else "nightshift <nightshift@localhost>|nightshift: lint-fix")


def test_push_without_a_lease_only_fast_forwards_and_a_lease_replaces_exactly_it(
        repo: Path, box: ngit.Worktree, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    base = git(repo, "rev-parse", "HEAD")
    first, other = side_commit(repo, base, "a", "1\n"), side_commit(repo, base, "b", "2\n")
    ngit.push(box, "origin", "nightshift/x", first, None)
    with pytest.raises(ngit.GitError):
        ngit.push(box, "origin", "nightshift/x", other, None)  # not a fast-forward
    with pytest.raises(ngit.GitError):
        ngit.push(box, "origin", "nightshift/x", other, base)  # the branch is not at the lease
    ngit.push(box, "origin", "nightshift/x", other, first)
    assert git(remote, "rev-parse", "refs/heads/nightshift/x") == other
    with pytest.raises(ngit.GitError):
        ngit.push(box, "origin", "nightshift/x", first, "")  # "": only where there is none


def test_a_directory_in_place_of_a_guarded_file_is_tampering(box: ngit.Worktree) -> None:
    (box.path / ".git").unlink()
    (box.path / ".git").mkdir()
    assert box.tampered() == box.path / ".git"



def traced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """GIT_TRACE for the rest of the test: every git process logs itself there, the ones
    git starts for itself (`worktree add` runs update-ref and reset) included."""
    trace = tmp_path / "git-trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    return trace


def git_processes(trace: Path) -> list[str]:
    """The subcommand of each git process the trace saw, in order (git traces a built-in
    after taking its `-c` options)."""
    return [line.split("built-in: git ", 1)[1].split()[0] for line in trace.read_text().splitlines()
            if "built-in: git " in line]


def test_a_worktree_of_a_plain_repository_is_one_git_process_and_what_git_makes(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    head = commit(repo, "src.py", "print(1)\n")
    trace = traced(monkeypatch, tmp_path)
    box = ngit.add_worktree(str(repo), tmp_path / "work" / "repo--lint-fix--1", head)
    assert git_processes(trace) == ["reset"]
    monkeypatch.delenv("GIT_TRACE")
    theirs = tmp_path / "work" / "by-git"
    git(repo, "worktree", "add", "-q", "--detach", str(theirs), head)
    listed = git(repo, "worktree", "list", "--porcelain").split("\n\n")
    assert sorted(listed[1:]) == [f"worktree {theirs}\nHEAD {head}\ndetached",  # by-git < repo--
                                  f"worktree {box.path}\nHEAD {head}\ndetached"]
    assert (box.git_dir, box.common_dir) == (repo / ".git" / "worktrees" / box.path.name, repo / ".git")
    made = sorted(p.name for p in box.git_dir.iterdir())
    assert made == ["HEAD", "ORIG_HEAD", "commondir", "gitdir", "index"]  # no "locked" left
    assert sorted(p.name for p in box.path.iterdir()) == [".git", "README", "src.py"]
    assert (box.path / "src.py").read_text() == "print(1)\n"
    assert git(box.path, "status", "--porcelain") == ""
    assert git(repo, "worktree", "prune", "--dry-run", "--verbose") == ""  # nothing to prune
    ngit.remove_worktree(str(repo), box.path, box)
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 2


def test_a_sparse_checkout_repository_gets_its_worktree_from_git(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A layout that is not plain (here the sparse-checkout config) is left to `git worktree
    add`, which carries the patterns over."""
    commit(repo, "docs.md", "docs\n")
    head = commit(repo, "src.py", "code\n")
    git(repo, "sparse-checkout", "set", "--no-cone", "/src.py")
    trace = traced(monkeypatch, tmp_path)
    box = ngit.add_worktree(str(repo), tmp_path / "work" / "repo--lint-fix--1", head)
    assert git_processes(trace)[0] == "worktree"
    assert sorted(p.name for p in box.path.iterdir()) == [".git", "src.py"]


def test_a_stale_registration_of_the_same_name_is_left_and_git_picks_another(
        repo: Path, tmp_path: Path) -> None:
    stale = repo / ".git" / "worktrees" / "repo--lint-fix--1"
    stale.mkdir(parents=True)
    (stale / "gitdir").write_text("/elsewhere/.git\n")
    head = git(repo, "rev-parse", "HEAD")
    box = ngit.add_worktree(str(repo), tmp_path / "work" / "repo--lint-fix--1", head)
    assert box.git_dir == stale.with_name("repo--lint-fix--11")
    assert [p.name for p in stale.iterdir()] == ["gitdir"]
    assert (stale / "gitdir").read_text() == "/elsewhere/.git\n"
    assert (box.path / "README").read_text() == "one\n"


def test_a_worktree_of_an_unknown_commit_fails_and_leaves_nothing(repo: Path, tmp_path: Path) -> None:
    missing = "0123456789abcdef0123456789abcdef01234567"
    path = tmp_path / "work" / "repo--lint-fix--1"
    with pytest.raises(ngit.GitError, match=r"^git reset: "):
        ngit.add_worktree(str(repo), path, missing)
    assert not path.exists()
    assert not (repo / ".git" / "worktrees" / path.name).exists()
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
