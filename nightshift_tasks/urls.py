"""Repository URLs from the config (`projects[].url`): which ones nightshift fetches, the
project's identity without credentials, and redaction of credentials from any message.

A URL is user config that git would otherwise interpret freely: `ext::` runs a command,
`fd::` reads a descriptor, and a host starting with `-` becomes an ssh option. Only https,
ssh (also as scp-style user@host:path) and file URLs pass, and git is told the same
(GIT_ALLOW_PROTOCOL), so nothing else is fetched even through a redirect or a submodule.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from nightshift_tasks.errors import quote

PROTOCOLS = "https:ssh:file"  # GIT_ALLOW_PROTOCOL's form
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_SCP = re.compile(r"(?P<user>[A-Za-z0-9._-]+)@(?P<host>[^:/\s]+):(?P<path>[^\s]+)")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
ALLOWED_URLS = "allowed: https://host/owner/repo, ssh://[user@]host/path, user@host:path, file:///path"


def _scp(url: str) -> re.Match[str] | None:
    return None if "://" in url else _SCP.fullmatch(url)


def problem(url: str) -> str | None:
    """Why nightshift will not fetch `url`, or None."""
    if any(not c.isprintable() or c.isspace() for c in url):
        return "contains a space or a control character"
    if url.startswith(("/", "~", ".")):
        return "is a local path; use `path` for a checkout, or file:///path for a repository to clone"
    scp = _scp(url)
    if scp is not None:
        host = scp["host"]
    else:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "ssh", "file") or "::" in url.split("/", 1)[0]:
            return "is not an https, ssh or file URL (nor user@host:path)"
        if parts.scheme == "file":
            return None if not parts.netloc and parts.path.startswith("/") else \
                "is not a file URL of an absolute path (file:///path)"
        try:
            parts.port  # noqa: B018 (raises ValueError on a bad port)
        except ValueError:
            return "has a port that is not a number from 0 to 65535"
        host = parts.hostname or ""
        if not parts.path.strip("/"):
            return "names no repository path"
    if not _HOST.fullmatch(host):
        return f"has no usable host name ({quote(host, 40)})"
    return None


def normalised(url: str) -> str:
    """The project's identity: the URL without credentials (an https user and password, an
    ssh password) or trailing slashes. The same on every machine, so the ledger knows it."""
    url = url.rstrip("/")
    if _scp(url):
        return url
    parts = urlsplit(url)
    keep_user = parts.scheme == "ssh" and parts.username
    host = parts.hostname or ""
    netloc = (f"{parts.username}@" if keep_user else "") + host + (f":{parts.port}" if parts.port else "")
    return parts._replace(scheme=parts.scheme.lower(), netloc=netloc).geturl()


def display_path(url: str) -> str:
    """host/owner/repo of a URL, the part project names are made from."""
    scp = _scp(url)
    rest = f"{scp['host']}/{scp['path']}" if scp else url.split("://", 1)[-1].split("@")[-1]
    return rest.rstrip("/").removesuffix(".git")


def redact(text: str, url: str | None = None) -> str:
    """`text` without credentials: any user:password@ after a scheme, and the URL's own
    password wherever it appears (git prints it percent-decoded, too)."""
    if url and _scp(url) is None:
        secret = urlsplit(url).password
        for form in {secret, unquote(secret)} if secret else ():
            text = text.replace(form, "***")
    return _USERINFO.sub("***@", text)


def _entries(data: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    projects = data.get("projects") if isinstance(data, dict) else None
    for i, entry in enumerate(projects if isinstance(projects, list) else []):
        if isinstance(entry, dict):
            yield i, entry


def fleet(data: Any) -> bool:
    """state.database names a PostgreSQL server: several machines share one ledger."""
    state = data.get("state") if isinstance(data, dict) else None
    db = state.get("database") if isinstance(state, dict) else None
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


def config_errors(data: Any, source: str) -> list[str]:
    """Each url that nightshift will not fetch; in fleet mode, each project without a url;
    and url projects under publish.mode local, whose work nobody would ever see."""
    lines = []
    head = f"config error: {source}: "
    urls = []
    for i, entry in _entries(data):
        url = entry.get("url")
        if isinstance(url, str):
            urls.append(i)
            why = problem(url)
            if why:
                lines.append(f"{head}projects[{i}].url: {quote(redact(url))} {why}; {ALLOWED_URLS}")
        elif fleet(data) and ("path" in entry or "pattern" in entry):
            kind = "path" if "path" in entry else "pattern"
            lines.append(f"{head}projects[{i}]: fleet mode (state.database is a PostgreSQL URL) needs "
                         f"a url for every project, and a {kind} exists on one machine only; "
                         "give the repository's url instead")
    publish = data.get("publish") if isinstance(data, dict) else None
    mode = publish.get("mode") if isinstance(publish, dict) else None
    if urls and mode not in ("push", "pr"):
        lines.append(f"{head}publish.mode: url projects (projects[{urls[0]}]) need push or pr; "
                     "under local their work would stay in nightshift's mirror cache")
    return lines

