"""`python -m nightshift_tasks cron install|uninstall|status [--systemd | --launchd] [-n K]`:
run the engine on `schedule.cron` / `schedule.interval` from the user's crontab, a systemd user
timer or a launchd agent. Every backend is generated from one argv, so what runs is the same."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from nightshift_tasks import cron, storage
from nightshift_tasks import window as windows
from nightshift_tasks.config import Config, ConfigError, open_config, split_variables
from nightshift_tasks.crontab import BEGIN, END, Unsupported, cron_line, read_line, run_crontab, split_table
from nightshift_tasks.durations import format_duration, parse_duration
from nightshift_tasks.paths import CONFIG_ENV, HOME_ENV, nightshift_home
from nightshift_tasks.schedule_files import Command, Job, backend_files, read_command

EXIT_USAGE = 2
NOT_CRON = ("cannot be expressed as a cron schedule; use a divisor of an hour (5m, 10m, 15m, 20m, 30m), "
            "of a day (1h, 2h, 3h, 4h, 6h, 8h, 12h), 24h or 7d, or set schedule.cron")


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


def upcoming(expression: str, jitter: int, now: datetime | None = None) -> str:
    """When a cron expression next fires, in local time as cron reads it."""
    now = now or datetime.now()
    at = cron.next_run(cron.expand(expression), now)
    extra = f", plus up to {format_duration(jitter)} of jitter" if jitter else ""
    return f"{at:%Y-%m-%d %H:%M} (in {format_duration((at - now).total_seconds())}{extra})"


def next_run_note(config: Config) -> str:
    """The line `status` ends with: when the configured schedule fires next."""
    schedule = config.section("schedule")
    expression = schedule.get("cron") or (
        interval_cron(parse_duration(schedule["interval"]), schedule) if schedule.get("interval") else None)
    if not expression:
        return ("next scheduled run: none; set schedule.cron or schedule.interval, then run "
                "`nightshift-tasks cron install`" + (" (launchd runs this interval: cron status "
                                                    "--launchd)" if schedule.get("interval") else ""))
    jitter = int(parse_duration(schedule.get("jitter") or "0s"))
    return (f"next scheduled run: {upcoming(str(expression), jitter)}, by {expression!r}; "
            "`nightshift-tasks cron status` says whether it is installed")


def make_job(config: Config, workers: int, backend: str) -> Job:
    """Read the schedule and build the run; ConfigError (exit 2) for schedules we cannot install."""
    schedule = config.section("schedule")

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError([f"config error: {config.env_keys.get(key, str(config.path))}: {key}: {message}"])

    expression, interval = None, None
    if schedule.get("cron"):
        expression = " ".join(str(schedule["cron"]).split())  # the config's check proved it good
    elif schedule.get("interval"):
        seconds = parse_duration(schedule["interval"])
        expression, interval = interval_cron(seconds, schedule), round(seconds)
        if expression is None and (backend != "launchd" or interval < 1):  # launchd has StartInterval
            raise fail("schedule.interval", f"{schedule['interval']} {NOT_CRON}")
    else:
        raise fail("schedule", "neither cron nor interval is set; set schedule.cron (e.g. \"0 2 * * *\") "
                               "or schedule.interval (e.g. 24h) to install a schedule")
    # Everything the run resolves from this shell is pinned: its home, its config and the
    # NIGHTSHIFT_<SECTION>_<KEY> overrides that shaped it, so cron sees what `run` here sees.
    config_path = os.path.abspath(config.path)
    env = {"PATH": os.environ.get("PATH", os.defpath), HOME_ENV: os.path.abspath(nightshift_home()),
           CONFIG_ENV: config_path}
    env.update(sorted((name, os.environ[name]) for name in (v[1:] for v in config.env_keys.values())))
    argv = [sys.executable, "-m", "nightshift_tasks", "run", "-n", str(workers)]
    log = Path(os.path.abspath(nightshift_home())) / "logs" / "cron.log"
    if any(c in v for v in [*argv, *env.values(), str(log)] for c in "\r\n"):
        raise Unsupported("a path or PATH contains a line break, which no crontab line or unit file holds")
    return Job(expression, interval, int(parse_duration(schedule.get("jitter") or "0s")), argv, env, log,
               config.env_keys.get("schedule.cron", config_path))


@dataclass(frozen=True)
class Current:
    """What a backend has installed: anything at all, what it runs (None when unreadable), and
    whether a job would be written exactly as it is."""

    present: bool
    command: Command | None
    matches: Callable[[Job], bool]

    def changes(self, job: Job) -> list[str]:
        """Each setting `job` would change as `name old -> new`, then `the schedule` when the rest
        differs too (what `job` renders with the installed settings is not what is there)."""
        if self.matches(job):
            return []
        if self.command is None:
            return ["the whole entry (unreadable or incomplete)"]
        before, after = self.command.settings(), Command(job.env, job.argv, str(job.log)).settings()
        found = [f"{k} {before.get(k, '(unset)')} -> {after.get(k, '(unset)')}"
                 for k in dict.fromkeys([*after, *before]) if before.get(k) != after.get(k)]
        same = self.matches(replace(job, env=self.command.env, argv=self.command.argv,
                                    log=Path(self.command.log)))
        return found + ([] if same else ["the schedule"])

    def workers(self) -> int | None:
        """The installed `-n`, which a reinstall or status keeps unless `-n` is given."""
        found = self.command.settings().get("-n", "") if self.command else ""
        return int(found) if found.isdigit() and int(found) else None


def current(backend: str, table: str) -> Current:
    """Read what is installed: our crontab block (from `table`) or the unit or plist files."""
    if backend == "crontab":
        _, at, block = split_table(table)
        return Current(at is not None, read_line(block[0]) if len(block) == 1 else None,
                       lambda job: [cron_line(job)] == block)
    paths = backend_files(backend, None)
    files = {p: p.read_bytes() for p in paths if p.is_file()}
    return Current(bool(files), read_command(backend, files) if len(files) == len(paths) else None,
                   lambda job: backend_files(backend, job) == files)


def differs(where: str, now: Current, job: Job, hint: str) -> str:
    """The one line that ends `status` (and that `doctor` shows) for an entry that differs."""
    return (f"nightshift-tasks is installed {where} but differs from what `cron install` would write "
            f"now (installed -> this shell: {'; '.join(now.changes(job))}); run `{hint}` to update")


def crontab_action(action: str, job: Job | None, table: str, now: Current, note: list[str]) -> int:
    """Install, remove or check our block, leaving every other line of the table as it was."""
    kept, at, block = split_table(table)
    line = cron_line(job) if job else ""
    if action == "status":
        assert job is not None
        if at is None:
            print("nightshift-tasks is not installed in the crontab; run `nightshift-tasks cron install`")
            return 1
        if now.matches(job):
            print(f"{line}\nnext run: {upcoming(str(job.cron), job.jitter)}\n"
                  "nightshift-tasks is installed in the crontab and up to date")
            return 0
        print("installed:\n" + "\n".join(block) + f"\nexpected:\n{line}\n"
              + differs("in the crontab", now, job, "nightshift-tasks cron install"))
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
    print("\n".join(["installed in the crontab:", line, *note]) if job else
          "removed from the crontab" if at is not None else "was not in the crontab; nothing to remove")
    return 0


def files_action(action: str, backend: str, job: Job | None, now: Current, note: list[str]) -> int:
    """Install, remove or check the unit or plist files; the service manager is left to the user."""
    files = backend_files(backend, job)
    if action == "status":
        assert job is not None
        states = {p: "missing" if not p.is_file() else "up to date" if p.read_bytes() == c else "different"
                  for p, c in files.items()}
        print("\n".join(f"{p}: {s}" for p, s in states.items()))
        hint = f"nightshift-tasks cron install --{backend}"
        if "missing" in states.values():
            print(f"nightshift-tasks is not installed for {backend}; run `{hint}`")
        elif now.matches(job):
            print(f"next run: {upcoming(job.cron, job.jitter)}" if job.cron else
                  f"next run: every {format_duration(job.interval or 60)} from when launchd loaded it")
            print(f"nightshift-tasks is installed for {backend} and up to date")
            return 0
        else:
            print(differs(f"for {backend}", now, job, hint))
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
        if note:
            print("\n".join(note))
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
                        help="doit workers per run (default: the installed entry's, else 1)")
    opts = parser.parse_args(args)
    try:
        config = None if opts.action == "uninstall" else open_config(variables.get("config"), Path.cwd())
        table = run_crontab("-l") if opts.backend == "crontab" else ""
        now = current(opts.backend, table)
        kept = None if opts.n else now.workers()
        job = None if config is None else make_job(config, opts.n or kept or 1, opts.backend)
        note = []
        if job is not None and opts.action == "install" and now.present:  # say what was kept and changed
            changes = now.changes(job)
            note = ([f"kept from the installed entry: -n {kept}"] if kept else []) + [
                f"changed: {'; '.join(changes)}" if changes else "nothing changed"]
        if opts.backend == "crontab":
            return crontab_action(opts.action, job, table, now, note)
        return files_action(opts.action, opts.backend, job, now, note)
    except ConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return EXIT_USAGE
    except Unsupported as exc:
        print(f"error: cron {opts.action}: {exc}", file=sys.stderr)
        return 1
