"""This machine: where data, runs and the cache live (environment variables), and the settings
file (gigagpt.toml: the Cerebras SDK's Python, a cluster, more runs roots). No torch."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from gigagpt.config import REPO, ConfigError, check_value, from_dict, read_toml, show


def env_path(name: str) -> Path | None:
    """An environment variable's path, `~` and `~user` expanded (a quoted "~/runs" reaches us as
    is); unset and empty are the same (GIGAGPT_RUNS= is not `.`). ConfigError for a ~user that
    does not exist (else it would be a directory named `~nouser` in the current one)."""
    value = os.environ.get(name, "")
    return expand(value, f"${name}") if value else None


def expand(text: str, where: str) -> Path:
    """A path from the environment or the settings file, `~` expanded; ConfigError naming `where`
    for a ~user that does not exist or a `~` with no home directory (never a directory named `~x`)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        user = text.split("/")[0]
        raise ConfigError(f"{where} = {show(text)}: cannot expand {user}: "
                          f"{'no home directory' if user == '~' else 'no such user'}; use a full path") from None


def data_root() -> Path:
    return env_path("GIGAGPT_DATA") or Path("data")


def runs_root() -> Path:
    return env_path("GIGAGPT_RUNS") or Path("runs")


def home() -> Path | None:
    try:
        return Path.home()
    except RuntimeError:  # no $HOME and no passwd entry (a bare container, a scheduler's sandbox)
        return None


def cache_dir() -> Path:
    if env_path("GIGAGPT_CACHE"):
        return env_path("GIGAGPT_CACHE")
    base = os.environ.get("LOCALAPPDATA") if sys.platform == "win32" else os.environ.get("XDG_CACHE_HOME")
    if base and sys.platform != "darwin":
        return Path(base) / "gigagpt"
    user = home()
    if user is None:
        raise ConfigError("no home directory for the cache (no $HOME, no passwd entry): set GIGAGPT_CACHE")
    return user / "Library" / "Caches" / "gigagpt" if sys.platform == "darwin" else user / ".cache" / "gigagpt"


def settings_path() -> Path | None:
    """The settings file: $GIGAGPT_SETTINGS, else ./gigagpt.toml, else the user config dir's."""
    named = env_path("GIGAGPT_SETTINGS")
    if named:
        return named
    user = home()
    config = os.environ.get("XDG_CONFIG_HOME") or (user / ".config" if user else None)
    for p in (Path("gigagpt.toml"), *([Path(config) / "gigagpt" / "gigagpt.toml"] if config else [])):
        if p.is_file():
            return p
    return None


def settings() -> dict:
    """This machine's settings (TOML), {} without a file:
    [python] cerebras = "/path/to/python"  (the interpreter of the Cerebras SDK's environment)
    [cerebras] mgmt_address = "...", ...   (defaults for every config's [cerebras] section)
    [runs] roots = ["/path/a", ...]        (more runs roots to browse: extra_runs_roots())"""
    path = settings_path()
    if path is None:
        return {}
    try:
        raw = read_toml(path, "settings file")
    except ConfigError as e:
        raise ConfigError(f"{e} (the settings file)") from None
    for key, value in raw.items():
        if key not in ("python", "cerebras", "runs") or not isinstance(value, dict):
            raise ConfigError(f"{path}: {key}: unknown; the settings file has [python], [cerebras] and [runs] tables")
    from_dict({"cerebras": raw.get("cerebras", {})}, str(path))  # same keys and types as a config's
    python = raw.get("python", {})
    if set(python) - {"cerebras"}:
        raise ConfigError(f"{path}: [python] {', '.join(sorted(set(python) - {'cerebras'}))}: unknown; [python] has cerebras")
    if "cerebras" in python:
        check_value(str(path), "[python] cerebras", python["cerebras"], str)
        if not python["cerebras"] or "\0" in python["cerebras"]:
            raise ConfigError(f"{path}: [python] cerebras = {show(python['cerebras'])}: must be an interpreter's path")
    return raw


def extra_runs_roots() -> list[Path]:
    """Settings [runs] roots: more runs roots, browsed (listed, opened, resumed...) besides the
    runs root (--runs-root, else $GIGAGPT_RUNS or ./runs), where new runs are launched. `~` is
    expanded; a relative path is relative to the settings file. Whether they exist is the
    caller's to say (gigagpt.store.layout.root_problem)."""
    path = settings_path()
    raw = settings().get("runs", {})
    unknown = set(raw) - {"roots"}
    if unknown:
        raise ConfigError(f"{path}: [runs] {', '.join(sorted(unknown))}: unknown; [runs] has roots")
    roots = raw.get("roots", [])
    if not isinstance(roots, list) or not all(isinstance(r, str) and r and "\0" not in r for r in roots):
        raise ConfigError(f"{path}: [runs] roots = {roots!r}: must be a list of paths (strings)")
    return [path.parent / expand(r, f"{path}: [runs] roots") for r in roots]  # an absolute path stays itself


CEREBRAS_ENV = REPO / ".venv-cerebras"  # where scripts/cerebras-env.sh builds the SDK's environment


def named_cerebras_python() -> tuple[Path, str | None]:
    """(the Cerebras SDK's Python, the settings file's [python] cerebras text or None: the default)."""
    named = settings().get("python", {}).get("cerebras")
    return (expand(named, f"{settings_path()}: [python] cerebras") if named else CEREBRAS_ENV / "bin" / "python"), named


def cerebras_python() -> Path:
    """The Python of the Cerebras SDK's environment: settings [python] cerebras, else the default."""
    python, named = named_cerebras_python()
    if not os.access(python, os.X_OK):
        where = f"{settings_path()}: [python] cerebras = {named!r}" if named else f"{python}"
        raise ConfigError(f"no Python for the Cerebras backend at {where}; build its environment with "
                          f"`gigagpt env cerebras` (scripts/cerebras-env.sh, ~6 GB), or name one in "
                          f"gigagpt.toml: [python] cerebras = \"/path/to/bin/python\"")
    return python


def check_cluster(cfg, source: str = "") -> None:
    """Raise ConfigError naming the missing setting when a Cerebras run needs a cluster it lacks.

    Runs before anything slow (the SDK's own error comes only after its start-up and a compile)."""
    c, where = cfg.cerebras, f"{source}: " if source else ""
    if cfg.train.backend != "cerebras" or c.target != "CSX" or c.validate_only:
        return
    for key in ("mount_dirs", "python_paths"):
        for d in getattr(c, key):
            if not os.path.exists(d):  # False for a path it cannot stat, too
                raise ConfigError(f"{where}cerebras.{key} = {show(getattr(c, key))}: {d!r} does not exist on this machine")
    if c.credentials_path and not os.path.isfile(c.credentials_path):
        raise ConfigError(f"{where}cerebras.credentials_path = {show(c.credentials_path)}: no such file")
    if not c.mgmt_address and not os.path.isfile(c.cluster_config):
        raise ConfigError(
            f"{where}no Cerebras cluster configured: cerebras.mgmt_address is not set and the cluster config file "
            f"cerebras.cluster_config = {show(c.cluster_config)} does not exist. Set [cerebras] mgmt_address = "
            f"\"host:port\" (and credentials_path) in the config or in the settings file gigagpt.toml, "
            f"or check the model without a cluster: `gigagpt check-csx CONFIG`")


def describe() -> list[str]:
    """`gigagpt env`: what this machine's settings are and where each comes from."""
    def source(var: str) -> str:
        return f"${var}" if env_path(var) else "default"

    path = settings_path()
    found = "$GIGAGPT_SETTINGS" if env_path("GIGAGPT_SETTINGS") else "in the current directory" if path == Path(
        "gigagpt.toml") else "the user's config directory"
    lines = [f"settings file      {path} ({found})" if path else
             "settings file      none ($GIGAGPT_SETTINGS, ./gigagpt.toml, ~/.config/gigagpt/gigagpt.toml)",
             f"runs root          {runs_root()} ({source('GIGAGPT_RUNS')})",
             f"data root          {data_root()} ({source('GIGAGPT_DATA')})",
             f"cache              {cache_dir()} ({source('GIGAGPT_CACHE')})"]
    try:
        lines += [f"more runs roots    {r} (settings [runs] roots)" for r in extra_runs_roots()]
        python, named = named_cerebras_python()
        ready = "" if os.access(python, os.X_OK) else ", not there: gigagpt env cerebras builds it"
        lines.append(f"Cerebras SDK       {python} ({'settings [python] cerebras' if named else 'default'}{ready})")
    except ConfigError as e:
        lines.append(f"settings file      unusable: {e}")
    return lines
