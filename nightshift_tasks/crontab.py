"""The scheduled run as a block in the user's crontab: the one line `cron install` writes,
reading back what an installed line runs, and the crontab program itself, never run through
a shell. schedule_files.py does the same for systemd and launchd."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess

from nightshift_tasks.schedule_files import Command, Job

BEGIN = "# >>> nightshift-tasks (managed; do not edit) >>>"
END = "# <<< nightshift-tasks <<<"
CRONTAB_ENV = "NIGHTSHIFT_CRONTAB"
ENV_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


class Unsupported(Exception):
    """A failure outside the config (crontab not runnable, a hand-broken block): exit 1."""


def cron_line(job: Job) -> str:
    """The crontab entry: every value shlex-quoted, `%` escaped for cron, no user text unquoted."""
    if any("\\%" in v for v in [*job.argv, *job.env.values(), str(job.log)]):
        raise Unsupported("a path or PATH contains `\\%`, which a crontab line cannot hold")
    words = [f"{k}={shlex.quote(v)}" for k, v in job.env.items()] + [shlex.quote(a) for a in job.argv]
    command = " ".join(words) + f" >> {shlex.quote(str(job.log))} 2>&1"
    if job.jitter:  # a generated expression only: 0..jitter seconds from 32 random bits
        command = f"sleep $(( $(od -An -N4 -tu4 /dev/urandom) * {job.jitter + 1} / 4294967296 )); {command}"
    return f"{job.cron} {command.replace('%', chr(92) + '%')}"


def run_crontab(*args: str, text: str = "") -> str:
    """The real crontab program ($NIGHTSHIFT_CRONTAB in tests), never through a shell. Its
    `no crontab for <user>` (exit 1) means an empty table; bytes round-trip unchanged."""
    program = os.environ.get(CRONTAB_ENV) or "crontab"
    try:
        done = subprocess.run([program, *args], input=text.encode("utf-8", "surrogateescape"),
                              capture_output=True, check=False)
    except OSError as exc:
        raise Unsupported(f"cannot run {program!r}: {exc.strerror}; install cron, or use --systemd "
                          "or --launchd") from None
    err = done.stderr.decode(errors="replace").strip()
    if done.returncode == 1 and "no crontab for" in err:
        return ""
    if done.returncode:
        raise Unsupported(f"{program} {' '.join(args)} failed (exit {done.returncode}): {err}")
    return done.stdout.decode("utf-8", "surrogateescape")


def split_table(text: str) -> tuple[list[str], int | None, list[str]]:
    """Other lines (byte-for-byte, with line ends), where our first block was, and its entries."""
    kept: list[str] = []
    block: list[str] = []
    at: int | None = None
    inside = False
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        if not inside and bare == BEGIN:
            inside, at = True, len(kept) if at is None else at
        elif inside:
            inside = bare != END
            block += [bare] if inside else []
        else:
            kept.append(line)
    if inside:
        raise Unsupported(f"the crontab has {BEGIN!r} but no {END!r} after it; fix it with `crontab -e`")
    return kept, at, block


def read_line(line: str) -> Command | None:
    """What our crontab line runs (`cron_line` reversed), None for a line it did not make."""
    command = line.split(" ", 5)[-1].replace("\\%", "%")
    if command.startswith("sleep $(("):
        command = command.partition("; ")[2]
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    pairs = list(itertools.takewhile(ENV_WORD.match, words))
    rest = words[len(pairs):]
    if len(rest) < 4 or rest[-3] != ">>" or rest[-1] != "2>&1" or "\\%" in command:
        return None
    return Command({k: v for k, _, v in (p.partition("=") for p in pairs)}, rest[:-3], rest[-2])
