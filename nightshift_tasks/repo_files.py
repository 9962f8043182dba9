"""Repository facts read from the files git keeps, without starting git: planning 10,000
projects must not start 20,000 git processes.

Only the plain layouts git itself makes are read: `<path>/.git` as a directory, or as a
`gitdir:` file (a linked worktree, a submodule), with a config of the sections and keys git
writes and a `HEAD` naming a branch or a commit. Anything else (environment overrides, a
config with other keys, extensions or includes, a repository someone else owns, a
symlinked HEAD) answers None, and the caller asks git as before: these readers may only
ever confirm what git would say, never decide otherwise.
"""

from __future__ import annotations

import os
import re
import stat

# Any of these changes where git looks or what it reads.
_OVERRIDES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY",
              "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT", "GIT_NAMESPACE", "GIT_REF_STORAGE")
_OID = re.compile(r"[0-9a-f]{40}")
_BRANCH = re.compile(r"ref: (refs/heads/[A-Za-z0-9._/-]+)")
_BOOL = r"(?i:true|false|yes|no|on|off|1|0)"
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
# How git expands a short ref name, in order (its "ref rev-parse rules").
_RULES = ("{}", "refs/{}", "refs/tags/{}", "refs/heads/{}", "refs/remotes/{}", "refs/remotes/{}/HEAD")
_PACKED = re.compile(r"(# pack-refs with:.*|\^[0-9a-f]{40}|[0-9a-f]{40} refs/\S+)")
# What `git init`, `git clone`, `git remote add` and `git branch -u` write, and nothing that
# git's start-up would parse into something that can fail.
_SECTION = re.compile(r'\[(core|user|remote "[^"\\]*"|branch "[^"\\]*")\]')
_CORE = re.compile(r"(repositoryformatversion\s*=\s*[01]|(filemode|bare|logallrefupdates|ignorecase"
                   rf"|precomposeunicode|symlinks)\s*=\s*{_BOOL})")
_USER = re.compile(r"(name|email)\s*=\s*[^\"\\;#]*")
_REMOTE_OR_BRANCH = re.compile(r"(url|pushurl|fetch|push|remote|merge)\s*=\s*[^\"\\;#]*")


def _overridden() -> bool:
    return any(name in os.environ for name in _OVERRIDES)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return None


def _plain_config(path: str) -> bool:
    """Every line is one git writes itself (see _SECTION); no comments, quotes or escapes."""
    text = _read(path)
    if text is None:
        return False
    keys = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        section = _SECTION.fullmatch(line)
        if section:
            name = section[1].split(" ")[0]
            keys = _CORE if name == "core" else _USER if name == "user" else _REMOTE_OR_BRANCH
        elif keys is None or not keys.fullmatch(line):
            return False
    return True


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def git_dirs(path: str) -> tuple[str, str] | None:
    """(git dir, common dir) of the repository whose worktree is exactly `path`, when its
    layout is a plain one (see the module's docstring); else None. Strings, not Paths:
    this runs for every project of every plan."""
    if _overridden():
        return None
    dot = os.path.join(path, ".git")
    uid = os.geteuid()
    try:
        top, found = os.stat(path), os.stat(dot)
    except OSError:
        return None
    if stat.S_ISDIR(found.st_mode):
        git_dir = dot
    elif stat.S_ISREG(found.st_mode):
        text = (_read(dot) or "").strip()
        if not text.startswith("gitdir: ") or "\n" in text:
            return None
        git_dir = os.path.join(path, text.removeprefix("gitdir: "))
    else:
        return None
    common = git_dir
    if os.path.exists(os.path.join(git_dir, "commondir")):
        relative = _read(os.path.join(git_dir, "commondir"))
        if relative is None:
            return None
        common = os.path.join(git_dir, relative.strip())
    try:
        owned = {top.st_uid, found.st_uid, os.stat(git_dir).st_uid, os.stat(common).st_uid} == {uid}
    except OSError:
        return None
    plain = (owned and _is_dir(os.path.join(common, "objects")) and _is_dir(os.path.join(common, "refs"))
             and not os.path.islink(os.path.join(git_dir, "HEAD"))
             and _plain_config(os.path.join(common, "config")))
    return (git_dir, common) if plain else None


def _names_commit(common: str, ref: str) -> bool:
    """Whether the branch names a commit id, in its loose ref file or else in packed-refs;
    False also when either file is not as git writes it."""
    loose = os.path.join(common, ref)
    if os.path.lexists(loose):
        return bool(_OID.fullmatch((_read(loose) or "").strip()))
    packed = _read(os.path.join(common, "packed-refs")) or ""
    return any(name == ref and _OID.fullmatch(oid)
               for oid, _, name in (line.partition(" ") for line in packed.splitlines()))


def has_commit(path: str) -> bool:
    """True when `path` is, in a plain layout, a repository whose HEAD names a commit (git
    itself answers `git rev-parse --verify HEAD` the same way: it does not look the object
    up). False means "not known": ask git."""
    dirs = git_dirs(path)
    if dirs is None:
        return False
    git_dir, common = dirs
    head = (_read(os.path.join(git_dir, "HEAD")) or "").strip()
    if _OID.fullmatch(head):
        return True
    branch = _BRANCH.fullmatch(head)
    return branch is not None and _names_commit(common, branch[1])


def linked_worktrees(common: str) -> list[str]:
    """The linked worktrees registered in a common dir, as `git worktree list` names them:
    the path in each `worktrees/<id>/gitdir` without its `/.git`; an unreadable one is left
    out, as git leaves it out."""
    try:
        ids = sorted(os.listdir(os.path.join(common, "worktrees")))
    except OSError:
        return []
    paths = ((_read(os.path.join(common, "worktrees", i, "gitdir")) or "").rstrip() for i in ids)
    return [p.removesuffix("/.git") for p in paths if p]


def new_worktree(path: str, worktree: str, commit: str) -> str | None:
    """Register `worktree` (a directory not made yet) as a linked worktree of the repository
    at `path`, detached at `commit`, by writing what `git worktree add` writes before its
    checkout (gitrepository-layout(5): `worktrees/<id>/` with gitdir, commondir, HEAD, and
    `locked` while it is made, so no prune takes it half made); the caller checks it out and
    unlocks it. Its git dir, or None (nothing written) where the layout is not plain, the
    name is not one git would keep, or either directory exists: then ask git."""
    dirs = git_dirs(path)
    name = os.path.basename(worktree)
    if dirs is None or not _OID.fullmatch(commit) or not _NAME.fullmatch(name) or name.endswith(".lock"):
        return None
    top = os.path.join(os.path.realpath(os.path.dirname(worktree)), name)
    admin = os.path.join(os.path.realpath(dirs[1]), "worktrees", name)
    try:
        os.makedirs(os.path.dirname(admin), exist_ok=True)
        os.mkdir(top)
    except OSError:
        return None
    try:
        os.mkdir(admin)
    except OSError:
        os.rmdir(top)
        return None
    for file, text in (("gitdir", f"{top}/.git"), ("locked", "initializing"),
                       ("commondir", "../.."), ("HEAD", commit)):
        with open(os.path.join(admin, file), "x", encoding="utf-8") as handle:
            handle.write(text + "\n")
    with open(os.path.join(top, ".git"), "x", encoding="utf-8") as handle:
        handle.write(f"gitdir: {admin}\n")
    return admin


def _packed_refs(common: str) -> dict[str, str] | None:
    """packed-refs as name -> commit id ({} when there is none); None when a line is not
    one git writes."""
    text = _read(os.path.join(common, "packed-refs"))
    if text is None:
        return None if os.path.lexists(os.path.join(common, "packed-refs")) else {}
    lines = text.splitlines()
    if not all(_PACKED.fullmatch(line) for line in lines):
        return None
    return {name: oid for oid, _, name in (line.partition(" ") for line in lines) if name}


def head_commit(path: str, remote: str) -> tuple[str, str] | None:
    """What `git rev-parse HEAD^{commit} --abbrev-ref HEAD` prints, in a plain layout where
    no ref could be meant by `<remote>/HEAD` (git is asked that first, see git.base_commit)
    and the branch's short name names nothing else; None means "ask git". HEAD and
    branches only ever name commits: git refuses to write anything else there."""
    dirs = git_dirs(path)
    packed = None if dirs is None else _packed_refs(dirs[1])
    if dirs is None or packed is None or not all(_NAME.fullmatch(p) for p in remote.split("/")):
        return None

    def exists(ref: str) -> bool:
        return ref in packed or any(os.path.lexists(os.path.join(d, ref)) for d in dirs)

    if any(exists(rule.format(f"{remote}/HEAD")) for rule in _RULES):
        return None
    head = (_read(os.path.join(dirs[0], "HEAD")) or "").strip()
    if _OID.fullmatch(head):
        return head, "HEAD"
    branch = _BRANCH.fullmatch(head)
    if branch is None:
        return None
    loose = os.path.join(dirs[1], branch[1])
    oid = (_read(loose) or "").strip() if os.path.lexists(loose) else packed.get(branch[1], "")
    short = branch[1].removeprefix("refs/heads/")
    if not _OID.fullmatch(oid) or any(exists(rule.format(short)) for rule in _RULES if "heads" not in rule):
        return None
    return oid, short
