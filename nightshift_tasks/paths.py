"""Where things live: state home, schemas, and the config file lookup order."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

CONFIG_ENV = "NIGHTSHIFT_CONFIG"
HOME_ENV = "NIGHTSHIFT_HOME"
# A project's own settings file, at the top of its checkout. Never the main config: that one
# is not looked for in the current directory, so the name means one thing only.
PROJECT_CONFIG = "nightshift.yaml"


def nightshift_home(env: Mapping[str, str] = os.environ) -> Path:
    """$NIGHTSHIFT_HOME, else $XDG_DATA_HOME/nightshift, else ~/.local/share/nightshift;
    always absolute (a relative one is taken from the current directory)."""
    if env.get(HOME_ENV):
        return Path(os.path.abspath(os.path.expanduser(env[HOME_ENV])))
    data = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(os.path.abspath(Path(data).expanduser())) / "nightshift"


def pin_home(cwd: Path, env: MutableMapping[str, str] = os.environ) -> None:
    """Make a relative $NIGHTSHIFT_HOME absolute against `cwd`, where the user typed the
    command, once: doit moves to the dodo's directory, and the task workers and every
    subprocess must all use the same home."""
    raw = env.get(HOME_ENV)
    if raw and not Path(raw).expanduser().is_absolute():
        env[HOME_ENV] = str(cwd / Path(raw).expanduser())


def _shipped(name: str) -> Path:
    """A file the wheel ships inside the package; an editable install reads the checkout's."""
    packaged = Path(__file__).with_name(name)
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parent.parent / name


def schema_dir() -> Path:
    return _shipped("schemas")


def example_config() -> Path:
    """The commented starting config that `init` writes."""
    return _shipped("config.example.yaml")


def xdg_config(env: Mapping[str, str] = os.environ) -> Path:
    """$XDG_CONFIG_HOME/nightshift/config.yaml (~/.config/nightshift/config.yaml)."""
    xdg = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg).expanduser() / "nightshift" / "config.yaml"


def config_candidates(
    var: str | None, cwd: Path, env: Mapping[str, str] = os.environ
) -> list[tuple[str, Path]]:
    """The lookup order, each with where it came from; explicit choices are not skipped."""
    found: list[tuple[str, Path]] = []
    if var:
        found.append(("config=", cwd / Path(var).expanduser()))
    if env.get(CONFIG_ENV):
        found.append((f"${CONFIG_ENV}", cwd / Path(env[CONFIG_ENV]).expanduser()))
    found.append(("XDG config", xdg_config(env)))
    return found


def find_config(
    var: str | None, cwd: Path, env: Mapping[str, str] = os.environ
) -> tuple[Path | None, str | None]:
    """Return (path, None) for the first config that exists, or (None, why) when none does.

    An explicit `config=` or $NIGHTSHIFT_CONFIG that does not exist is an error, not a
    reason to fall through to a file the user did not ask for.
    """
    for origin, path in config_candidates(var, cwd, env):
        if path.is_file():
            return path, None
        if origin in ("config=", f"${CONFIG_ENV}"):
            return None, f"{origin} names {path}, which does not exist"
    return None, None
