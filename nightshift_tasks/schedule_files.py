"""The scheduled run as a systemd user timer or a launchd agent: the files `cron install --systemd
| --launchd` writes, and reading back what an installed file runs, so a reinstall keeps it."""

from __future__ import annotations

import itertools
import os
import plistlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from nightshift_tasks import cron
from nightshift_tasks.config import ConfigError
from nightshift_tasks.cron import Fields

UNIT = "nightshift-tasks"
LABEL = "com.nightshift-tasks.agent"
LAUNCHD_KEYS = ("Minute", "Hour", "Day", "Month", "Weekday")
DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Job:
    """What every backend writes: when, which argv with which environment, where output goes."""

    cron: str | None  # five fields; None only for a launchd StartInterval
    interval: int | None  # seconds, when the schedule came from schedule.interval
    jitter: int
    argv: list[str]
    env: dict[str, str]
    log: Path
    source: str  # names the config (or variable) in translation errors


class Command(NamedTuple):
    """What an installed entry runs, read back from it."""

    env: dict[str, str]
    argv: list[str]
    log: str

    def settings(self) -> dict[str, str]:
        """Its choices by name (`-n`, each pinned variable, the rest of the command), to compare."""
        argv, found = list(self.argv), {}
        if "-n" in argv[:-1]:
            at = argv.index("-n")
            found["-n"] = argv[at + 1]
            del argv[at:at + 2]
        return {**found, **self.env, "command": shlex.join(argv)}


def parse_cron(job: Job, target: str) -> Fields:
    """Expand the five fields to value lists, for backends that have no cron syntax of their own."""
    def bad(why: str) -> ConfigError:
        return ConfigError([f"config error: {job.source}: schedule.cron: {job.cron!r} cannot be "
                            f"translated for {target}: {why}"])

    try:
        fields = cron.expand(str(job.cron))
    except ValueError as exc:  # the config's check has already refused these
        raise bad(str(exc)) from None
    if fields[2] is not None and fields[4] is not None:
        raise bad("day of month and day of week are both restricted (cron runs on either); restrict one")
    return fields


def on_calendar(fields: Fields) -> str:
    """systemd's OnCalendar= for the same times, e.g. `*-*-* 00/2:00:00` or `Mon *-*-* 00:00:00`."""
    def spec(values: list[int] | None, high: int) -> str:
        if values is None:
            return "*"
        step = values[1] - values[0] if len(values) > 1 else 0
        if step and values == list(range(values[0], high + 1, step)):
            return f"{values[0]:02d}/{step}"
        return ",".join(f"{v:02d}" for v in values)

    minute, hour, day, month, weekday = fields
    days = ",".join(DAYS[d] for d in weekday) + " " if weekday else ""
    return f"{days}*-{spec(month, 12)}-{spec(day, 31)} {spec(hour, 23)}:{spec(minute, 59)}:00"


def systemd_quote(value: str, dollar: bool) -> str:
    """One word for a unit file: C-style quoted, `%` specifiers (and `$` in ExecStart) escaped."""
    text = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + (text.replace("$", "$$") if dollar else text) + '"'


def systemd_words(value: str, dollar: bool) -> list[str] | None:
    """The words `systemd_quote` made, or None for a value it did not make."""
    words = [re.sub(r"\\(.)", r"\1", w).replace("%%", "%") for w in QUOTED.findall(value)]
    words = [w.replace("$$", "$") for w in words] if dollar else words
    return words if " ".join(systemd_quote(w, dollar) for w in words) == value else None


def backend_files(backend: str, job: Job | None) -> dict[Path, bytes]:
    """The unit or plist files with their content (empty content when only the paths are needed)."""
    if backend == "systemd":
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user"
        service, timer = base / f"{UNIT}.service", base / f"{UNIT}.timer"
        if job is None:
            return {service: b"", timer: b""}
        log = str(job.log).replace("%", "%%")
        env = "".join(f"Environment={systemd_quote(f'{k}={v}', False)}\n" for k, v in job.env.items())
        return {service: (
            f"[Unit]\nDescription=nightshift-tasks maintenance run\n\n[Service]\nType=oneshot\n{env}"
            f"ExecStart={' '.join(systemd_quote(a, True) for a in job.argv)}\n"
            f"StandardOutput=append:{log}\nStandardError=append:{log}\n").encode(),
            timer: (
            f"[Unit]\nDescription=Run nightshift-tasks on its schedule\n\n[Timer]\n"
            f"OnCalendar={on_calendar(parse_cron(job, 'systemd'))}\nPersistent=true\n"
            + (f"RandomizedDelaySec={job.jitter}\n" if job.jitter else "")
            + "\n[Install]\nWantedBy=timers.target\n").encode()}
    plist = Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    if job is None:
        return {plist: b""}
    data: dict[str, object] = {
        "Label": LABEL, "ProgramArguments": job.argv, "EnvironmentVariables": job.env, "RunAtLoad": True,
        "StandardOutPath": str(job.log), "StandardErrorPath": str(job.log)}
    fields = parse_cron(job, "launchd") if job.cron else None
    if fields is None or fields == [None] * 5:
        data["StartInterval"] = job.interval or 60
    else:
        named = [(name, values) for name, values in zip(LAUNCHD_KEYS, fields, strict=True) if values]
        times = [dict(zip([n for n, _ in named], combo, strict=True))
                 for combo in itertools.product(*[v for _, v in named])]
        data["StartCalendarInterval"] = times[0] if len(times) == 1 else times
    return {plist: plistlib.dumps(data)}


def read_command(backend: str, files: dict[Path, bytes]) -> Command | None:
    """What the installed service or plist runs (`files` as read), None if we did not write it."""
    content = next(iter(files.values()))
    if backend == "launchd":
        try:
            data = plistlib.loads(content)
        except (plistlib.InvalidFileException, ValueError):
            return None
        env, argv, log = (data.get(k) if isinstance(data, dict) else None for k in
                          ("EnvironmentVariables", "ProgramArguments", "StandardOutPath"))
        if (isinstance(env, dict) and isinstance(argv, list) and isinstance(log, str)
                and all(isinstance(s, str) for s in [*env, *env.values(), *argv])):
            return Command(env, argv, log)
        return None
    env, found, log = {}, None, None
    for line in content.decode(errors="replace").splitlines():
        key, _, value = line.partition("=")
        words = systemd_words(value, key == "ExecStart")
        if key == "Environment" and words and len(words) == 1 and "=" in words[0]:
            name, _, setting = words[0].partition("=")
            env[name] = setting
        elif key == "ExecStart":
            found = words
        elif key == "StandardOutput" and value.startswith("append:"):
            log = value.removeprefix("append:").replace("%%", "%")
    return Command(env, found, log) if found and log is not None else None
