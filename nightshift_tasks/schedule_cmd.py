"""`python -m nightshift_tasks cron install|uninstall|status [--systemd | --launchd] [-n K]`:
run the engine on `schedule.cron` / `schedule.interval` from the user's crontab, a systemd user
timer or a launchd agent. Every backend is generated from one argv, so what runs is the same."""

from __future__ import annotations

import argparse
import itertools
import os
import plistlib
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from nightshift_tasks import storage
from nightshift_tasks import window as windows
from nightshift_tasks.config import Config, ConfigError, open_config, split_variables
from nightshift_tasks.durations import parse_duration
from nightshift_tasks.paths import HOME_ENV, nightshift_home

EXIT_USAGE = 2
BEGIN = "# >>> nightshift-tasks (managed; do not edit) >>>"
END = "# <<< nightshift-tasks <<<"
CRONTAB_ENV = "NIGHTSHIFT_CRONTAB"
UNIT = "nightshift-tasks"
LABEL = "com.nightshift-tasks.agent"
FIELDS = (("Minute", 0, 59), ("Hour", 0, 23), ("Day", 1, 31), ("Month", 1, 12), ("Weekday", 0, 7))
DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
NAMES = {3: ["", "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
         4: [d.lower() for d in DAYS]}  # cron's names, each at its number
NOT_CRON = ("cannot be expressed as a cron schedule; use a divisor of an hour (5m, 10m, 15m, 20m, 30m), "
            "of a day (1h, 2h, 3h, 4h, 6h, 8h, 12h), 24h or 7d, or set schedule.cron")
Fields = list[list[int] | None]  # per cron field its values; None where any value matches


class Unsupported(Exception):
    """A failure outside the config (crontab not runnable, a hand-broken block): exit 1."""


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


def interval_cron(seconds: float, schedule: dict[str, object]) -> str | None:
    """The cron line that fires exactly every `seconds`, or None when cron cannot say it."""
    if seconds < 60 or seconds % 60:
        return None
    minutes = int(seconds // 60)
    if minutes < 60 and 60 % minutes == 0:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    hours, rest = divmod(minutes, 60)
    if rest == 0 and hours < 24 and 24 % hours == 0:
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    if minutes not in (1440, 10080):
        return None
    hour = minute = 0
    window = schedule.get("window")
    if isinstance(window, dict):  # daily and weekly runs start when the window opens, in local time
        opens = windows.next_open(window, datetime.now().astimezone()).astimezone()
        hour, minute = opens.hour, opens.minute
    return f"{minute} {hour} * * *" if minutes == 1440 else f"{minute} {hour} * * 1"


def make_job(config: Config, workers: int, backend: str) -> Job:
    """Read the schedule and build the run; ConfigError (exit 2) for schedules we cannot install."""
    schedule = config.section("schedule")

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError([f"config error: {config.env_keys.get(key, str(config.path))}: {key}: {message}"])

    cron, interval = None, None
    if schedule.get("cron"):
        cron = " ".join(str(schedule["cron"]).split())
        if len(cron.split()) != 5:
            raise fail("schedule.cron", f"{schedule['cron']!r} is not a five-field cron expression "
                                        "(minute hour day-of-month month day-of-week)")
    elif schedule.get("interval"):
        seconds = parse_duration(schedule["interval"])
        cron, interval = interval_cron(seconds, schedule), round(seconds)
        if cron is None and (backend != "launchd" or interval < 1):  # launchd has StartInterval
            raise fail("schedule.interval", f"{schedule['interval']} {NOT_CRON}")
    else:
        raise fail("schedule", "neither cron nor interval is set; set schedule.cron (e.g. \"0 2 * * *\") "
                               "or schedule.interval (e.g. 24h) to install a schedule")
    env = {"PATH": os.environ.get("PATH", os.defpath)}
    if os.environ.get(HOME_ENV):
        env[HOME_ENV] = os.path.abspath(nightshift_home())
    config_path = os.path.abspath(config.path)
    argv = [sys.executable, "-m", "nightshift_tasks", "run", "-n", str(workers), f"config={config_path}"]
    log = Path(os.path.abspath(nightshift_home())) / "logs" / "cron.log"
    if any(c in v for v in [*argv, *env.values(), str(log)] for c in "\r\n"):
        raise Unsupported("a path or PATH contains a line break, which no crontab line or unit file holds")
    return Job(cron, interval, int(parse_duration(schedule.get("jitter") or "0s")), argv, env, log,
               config.env_keys.get("schedule.cron", config_path))


def parse_cron(job: Job, target: str) -> Fields:
    """Expand the five fields to value lists, for backends that have no cron syntax of their own."""
    def bad(why: str) -> ConfigError:
        return ConfigError([f"config error: {job.source}: schedule.cron: {job.cron!r} cannot be "
                            f"translated for {target}: {why}"])

    def number(text: str, index: int) -> int:
        if text.isdigit():
            return int(text)
        if text and text in NAMES.get(index, []):
            return NAMES[index].index(text)
        raise bad(f"{text!r} is not a number")

    fields: Fields = []
    for index, text in enumerate(str(job.cron).lower().split()):
        name, low, high = FIELDS[index]
        values: set[int] = set()
        for item in text.split(","):
            span, _, step = item.partition("/")
            first, _, last = span.partition("-")
            start = low if span == "*" else number(first, index)
            end = high if span == "*" or (step and not last) else number(last or first, index)
            if not low <= start <= end <= high or (step and (not step.isdigit() or int(step) < 1)):
                raise bad(f"{item!r} is not a {name.lower()} range within {low}-{high}")
            values.update(range(start, end + 1, int(step or 1)))
        values = {v % 7 for v in values} if index == 4 else values
        full = set(range(low, 7 if index == 4 else high + 1))
        fields.append(None if values == full else sorted(values))
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


def installed_workers() -> int | None:
    """The `-n` of the installed crontab entry, so `status` checks everything else by default."""
    try:
        _, _, block = split_table(run_crontab("-l"))
    except Unsupported:
        return None
    found = re.search(r" run -n (\d+) ", " ".join(block))
    return int(found.group(1)) if found else None


def crontab_action(action: str, job: Job | None) -> int:
    """Install, remove or check our block, leaving every other line of the table as it was."""
    table = run_crontab("-l")
    kept, at, block = split_table(table)
    line = cron_line(job) if job else ""
    if action == "status":
        if at is None:
            print("nightshift-tasks is not installed in the crontab; run `nightshift-tasks cron install`")
            return 1
        if block == [line]:
            print(f"nightshift-tasks is installed in the crontab and up to date:\n{line}")
            return 0
        print("nightshift-tasks is installed in the crontab but differs from what `cron install` would "
              "write now (with these options); run it again to update.\ninstalled:\n"
              + "\n".join(block) + f"\nexpected:\n{line}")
        return 1
    if action == "install":
        assert job is not None
        if at is None and kept and not kept[-1].endswith("\n"):
            kept[-1] += "\n"
        storage.private_file(job.log)  # the shell's `>>` keeps the mode
        place = len(kept) if at is None else at
        kept[place:place] = [f"{BEGIN}\n", f"{line}\n", f"{END}\n"]
    if "".join(kept) != table:  # an emptied table is removed, as if we had never been there
        run_crontab("-" if kept else "-r", text="".join(kept))
    print(f"installed in the crontab:\n{line}" if job else
          "removed from the crontab" if at is not None else "was not in the crontab; nothing to remove")
    return 0


def systemd_quote(value: str, dollar: bool) -> str:
    """One word for a unit file: C-style quoted, `%` specifiers (and `$` in ExecStart) escaped."""
    text = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + (text.replace("$", "$$") if dollar else text) + '"'


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
        named = [(name, values) for (name, _, _), values in zip(FIELDS, fields, strict=True) if values]
        times = [dict(zip([n for n, _ in named], combo, strict=True))
                 for combo in itertools.product(*[v for _, v in named])]
        data["StartCalendarInterval"] = times[0] if len(times) == 1 else times
    return {plist: plistlib.dumps(data)}


def files_action(action: str, backend: str, job: Job | None) -> int:
    """Install, remove or check the unit or plist files; the service manager is left to the user."""
    files = backend_files(backend, job)
    if action == "status":
        states = {p: "missing" if not p.is_file() else "up to date" if p.read_bytes() == c else "different"
                  for p, c in files.items()}
        print("\n".join(f"{p}: {s}" for p, s in states.items()))
        if set(states.values()) == {"up to date"}:
            print(f"nightshift-tasks is installed for {backend} and up to date")
            return 0
        what = "not installed" if "missing" in states.values() else (
            "installed but differs from what `cron install` would write now (with these options)")
        print(f"nightshift-tasks is {what} for {backend}; run `nightshift-tasks cron install --{backend}`")
        return 1
    for path, content in files.items():
        if job is None:
            print(f"removed {path}" if path.is_file() else f"{path}: not there; nothing to remove")
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            print(f"wrote {path}")
    if job is not None:
        storage.private_file(job.log)
    if backend == "systemd":
        print("then run: systemctl --user daemon-reload" + (
            " && systemctl --user enable --now nightshift-tasks.timer" if job else ""))
    elif job is not None:
        print(f"then run: launchctl bootstrap gui/$(id -u) {shlex.quote(str(next(iter(files))))}" + (
            "\nnote: launchd has no random delay; schedule.jitter is not applied" if job.jitter else ""))
    return 0


def positive(text: str) -> int:
    """-n K: doit's worker count, where 0 or less would make no sense."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def main(argv: list[str]) -> int:
    """Exit 0 done (or installed and up to date), 1 not installed / differs / crontab failed, 2 config."""
    variables, args = split_variables(argv)
    parser = argparse.ArgumentParser(prog="nightshift-tasks cron", description=(
        "Run nightshift-tasks on schedule.cron or schedule.interval from the crontab (default), a "
        "systemd user timer or a launchd agent. Add config=PATH to pick a config."))
    parser.add_argument("action", choices=["install", "uninstall", "status"])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--systemd", dest="backend", action="store_const", const="systemd", default="crontab")
    where.add_argument("--launchd", dest="backend", action="store_const", const="launchd")
    parser.add_argument("-n", type=positive, metavar="K",
                        help="doit workers per run (default 1; status: the installed entry's)")
    opts = parser.parse_args(args)
    try:
        workers = opts.n or (installed_workers() if opts.action == "status" else None) or 1
        job = None if opts.action == "uninstall" else make_job(
            open_config(variables.get("config"), Path.cwd()), workers, opts.backend)
        if opts.backend == "crontab":
            return crontab_action(opts.action, job)
        return files_action(opts.action, opts.backend, job)
    except ConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return EXIT_USAGE
    except Unsupported as exc:
        print(f"error: cron {opts.action}: {exc}", file=sys.stderr)
        return 1
