"""`python -m nightshift_tasks cron ...` as a user runs it: the crontab block (through a stand-in
crontab, and once through the real one), interval translation, systemd units and launchd plists."""

from __future__ import annotations

import fcntl
import os
import plistlib
import re
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Env, require_program

BEGIN = "# >>> nightshift-tasks (managed; do not edit) >>>"
END = "# <<< nightshift-tasks <<<"
LOCK = Path("/tmp/nightshift-tasks-real-crontab.lock")

# Stores the table in $FAKE_CRONTAB and answers like Debian's crontab for -l, - and -r.
FAKE_CRONTAB = r"""#!/bin/sh
if [ "$1" != - ] && [ ! -f "$FAKE_CRONTAB" ]; then echo "no crontab for $(id -un)" >&2; exit 1; fi
case "$1" in
  -l) cat "$FAKE_CRONTAB" ;;
  -) cat > "$FAKE_CRONTAB" ;;
  -r) rm "$FAKE_CRONTAB" ;;
  *) echo "fake crontab: unexpected $*" >&2; exit 64 ;;
esac
"""


def table(env: Env) -> Path:
    return env.tmp / "crontab.txt"


def shell(env: Env, real: bool = False, **extra: str) -> dict[str, str]:
    """The user's shell: HOME in the tmp dir, the stand-in crontab unless `real`; a variable
    given as "" is unset."""
    fake = env.tmp / "fake-crontab"
    fake.write_text(FAKE_CRONTAB)
    fake.chmod(0o755)
    variables = {} if real else {"NIGHTSHIFT_CRONTAB": str(fake), "FAKE_CRONTAB": str(table(env))}
    merged = {**env.environ(HOME=str(env.tmp / "user")), **variables, **extra}
    return {k: v for k, v in merged.items() if v}


def cron(env: Env, *args: str, config: Path | None = None, real: bool = False,
         **extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "nightshift_tasks", "cron", *args, f"config={config or env.config}"]
    return subprocess.run(cmd, cwd=env.tmp, capture_output=True, text=True, timeout=60,
                          env=shell(env, real, **extra))


def schedule(env: Env, **keys: Any) -> Path:
    return env.write_config({"schedule": keys})


def expected_line(env: Env, fields: str, workers: int = 1, config: Path | None = None,
                  home: Path | None = None) -> str:
    """The entry written by hand from the spec, to compare the generated one with."""
    home = home or env.home
    words = [f"PATH={shlex.quote(os.environ['PATH'])}", f"NIGHTSHIFT_HOME={shlex.quote(str(home))}",
             f"NIGHTSHIFT_CONFIG={shlex.quote(str(config or env.config))}",
             shlex.quote(sys.executable), "-m", "nightshift_tasks", "run", "-n", str(workers), ">>",
             shlex.quote(str(home / "logs" / "cron.log")), "2>&1"]
    return f"{fields} {' '.join(words)}".replace("%", "\\%")


def next_run(line: str, before: datetime) -> tuple[str, datetime]:
    """The line `next run: YYYY-MM-DD HH:MM (in ...)` and its time, which must be after `before`."""
    found = re.fullmatch(r"next run: (\d{4}-\d\d-\d\d \d\d:\d\d) \(in [0-9hms.]+\)", line)
    assert found, line
    at = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M")
    assert at > before, line
    return line, at


def block(line: str) -> str:
    return f"{BEGIN}\n{line}\n{END}\n"


def test_install_from_cron_writes_one_marked_block_with_the_exact_command(env: Env) -> None:
    schedule(env, cron="30  2 * *   *")
    done = cron(env, "install", "-n", "3")
    assert done.returncode == 0, done.stderr
    line = expected_line(env, "30 2 * * *", workers=3)
    assert table(env).read_text() == block(line)
    assert done.stdout == f"installed in the crontab:\n{line}\n"
    assert (env.home / "logs").is_dir()


@pytest.mark.parametrize(("interval", "window", "fields"), [
    ("1m", None, "* * * * *"), ("120s", None, "*/2 * * * *"), ("5m", None, "*/5 * * * *"),
    ("15m", None, "*/15 * * * *"), ("30m", None, "*/30 * * * *"), ("1h", None, "0 * * * *"),
    ("60m", None, "0 * * * *"), ("2h", None, "0 */2 * * *"), ("3h", None, "0 */3 * * *"),
    ("8h", None, "0 */8 * * *"), ("12h", None, "0 */12 * * *"), ("24h", None, "0 0 * * *"),
    ("1d", None, "0 0 * * *"), ("24h", "22:00", "0 22 * * *"), ("1d", "06:45", "45 6 * * *"),
    ("7d", None, "0 0 * * 1"), ("168h", "22:30", "30 22 * * 1"),
])
def test_install_translates_the_interval(env: Env, interval: str, window: str | None, fields: str) -> None:
    schedule(env, interval=interval, **({"window": {"start": window, "end": "23:59"}} if window else {}))
    assert cron(env, "install").returncode == 0
    assert table(env).read_text() == block(expected_line(env, fields))


@pytest.mark.parametrize("interval", ["45m", "5h", "90m", "36h", "30s", "7m", "1h30m", "48h", "14d"])
def test_intervals_cron_cannot_express_are_rejected(env: Env, interval: str) -> None:
    schedule(env, interval=interval)
    done = cron(env, "install")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"config error: {env.config}: schedule.interval: {interval} cannot be expressed as a cron "
        "schedule; use a divisor of an hour (5m, 10m, 15m, 20m, 30m), of a day (1h, 2h, 3h, 4h, 6h, 8h, "
        "12h), 24h or 7d, or set schedule.cron\n")
    assert not table(env).exists()
    assert cron(env, "install", "--systemd").returncode == 2


def test_no_schedule_or_a_malformed_cron_exits_2(env: Env) -> None:
    schedule(env, max_tasks=2)
    done = cron(env, "install")
    assert done.returncode == 2
    assert done.stderr == (f"config error: {env.config}: schedule: neither cron nor interval is set; set "
                           'schedule.cron (e.g. "0 2 * * *") or schedule.interval (e.g. 24h) to install '
                           "a schedule\n")
    assert cron(env, "status").returncode == 2
    schedule(env, cron="0 2 * *")
    done = cron(env, "install")
    assert done.returncode == 2 and done.stderr == (
        f"config error: {env.config}: line 13, column 3: schedule.cron: '0 2 * *' is not a five-field "
        "cron expression (minute hour day-of-month month day-of-week)\n")
    assert not table(env).exists()


def test_install_is_idempotent_and_keeps_other_lines_byte_for_byte(env: Env) -> None:
    before = b"# my jobs \t \nMAILTO=me@example.invalid\n0 1 * * *\techo '50\\%' caf\xe9  \n"
    after = b"@reboot /usr/bin/true\n\n# trailing comment"
    table(env).write_bytes(before)
    schedule(env, cron="0 3 * * *")
    assert cron(env, "install").returncode == 0
    assert cron(env, "install").returncode == 0
    line = expected_line(env, "0 3 * * *")
    assert table(env).read_bytes() == before + block(line).encode()
    table(env).write_bytes(table(env).read_bytes() + after)
    assert cron(env, "install", "-n", "2").returncode == 0  # replaced where it stands
    assert table(env).read_bytes() == before + block(expected_line(env, "0 3 * * *", 2)).encode() + after
    assert table(env).read_text(errors="replace").count(BEGIN) == 1


def test_uninstall_removes_only_our_block(env: Env) -> None:
    before, after = b"# mine\n5 4 * * * echo before\n", b"6 4 * * * echo after\n"
    table(env).write_bytes(before)
    schedule(env, interval="30m")
    assert cron(env, "install").returncode == 0
    table(env).write_bytes(table(env).read_bytes() + after)
    done = cron(env, "uninstall")
    assert (done.returncode, done.stdout) == (0, "removed from the crontab\n")
    assert table(env).read_bytes() == before + after
    again = cron(env, "uninstall")
    assert (again.returncode, again.stdout) == (0, "was not in the crontab; nothing to remove\n")
    assert table(env).read_bytes() == before + after
    table(env).unlink()
    assert cron(env, "install").returncode == 0 and cron(env, "uninstall").returncode == 0
    assert not table(env).exists()  # nothing else was there: the table is removed, as before


def differs(where: str, changes: str, hint: str = "nightshift-tasks cron install") -> str:
    return (f"nightshift-tasks is installed {where} but differs from what `cron install` would write now "
            f"(installed -> this shell: {changes}); run `{hint}` to update\n")


def test_status_says_whether_installed_and_up_to_date(env: Env) -> None:
    schedule(env, interval="2h")
    missing = cron(env, "status")
    assert (missing.returncode, missing.stdout) == (
        1, "nightshift-tasks is not installed in the crontab; run `nightshift-tasks cron install`\n")
    assert cron(env, "install").returncode == 0
    line = expected_line(env, "0 */2 * * *")
    before = datetime.now()
    same = cron(env, "status")
    shown, upcoming = next_run(same.stdout.splitlines()[1], before)
    assert (same.returncode, same.stdout) == (
        0, f"{line}\n{shown}\nnightshift-tasks is installed in the crontab and up to date\n")
    assert upcoming.minute == 0 and upcoming.hour % 2 == 0 and upcoming - before <= timedelta(hours=2)
    more = cron(env, "status", "-n", "4")
    assert (more.returncode, more.stdout.splitlines()[-1] + "\n") == (
        1, differs("in the crontab", "-n 1 -> 4"))
    env.config.write_text(env.config.read_text().replace("interval: 2h", "interval: 4h"))
    changed = cron(env, "status")
    assert (changed.returncode, changed.stdout) == (
        1, f"installed:\n{line}\nexpected:\n{expected_line(env, '0 */4 * * *')}\n"
           + differs("in the crontab", "the schedule"))
    table(env).write_text(f"{BEGIN}\n0 1 * * * true\n{END}\n")
    foreign = cron(env, "status")
    assert foreign.stdout.endswith(differs("in the crontab", "the whole entry (unreadable or incomplete)"))
    table(env).write_text(f"{BEGIN}\n0 1 * * * true\n")
    broken = cron(env, "install")
    assert broken.returncode == 1 and "but no '# <<< nightshift-tasks <<<' after it" in broken.stderr


def jitter_expression(line: str) -> str:
    found = re.search(r"sleep (\$\(\( .* \)\)); PATH=", line)
    assert found, line
    return found.group(1)


def test_jitter_sleeps_a_generated_random_delay_first(env: Env) -> None:
    schedule(env, cron="0 2 * * *", jitter="15m")
    assert cron(env, "install").returncode == 0
    line = table(env).read_text().splitlines()[1]
    assert line == ("0 2 * * * sleep $(( $(od -An -N4 -tu4 /dev/urandom) * 901 / 4294967296 )); "
                    + expected_line(env, "0 2 * * *").removeprefix("0 2 * * * "))
    echo = f"for i in 1 2 3 4 5 6 7 8; do echo {jitter_expression(line)}; done"
    delays = [int(d) for d in subprocess.run(["sh", "-c", echo], capture_output=True, text=True,
                                             check=True).stdout.split()]
    assert all(0 <= d <= 900 for d in delays) and len(set(delays)) > 1


def test_every_value_is_shell_quoted_and_the_line_runs_under_sh(env: Env) -> None:
    odd = env.tmp / "my 50% o'clock $HOME" / "night shift.yaml"
    odd.parent.mkdir()
    odd.write_text("schedule: {cron: '0 4 * * *', jitter: 1s}\nprojects: []\n")
    home = env.tmp / "state home"
    done = cron(env, "install", config=odd, NIGHTSHIFT_HOME=str(home))
    assert done.returncode == 0, done.stderr
    line = table(env).read_text().splitlines()[1]
    command = line.split(" ", 5)[5].replace("\\%", "%")  # what cron hands to sh
    words = shlex.split(command.split("; ", 1)[1])
    assert words == [f"PATH={os.environ['PATH']}", f"NIGHTSHIFT_HOME={home}", f"NIGHTSHIFT_CONFIG={odd}",
                     sys.executable, "-m", "nightshift_tasks", "run", "-n", "1", ">>",
                     str(home / "logs" / "cron.log"), "2>&1"]
    assert "%" not in line.replace("\\%", "")
    ran = subprocess.run(["sh", "-c", command], env={"HOME": str(env.tmp), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=120)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "", "")
    assert "TOTAL" in (home / "logs" / "cron.log").read_text()


def cron_run(env: Env, line: str) -> subprocess.CompletedProcess[str]:
    """Run an entry's command as cron does: through sh, in $HOME, with cron's bare environment."""
    command = line.split(" ", 5)[5].replace("\\%", "%")
    (env.tmp / "user").mkdir(exist_ok=True)
    return subprocess.run(["sh", "-c", command], cwd=env.tmp / "user", capture_output=True, text=True,
                          env={"HOME": str(env.tmp / "user"), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_real_crontab_roundtrip(env: Env) -> None:
    """The real crontab binary (root's table in CI): saved first, restored in any case. The shell
    has $XDG_DATA_HOME and no $NIGHTSHIFT_HOME; a reinstall without -n keeps -n 3."""
    require_program("crontab")
    config = env.tmp / "a dir" / "nightshift.yaml"
    config.parent.mkdir()
    config.write_text("schedule: {cron: '0 0 1 1 *', jitter: 1s}\nprojects: []\n")
    home = env.tmp / "data" / "nightshift"
    xdg = {"NIGHTSHIFT_HOME": "", "XDG_DATA_HOME": str(env.tmp / "data")}
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
        assert saved.returncode == 0 or "no crontab for" in saved.stderr, saved.stderr
        try:
            assert cron(env, "install", "-n", "3", config=config, real=True, **xdg).returncode == 0
            done = cron(env, "install", config=config, real=True, **xdg)
            assert done.returncode == 0, done.stderr
            assert done.stdout.endswith("kept from the installed entry: -n 3\nnothing changed\n")
            listed = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=True).stdout
            line = listed.split(f"{BEGIN}\n", 1)[1].split(f"\n{END}\n", 1)[0]
            assert line == ("0 0 1 1 * sleep $(( $(od -An -N4 -tu4 /dev/urandom) * 2 / 4294967296 )); "
                            + expected_line(env, "0 0 1 1 *", 3, config, home).removeprefix("0 0 1 1 * "))
            assert cron(env, "status", config=config, real=True, **xdg).returncode == 0
            ran = cron_run(env, line)
            assert (ran.returncode, ran.stderr) == (0, "")
            assert "TOTAL" in (home / "logs" / "cron.log").read_text()
            assert len(list((home / "reports").glob("run-*.json"))) == 1
            assert cron(env, "uninstall", config=config, real=True).returncode == 0
            now = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
            assert now.stdout == (saved.stdout if saved.returncode == 0 else "")
        finally:
            if saved.returncode == 0:
                subprocess.run(["crontab", "-"], input=saved.stdout, text=True, check=True)
            else:
                subprocess.run(["crontab", "-r"], capture_output=True)


def test_the_entry_pins_this_shells_home_config_and_overrides(env: Env) -> None:
    """$XDG_DATA_HOME set, $NIGHTSHIFT_HOME unset: cron's run (no XDG, cwd $HOME) uses the same
    home, lock, config and overrides, so `status` in the user's shell sees what it did."""
    env.write_config({"schedule": {"cron": "0 4 * * *"}, "projects": []})
    data, db = env.tmp / "data", env.tmp / "elsewhere" / "state.db"
    user = {"NIGHTSHIFT_HOME": "", "XDG_DATA_HOME": str(data), "NIGHTSHIFT_BUDGET_DB_PATH": str(db)}
    assert cron(env, "install", **user).returncode == 0
    line = table(env).read_text().splitlines()[1]
    home = data / "nightshift"
    assert shlex.split(line.split(" ", 5)[5]) == [
        f"PATH={os.environ['PATH']}", f"NIGHTSHIFT_HOME={home}", f"NIGHTSHIFT_CONFIG={env.config}",
        f"NIGHTSHIFT_BUDGET_DB_PATH={db}", sys.executable, "-m", "nightshift_tasks", "run", "-n", "1",
        ">>", str(home / "logs" / "cron.log"), "2>&1"]
    ran = cron_run(env, line)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "", "")
    status = subprocess.run([sys.executable, "-m", "nightshift_tasks", "status", "--last", "5",
                             f"config={env.config}"],
                            cwd=env.tmp, env=shell(env, **user), capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and len(status.stdout.splitlines()) == 3  # header, rule, the run
    assert (home / "run.lock").is_file() and db.is_file()
    assert not (env.tmp / "user" / ".local").exists()


@pytest.mark.parametrize("backend", ["systemd", "launchd"])
def test_units_and_plist_pin_this_shells_home_and_config(env: Env, backend: str) -> None:
    schedule(env, cron="0 4 * * *")
    data = env.tmp / "data"
    assert cron(env, "install", f"--{backend}", NIGHTSHIFT_HOME="", XDG_DATA_HOME=str(data)).returncode == 0
    home = data / "nightshift"
    if backend == "systemd":
        service = (env.tmp / "xdg" / "systemd" / "user" / "nightshift-tasks.service").read_text()
        assert [line for line in service.splitlines() if line.startswith(("Environment=", "Standard"))] == [
            f'Environment="PATH={os.environ["PATH"]}"', f'Environment="NIGHTSHIFT_HOME={home}"',
            f'Environment="NIGHTSHIFT_CONFIG={env.config}"', f"StandardOutput=append:{home}/logs/cron.log",
            f"StandardError=append:{home}/logs/cron.log"]
    else:
        plist = env.tmp / "user" / "Library" / "LaunchAgents" / "com.nightshift-tasks.agent.plist"
        assert plistlib.loads(plist.read_bytes())["EnvironmentVariables"] == {
            "PATH": os.environ["PATH"], "NIGHTSHIFT_HOME": str(home), "NIGHTSHIFT_CONFIG": str(env.config)}


def test_status_and_doctor_name_a_home_or_config_other_than_this_shells(env: Env) -> None:
    env.write_config({"schedule": {"cron": "0 4 * * *"}, "projects": []})
    installer = {"NIGHTSHIFT_HOME": "", "XDG_DATA_HOME": str(env.tmp / "data")}
    assert cron(env, "install", **installer).returncode == 0
    home = f"NIGHTSHIFT_HOME {env.tmp / 'data' / 'nightshift'} -> {env.home}"
    status = cron(env, "status")  # this shell has the fixture's $NIGHTSHIFT_HOME
    assert (status.returncode, status.stdout.splitlines()[-1] + "\n") == (1, differs("in the crontab", home))
    copy = env.tmp / "copy.yaml"
    copy.write_text(env.config.read_text())
    other = cron(env, "status", config=copy, **installer)
    assert other.stdout.endswith(differs("in the crontab", f"NIGHTSHIFT_CONFIG {env.config} -> {copy}"))

    def doctor() -> str:
        return subprocess.run([sys.executable, "-m", "nightshift_tasks", "doctor", f"config={env.config}"],
                              cwd=env.tmp, env=shell(env), capture_output=True, text=True, timeout=120).stdout

    assert f"[WARN] cron entry: {differs('in the crontab', home)}" in doctor()
    assert cron(env, "install", "--systemd", **installer).returncode == 0  # doctor checks what is there
    assert f"[WARN] cron entry: {differs('for systemd', home, 'nightshift-tasks cron install --systemd')}" \
        in doctor()


def test_reinstall_keeps_the_installed_workers_and_says_what_changed(env: Env) -> None:
    schedule(env, cron="0 3 * * *")
    legacy = (f"0 3 * * * PATH={shlex.quote(os.environ['PATH'])} NIGHTSHIFT_HOME={env.home} {sys.executable} "
              f"-m nightshift_tasks run -n 3 config={env.config} >> {env.home}/logs/cron.log 2>&1")
    table(env).write_text(block(legacy))  # what the previous version wrote
    upgraded = cron(env, "install")
    line = expected_line(env, "0 3 * * *", 3)
    assert upgraded.stdout == (
        f"installed in the crontab:\n{line}\nkept from the installed entry: -n 3\nchanged: NIGHTSHIFT_CONFIG "
        f"(unset) -> {env.config}; command {sys.executable} -m nightshift_tasks run config={env.config} -> "
        f"{sys.executable} -m nightshift_tasks run\n")
    again = cron(env, "install")
    assert again.stdout == (f"installed in the crontab:\n{line}\n"
                            "kept from the installed entry: -n 3\nnothing changed\n")
    assert table(env).read_text() == block(line)
    schedule(env, cron="0 5 * * *")
    moved = cron(env, "install")
    assert moved.stdout.endswith("kept from the installed entry: -n 3\nchanged: the schedule\n")
    other = env.tmp / "other home"
    fewer = cron(env, "install", "-n", "2", NIGHTSHIFT_HOME=str(other))
    assert fewer.stdout.endswith(f"\nchanged: -n 3 -> 2; NIGHTSHIFT_HOME {env.home} -> {other}\n")
    assert table(env).read_text() == block(expected_line(env, "0 5 * * *", 2, home=other))


@pytest.mark.parametrize("backend", ["systemd", "launchd"])
def test_reinstalling_files_keeps_the_installed_workers(env: Env, backend: str) -> None:
    schedule(env, cron="0 3 * * *")
    assert cron(env, "install", f"--{backend}", "-n", "2").returncode == 0
    path = {"systemd": env.tmp / "xdg" / "systemd" / "user" / "nightshift-tasks.service",
            "launchd": env.tmp / "user" / "Library" / "LaunchAgents" / "com.nightshift-tasks.agent.plist",
            }[backend]
    first = path.read_bytes()
    assert cron(env, "status", f"--{backend}").returncode == 0
    again = cron(env, "install", f"--{backend}")
    assert "\nkept from the installed entry: -n 2\nnothing changed\nthen run: " in again.stdout
    assert path.read_bytes() == first
    path.write_text("hand-edited\n")
    hint = f"nightshift-tasks cron install --{backend}"
    assert cron(env, "status", f"--{backend}").stdout.endswith(
        differs(f"for {backend}", "the whole entry (unreadable or incomplete)", hint))
    replaced = cron(env, "install", f"--{backend}")
    assert "\nchanged: the whole entry (unreadable or incomplete)\n" in replaced.stdout


@pytest.mark.parametrize("keys", [{"cron": "*/20 8-10 1,15 * *", "jitter": "10m"}, {"interval": "15m"},
                                  {"interval": "7d", "window": {"start": "22:30", "end": "06:00"}}])
def test_systemd_analyze_verify_accepts_the_units(env: Env, keys: dict[str, Any]) -> None:
    """systemd's own parser on the generated files, offline, with paths that need every escape."""
    require_program("systemd-analyze", only_on="linux")
    odd = env.tmp / "my 50% o'clock $HOME" / 'night "shift\\.yaml'
    odd.parent.mkdir()
    odd.write_text(yaml.safe_dump({"schedule": keys, "projects": []}))
    done = cron(env, "install", "--systemd", config=odd, NIGHTSHIFT_HOME=str(env.tmp / "state $x %h"))
    assert done.returncode == 0, done.stderr
    units = env.tmp / "xdg" / "systemd" / "user"
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no",
                             "nightshift-tasks.service", "nightshift-tasks.timer"],
                            cwd=units, capture_output=True, text=True, timeout=60)
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", "")
    assert cron(env, "status", "--systemd", config=odd, NIGHTSHIFT_HOME=str(env.tmp / "state $x %h")
                ).returncode == 0  # and read back as written


@pytest.mark.parametrize(("keys", "calendar"), [
    ({"cron": "0 2 * * *"}, "*-*-* 02:00:00"),
    ({"interval": "15m"}, "*-*-* *:00/15:00"),
    ({"interval": "2h"}, "*-*-* 00/2:00:00"),
    ({"interval": "24h", "window": {"start": "22:00", "end": "06:00"}}, "*-*-* 22:00:00"),
    ({"interval": "7d"}, "Mon *-*-* 00:00:00"),
    ({"cron": "0 9 * * mon-fri"}, "Mon,Tue,Wed,Thu,Fri *-*-* 09:00:00"),
    ({"cron": "*/20 8-10 1,15 * *"}, "*-*-01,15 08,09,10:00/20:00"),
    ({"cron": "5 4 * jan 0,7"}, "Sun *-01-* 04:05:00"),
])
def test_systemd_units(env: Env, keys: dict[str, Any], calendar: str) -> None:
    schedule(env, jitter="10m", **keys)
    done = cron(env, "install", "--systemd", "-n", "2")
    assert done.returncode == 0, done.stderr
    assert "systemctl --user daemon-reload && systemctl --user enable --now nightshift-tasks.timer" \
        in done.stdout
    units = env.tmp / "xdg" / "systemd" / "user"
    log = env.home / "logs" / "cron.log"
    assert (units / "nightshift-tasks.service").read_text() == (
        "[Unit]\nDescription=nightshift-tasks maintenance run\n\n[Service]\nType=oneshot\n"
        f'Environment="PATH={os.environ["PATH"]}"\nEnvironment="NIGHTSHIFT_HOME={env.home}"\n'
        f'Environment="NIGHTSHIFT_CONFIG={env.config}"\n'
        f'ExecStart="{sys.executable}" "-m" "nightshift_tasks" "run" "-n" "2"\n'
        f"StandardOutput=append:{log}\nStandardError=append:{log}\n")
    assert (units / "nightshift-tasks.timer").read_text() == (
        f"[Unit]\nDescription=Run nightshift-tasks on its schedule\n\n[Timer]\nOnCalendar={calendar}\n"
        "Persistent=true\nRandomizedDelaySec=600\n\n[Install]\nWantedBy=timers.target\n")
    assert log.parent.is_dir() and not table(env).exists()
    if sys.platform.startswith("linux"):  # systemd itself accepts the expression
        analyze = require_program("systemd-analyze", only_on="linux")
        assert subprocess.run([analyze, "calendar", calendar], capture_output=True).returncode == 0
    assert cron(env, "status", "--systemd").returncode == 0  # -n 2 is read back from the unit
    assert cron(env, "status", "--systemd", "-n", "3").stdout.endswith(
        differs("for systemd", "-n 2 -> 3", "nightshift-tasks cron install --systemd"))
    assert cron(env, "uninstall", "--systemd").returncode == 0
    assert list(units.iterdir()) == []
    assert cron(env, "status", "--systemd", "-n", "2").stdout.endswith("is not installed for systemd; run "
                                                                       "`nightshift-tasks cron install "
                                                                       "--systemd`\n")


def test_systemd_rejects_what_oncalendar_cannot_say(env: Env) -> None:
    schedule(env, cron="0 2 1 * mon")
    done = cron(env, "install", "--systemd")
    assert (done.returncode, done.stderr) == (2, (
        f"config error: {env.config}: schedule.cron: '0 2 1 * mon' cannot be translated for systemd: "
        "day of month and day of week are both restricted (cron runs on either); restrict one\n"))


@pytest.mark.parametrize(("keys", "when"), [
    ({"cron": "30 2 * * *"}, {"StartCalendarInterval": {"Hour": 2, "Minute": 30}}),
    ({"interval": "15m"}, {"StartCalendarInterval": [{"Minute": m} for m in (0, 15, 30, 45)]}),
    ({"interval": "7d"}, {"StartCalendarInterval": {"Hour": 0, "Minute": 0, "Weekday": 1}}),
    ({"interval": "8h"}, {"StartCalendarInterval": [{"Hour": h, "Minute": 0} for h in (0, 8, 16)]}),
    ({"interval": "45m"}, {"StartInterval": 2700}),
    ({"interval": "1m"}, {"StartInterval": 60}),
])
def test_launchd_plist(env: Env, keys: dict[str, Any], when: dict[str, Any]) -> None:
    schedule(env, **keys)
    done = cron(env, "install", "--launchd")
    assert done.returncode == 0, done.stderr
    plist = env.tmp / "user" / "Library" / "LaunchAgents" / "com.nightshift-tasks.agent.plist"
    log = str(env.home / "logs" / "cron.log")
    assert plistlib.loads(plist.read_bytes()) == {
        "Label": "com.nightshift-tasks.agent", "RunAtLoad": True, "StandardOutPath": log,
        "StandardErrorPath": log, "EnvironmentVariables": {"PATH": os.environ["PATH"],
                                                           "NIGHTSHIFT_HOME": str(env.home),
                                                           "NIGHTSHIFT_CONFIG": str(env.config)},
        "ProgramArguments": [sys.executable, "-m", "nightshift_tasks", "run", "-n", "1"], **when}
    if shutil.which("plutil"):  # macOS's own checker; plistlib above parses it everywhere
        lint = subprocess.run(["plutil", "-lint", str(plist)], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout
    assert cron(env, "status", "--launchd").returncode == 0
    assert cron(env, "uninstall", "--launchd").returncode == 0 and not plist.exists()
    assert cron(env, "status", "--launchd").returncode == 1


def cron_line_number(env: Env) -> int:
    """Where `schedule.cron` is in the written config (1-based), found by reading it."""
    lines = env.config.read_text().splitlines()
    section = lines.index("schedule:")
    return next(i for i in range(section, len(lines)) if lines[i].startswith("  cron:")) + 1


@pytest.mark.parametrize(("expression", "problem"), [
    ("61 25 * * *", "is not a cron expression: '61' is outside the minute field's range 0-59"),
    ("0 24 * * *", "is not a cron expression: '24' is outside the hour field's range 0-23"),
    ("0 0 32 * *", "is not a cron expression: '32' is outside the day of month field's range 1-31"),
    ("0 0 0 * *", "is not a cron expression: '0' is outside the day of month field's range 1-31"),
    ("0 0 * 13 *", "is not a cron expression: '13' is outside the month field's range 1-12"),
    ("0 0 * * 8", "is not a cron expression: '8' is outside the day of week field's range 0-7"),
    ("*/0 * * * *", "is not a cron expression: '*/0' needs a step of 1 or more after the /"),
    ("30-10 * * * *", "is not a cron expression: '30-10' runs backwards; write the lower minute first"),
    ("0 0 * * someday", "is not a cron expression: 'someday' is not a number or a name (sun, mon, tue, "
                        "wed, thu, fri, sat) in the day of week field"),
    ("0 0 31 2 *", "never fires: no month it allows has that day"),
])
def test_a_cron_field_out_of_range_is_a_config_error_for_every_command(env: Env, expression: str,
                                                                       problem: str) -> None:
    env.projects(["alpha"])
    schedule(env, cron=expression)
    expected = (f"config error: {env.config}: line {cron_line_number(env)}, column 3: schedule.cron: "
                f"{expression!r} {problem}\n")
    done = cron(env, "install")
    assert (done.returncode, done.stdout, done.stderr) == (2, "", expected)
    assert not table(env).exists()
    listed = env.doit("list")
    assert (listed.returncode, listed.stderr) == (2, expected)


def test_status_and_cron_status_show_the_next_run(env: Env) -> None:
    env.projects(["alpha"])
    now = datetime.now()
    at = (now + timedelta(hours=3)).replace(second=0, microsecond=0)
    expression = f"{at.minute} {at.hour} * * *"
    schedule(env, cron=expression, jitter="10m")
    status = subprocess.run([sys.executable, "-m", "nightshift_tasks", "status", f"config={env.config}"],
                            cwd=env.tmp, capture_output=True, text=True, timeout=60, env=shell(env))
    assert status.returncode == 0, status.stderr
    assert re.fullmatch(
        rf"next scheduled run: {at:%Y-%m-%d %H:%M} \(in (2h59m|3h00m), plus up to 10m00s of jitter\), "
        rf"by '{re.escape(expression)}'; `nightshift-tasks cron status` says whether it is installed",
        status.stdout.splitlines()[-1]), status.stdout
    assert cron(env, "install").returncode == 0
    shown = cron(env, "status").stdout.splitlines()
    assert re.fullmatch(rf"next run: {at:%Y-%m-%d %H:%M} \(in (2h59m|3h00m), plus up to 10m00s of jitter\)",
                        shown[1]), shown
    assert shown[2] == "nightshift-tasks is installed in the crontab and up to date"
