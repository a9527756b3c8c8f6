"""Where runs are: runs roots, run ids, recognising and finding run directories, checkpoint names.

Nothing here follows a path it was not given: a symlink loop, a file where a directory belongs or
a name the OS refuses is 'not a run', never an exception.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from gigagpt.config import ConfigError
from gigagpt.settings import extra_runs_roots, runs_root, settings_path
from gigagpt.store.files import RunError, os_reason
from gigagpt.store.lock import LOCK_FILE
from gigagpt.store.meta import printable

RUN_FILES = ("meta.json", "train.log", "metrics.jsonl")  # any one makes a directory in a root a run
# What a launcher may put in a directory before the trainer starts (docs/run-format.md).
PRE_START_FILES = {"train.log", LOCK_FILE}
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")  # fullmatch
CHECKPOINT = re.compile(r"^step_(\d{1,12})\.(pt|dcp|mdl)$")
STALE_TEMP = re.compile(r"\..+\.tmp(-\d+(-[0-9a-f]+)?)?")  # atomic_write's and FSDP's temp names (fullmatch)


def check_run_id(run_id: str) -> str:
    if ".." in run_id or not SAFE_ID.fullmatch(run_id):
        raise RunError(f"run name {run_id!r}: use letters, digits and . _ + - (no '/', no '..', at most 128)")
    return run_id


def new_run_dir(root: Path, name: str) -> Path:
    """Create `<root>/<name>-<YYYYmmdd-HHMMSS>[-N]` and return it. The directory is made with an
    exclusive mkdir, so two launches in the same second get two directories."""
    base = check_run_id(f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"runs root {root}: cannot create it ({os_reason(e)})") from None
    for i in range(1, 10_000):
        run_dir = root / (base if i == 1 else f"{base}-{i}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
        except OSError as e:
            raise RunError(f"runs root {root}: cannot create {run_dir.name} ({os_reason(e)})") from None
    raise RunError(f"runs root {root}: 10,000 runs named {base} already")


def entries(path: Path, follow: bool = False) -> list[str] | None:
    """Names in a directory, or None when it is not one (nor, unless `follow`, a symlink to one)."""
    try:
        if not follow and os.path.islink(path):
            return None
        return os.listdir(path)
    except (OSError, ValueError):
        return None


def check_new_run_dir(run_dir: Path) -> None:
    """`--run-dir` for a new run: a path that does not exist, or a directory that is empty or
    holds only what a launcher puts there first. Anything else is refused, nothing touched."""
    try:
        check_run_id(run_dir.name)
    except RunError as e:
        raise RunError(f"--run-dir {run_dir}: {e}") from None
    if not os.path.lexists(run_dir):
        return
    names = entries(run_dir)
    if names is None:
        raise RunError(f"--run-dir {run_dir}: exists and is not a directory")
    extra = set(names) - PRE_START_FILES
    if {"meta.json", "checkpoints"} & extra:
        raise RunError(f"--run-dir {run_dir}: already holds a run; continue it with "
                       f"`gigagpt resume {run_dir}` or choose another directory")
    if extra:
        raise RunError(f"--run-dir {run_dir}: a directory that is not empty and not a run "
                       f"({', '.join(sorted(extra)[:3])}{', ...' if len(extra) > 3 else ''}); "
                       "choose a new or empty directory")


def looks_like_run(path: Path) -> bool:
    names = entries(path, follow=True)
    return names is not None and any(f in names for f in RUN_FILES)


# ---------------------------------------------------------------------------- roots

def root_problem(root: Path) -> str | None:
    """Why a runs root cannot be listed, or None."""
    try:
        with os.scandir(root):
            pass
    except FileNotFoundError:
        return "not found"
    except NotADirectoryError:
        return "not a directory"
    except (OSError, ValueError) as e:
        return f"unreadable ({os_reason(e) if isinstance(e, OSError) else e})"
    return None


def runs_roots(primary: Path | None = None) -> tuple[list[Path], list[str]]:
    """(roots, problems): `primary` (--runs-root; default $GIGAGPT_RUNS or ./runs) first, where new
    runs go, then the settings file's [runs] roots, duplicates dropped. An extra root that cannot be
    listed (or a settings file that cannot be read) is left out with one line in `problems`."""
    primary = Path(primary) if primary else runs_root()
    roots, problems, seen = [primary], [], {os.path.realpath(primary)}
    try:
        extras = extra_runs_roots()
    except ConfigError as e:
        return roots, [f"{e}; extra runs roots skipped"]
    for root in extras:
        if os.path.realpath(root) in seen:
            continue
        seen.add(os.path.realpath(root))
        problem = root_problem(root)
        if problem:
            problems.append(f"runs root {root} ([runs] roots in {settings_path()}): {problem}; skipped")
        else:
            roots.append(root)
    return roots, problems


def run_dirs(root: Path) -> list[Path]:
    """Directories under a runs root that look like runs (a meta.json, train.log or metrics.jsonl:
    a run whose meta.json is lost is still listed, as damaged). Names starting with '.' never are.
    A symlink in the root is followed one step to a directory; a loop or a dangling link is not a run."""
    try:
        with os.scandir(root) as it:
            found = list(it)
    except (OSError, ValueError):
        return []
    out = []
    for e in found:
        if e.name.startswith("."):
            continue
        try:
            if e.is_dir() and any(os.path.lexists(os.path.join(e.path, f)) for f in RUN_FILES):
                out.append(Path(e.path))
        except OSError:
            continue
    return out


def is_root(path: Path, roots) -> bool:
    real = os.path.realpath(path)
    return any(real == os.path.realpath(r) for r in roots)


def in_a_root(run_dir: Path, roots) -> bool:
    """Whether run_dir is a direct child of one of the roots (the path as given, not its target)."""
    parent = os.path.realpath(Path(run_dir).absolute().parent)
    return any(parent == os.path.realpath(r) for r in roots)


def find_run(roots, arg: str) -> Path:
    """A run given as an id under one of the runs roots, as a run directory's path, or as a run
    name (`smoke` for smoke-20261128-135507, the id `new_run_dir` makes) that one run has.
    RunError when none has it, or when several do: two roots may hold the same id, and a bare id
    may also name a run directory in the current directory (then its path says which)."""
    roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
    p = Path(arg)
    as_path = arg not in ("", ".", "..") and (looks_like_run(p) or "config.toml" in (entries(p, follow=True) or []))
    bare = arg.rstrip("/")
    shown = printable(bare if len(bare) <= 200 else bare[:200] + "...")
    if "/" not in bare and bare not in ("", ".", ".."):  # an id names no parent
        named = re.compile(re.escape(bare) + r"-\d{8}-\d{6}(?:-\d+)?")
        for several, pick in (("in {} runs roots", lambda root: [root / bare] if looks_like_run(root / bare) else []),
                              ("{} runs match", lambda root: [d for d in run_dirs(root) if named.fullmatch(d.name)])):
            found = _runs_in(roots, pick)
            if as_path and found and os.path.realpath(p) not in {os.path.realpath(d) for d in found}:
                raise RunError(f"run {shown!r}: both ./{shown} and a run in the runs roots ({printable(str(found[0]))}); "
                               "give the path of the one you mean")
            if len(found) == 1:
                return found[0]
            if found:
                where = ", ".join(printable(str(d if len(roots) > 1 else d.name)) for d in found[:6])
                more = ", ..." if len(found) > 6 else ""
                raise RunError(f"run {shown!r}: {several.format(len(found))} ({where}{more}); give the id"
                               f"{' or the path' if len(roots) > 1 else ''} of the one you mean")
    if as_path:
        return p
    raise RunError(f"run {shown!r}: not a run directory, and no run {shown!r} in the runs "
                   f"root{'s' if len(roots) > 1 else ''} ({', '.join(printable(str(r)) for r in roots)})")


def _runs_in(roots: list[Path], pick) -> list[Path]:
    """The run directories pick(root) gives in each root, each once (two roots may be one)."""
    found = {}
    for root in roots:
        try:
            for d in pick(root):
                found.setdefault(os.path.realpath(d), d)
        except (OSError, ValueError):  # an unreadable root holds nothing we can use
            pass
    return list(found.values())


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Names for runs side by side: the id, or `<root name>/<id>` where two runs share an id."""
    names = [printable(Path(d).name) for d in run_dirs]
    out = [n if names.count(n) == 1 else f"{printable(Path(d).parent.name)}/{n}" for d, n in zip(run_dirs, names)]
    return [o if out.count(o) == 1 else f"{o}#{i + 1}" for i, o in enumerate(out)]


# ---------------------------------------------------------------------------- checkpoints

def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first: step_*.pt files (one process or DDP), step_*.dcp
    directories (sharded) and step_*.mdl files (cstorch.save, the Cerebras backend). Temp names of
    an interrupted write start with '.' and are never checkpoints; nor is anything else."""
    names = entries(Path(run_dir) / "checkpoints", follow=True) or []
    found = [(int(m.group(1)), n) for n in names if (m := CHECKPOINT.match(n))]
    return [Path(run_dir) / "checkpoints" / n for _, n in sorted(found)]


def checkpoint_step(path: Path) -> int | None:
    m = CHECKPOINT.match(Path(path).name)
    return int(m.group(1)) if m else None


def remove_stale_temps(run_dir: Path) -> list[str]:
    """Delete what an interrupted atomic write left (`.step_....pt.tmp-PID`, `.step_....dcp.tmp/`,
    `.meta.json.tmp-PID`, ...). Only the lock holder calls this: no writer is alive to own them."""
    removed = []
    for where in (Path(run_dir), Path(run_dir) / "checkpoints"):
        for name in entries(where) or []:
            if STALE_TEMP.fullmatch(name):
                path = where / name
                try:
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path)
                    else:
                        path.unlink()
                    removed.append(str(path.relative_to(run_dir)))
                except OSError:
                    pass
    return removed
