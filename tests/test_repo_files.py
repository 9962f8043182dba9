"""Repository facts from git's files: they only ever confirm what git itself says, for the
layouts git makes, and leave every other layout to git."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from nightshift_tasks import git, leftovers, repo_files

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"]


def run(cwd: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def asked_of_git(path: Path) -> str | None:
    """What `git.unusable` answered before it read any file: git's own two calls."""
    def ok(*args: str) -> bool:
        return bool(subprocess.run(["git", *args], cwd=path, capture_output=True, text=True).stdout.strip())
    if not ok("rev-parse", "--git-dir"):
        return "not a git repository"
    if not ok("rev-parse", "--verify", "--quiet", "HEAD"):
        return "git repository has no commits"
    return None


def committed(path: Path) -> Path:
    path.mkdir(parents=True)
    run(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# r\n")
    run(path, "add", "README.md")
    run(path, "commit", "-q", "-m", "init")
    return path


def plain(tmp: Path) -> Path:
    return committed(tmp / "r")


def detached(tmp: Path) -> Path:
    repo = committed(tmp / "r")
    run(repo, "checkout", "-q", "--detach", "HEAD")
    return repo


def mid_rebase(tmp: Path) -> Path:
    repo = committed(tmp / "r")
    run(repo, "checkout", "-q", "-b", "theirs")
    (repo / "README.md").write_text("# theirs\n")
    run(repo, "commit", "-q", "-am", "theirs")
    run(repo, "checkout", "-q", "main")
    (repo / "README.md").write_text("# ours\n")
    run(repo, "commit", "-q", "-am", "ours")
    rebase = subprocess.run([*GIT, "rebase", "theirs"], cwd=repo, capture_output=True)
    assert rebase.returncode != 0 and (repo / ".git" / "rebase-merge").is_dir()
    return repo


def locked_index(tmp: Path) -> Path:
    repo = committed(tmp / "r")
    (repo / ".git" / "index.lock").write_text("")
    return repo


def packed_refs(tmp: Path) -> Path:
    repo = committed(tmp / "r")
    run(repo, "remote", "add", "origin", "https://example.invalid/me/r.git")
    run(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    return repo


def linked_worktree(tmp: Path) -> Path:
    run(committed(tmp / "r"), "worktree", "add", "-q", "-b", "side", str(tmp / "wt"))
    return tmp / "wt"


def no_commits(tmp: Path) -> Path:
    (tmp / "r").mkdir()
    run(tmp / "r", "init", "-q")
    return tmp / "r"


def not_a_repository(tmp: Path) -> Path:
    (tmp / "r").mkdir()
    return tmp / "r"


def subdirectory(tmp: Path) -> Path:
    (committed(tmp / "r") / "sub").mkdir()
    return tmp / "r" / "sub"


def unknown_extension(tmp: Path) -> Path:
    repo = committed(tmp / "r")
    run(repo, "config", "core.repositoryformatversion", "1")
    run(repo, "config", "extensions.nightshiftUnknown", "true")
    return repo


def bad_boolean(tmp: Path) -> Path:
    repo = committed(tmp / "r")
    with (repo / ".git" / "config").open("a") as config:
        config.write("[core]\n\tfilemode = maybe\n")
    return repo


def other_settings(tmp: Path) -> Path:
    repo = committed(tmp / "r")
    run(repo, "config", "pull.rebase", "true")
    return repo


def garbage_branch(tmp: Path) -> Path:
    repo = committed(tmp / "r")
    (repo / ".git" / "refs" / "heads" / "main").write_text("not a commit\n")
    return repo


def dangling_gitdir_file(tmp: Path) -> Path:
    (tmp / "r").mkdir()
    (tmp / "r" / ".git").write_text(f"gitdir: {tmp / 'nowhere'}\n")
    return tmp / "r"


# (layout, whether the files alone answer it)
LAYOUTS: list[tuple[Callable[[Path], Path], bool]] = [
    (plain, True), (detached, True), (mid_rebase, True), (locked_index, True), (packed_refs, True),
    (linked_worktree, True), (no_commits, False), (not_a_repository, False), (subdirectory, False),
    (unknown_extension, False), (bad_boolean, False), (other_settings, False), (garbage_branch, False),
    (dangling_gitdir_file, False)]


@pytest.mark.parametrize(("make", "from_files"), LAYOUTS, ids=[m.__name__ for m, _ in LAYOUTS])
def test_unusable_says_what_git_says(tmp_path: Path, make: Callable[[Path], Path], from_files: bool) -> None:
    path = make(tmp_path)
    assert repo_files.has_commit(str(path)) is from_files
    assert git.unusable(str(path)) == asked_of_git(path)


def test_an_environment_override_leaves_it_to_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = plain(tmp_path)
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    assert repo_files.git_dirs(str(repo)) is None
    assert git.unusable(str(repo)) == "not a git repository"


def test_plain_repositories_are_planned_without_starting_git(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Planning 10,000 projects must not start 20,000 git processes: with no git on PATH at
    all, the usual layouts are still answered, and their worktrees listed."""
    repos = [make(tmp_path / make.__name__) for make, from_files in LAYOUTS if from_files]
    main = tmp_path / "linked_worktree" / "r"
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    assert [git.unusable(str(r)) for r in repos] == [None] * len(repos)
    assert leftovers.registered(str(main)) == [tmp_path / "linked_worktree" / "wt"]
    assert leftovers.registered(str(repos[0])) == []


def test_registered_worktrees_match_git_worktree_list(tmp_path: Path) -> None:
    repo = committed(tmp_path / "r")
    run(repo, "worktree", "add", "-q", "--detach", str(tmp_path / "kept"))
    run(repo, "worktree", "add", "-q", "--detach", str(tmp_path / "gone"))
    os.rename(tmp_path / "gone", tmp_path / "moved")  # registered still, its directory elsewhere
    listed = [Path(line.removeprefix("worktree ")) for line in
              run(repo, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]
    assert sorted(listed[1:]) == sorted(leftovers.registered(str(repo))) == [
        tmp_path / "gone", tmp_path / "kept"]


def remote_head(tmp: Path) -> Path:
    """A clone: origin/HEAD names the remote's default branch, which git must be asked."""
    run(tmp, "clone", "-q", str(committed(tmp / "upstream")), "r")
    return tmp / "r"


def tag_named_like_the_branch(tmp: Path) -> Path:
    repo = committed(tmp / "r")
    run(repo, "tag", "main")  # git then abbreviates the branch as heads/main
    return repo


def branch_named_origin_head(tmp: Path) -> Path:
    repo = committed(tmp / "r")
    run(repo, "branch", "origin/HEAD")
    return repo


def base_asked_of_git(path: Path) -> tuple[str, str] | None:
    """What `git.base_commit(path, None, "origin")` answered before it read any file."""
    for ref in ("origin/HEAD", "HEAD"):
        found = subprocess.run(["git", "rev-parse", f"{ref}^{{commit}}", "--abbrev-ref", ref], cwd=path,
                               capture_output=True, text=True).stdout.split()
        if len(found) == 2:
            return found[0], found[1]
    return None


BASES: list[tuple[Callable[[Path], Path], bool]] = [
    *((make, files) for make, files in LAYOUTS if files or make in (subdirectory, other_settings)),
    (remote_head, False), (tag_named_like_the_branch, False), (branch_named_origin_head, False)]


@pytest.mark.parametrize(("make", "from_files"), BASES, ids=[m.__name__ for m, _ in BASES])
def test_the_base_commit_is_what_git_says(tmp_path: Path, make: Callable[[Path], Path],
                                          from_files: bool) -> None:
    path = make(tmp_path)
    assert (repo_files.head_commit(str(path), "origin") is not None) is from_files
    assert git.base_commit(str(path), None, "origin") == base_asked_of_git(path)
