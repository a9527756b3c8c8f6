"""What a user does to a run that is not training it: rename, tag, delete, stop.

Each edit takes the run's lock for its duration (docs/run-format.md, "Ownership"), so it is
refused while a trainer holds it and no trainer can start in the middle of it.
"""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from gigagpt.store import layout
from gigagpt.store.files import RunError, os_reason, write_json
from gigagpt.store.lock import HOST, RunLock, holder_pid, is_locked, liveness, pid_alive
from gigagpt.store.meta import NAME_MAX, TAG, printable, read_meta
from gigagpt.store.summary import run_status


def _edit_meta(run_dir: Path, verb: str, change) -> dict:
    """Apply change(raw meta dict) and write meta.json, holding the run's lock."""
    meta = read_meta(run_dir)
    if meta.status == "running" and liveness(run_dir, meta.host, meta.pid, meta.heartbeat) == "running":
        raise RunError(f"run {run_dir.name}: running; {verb} it after it stops")
    try:
        lock = RunLock(run_dir).acquire(verb, wait=0.5)
    except OSError as e:
        raise RunError(f"run {run_dir.name}: cannot {verb} it ({os_reason(e)})") from None
    with lock:
        raw = dict(read_meta(run_dir).raw)
        change(raw)
        try:
            write_json(run_dir / "meta.json", raw)
        except OSError as e:
            raise RunError(f"run {run_dir.name}: meta.json not written ({os_reason(e)})") from None
    return raw


def clean_name(name: str) -> str:
    name = printable(name).strip()
    if not name or len(name) > NAME_MAX:
        raise RunError(f"name {name!r}: must be 1-{NAME_MAX} printable characters")
    return name


def rename(run_dir: Path, name: str) -> dict:
    name = clean_name(name)
    return _edit_meta(Path(run_dir), "rename", lambda raw: raw.update(name=name))


def check_tags(tags) -> list[str]:
    for tag in tags:
        if not isinstance(tag, str) or not TAG.fullmatch(tag):
            shown = printable(tag)[:80]
            raise RunError(f"tag {shown!r}: use letters, digits and . _ + : = / - (no spaces), at most 64")
    return list(dict.fromkeys(tags))


def set_tags(run_dir: Path, add=(), remove=(), replace: list[str] | None = None) -> dict:
    """Add and remove tags (or replace them all); returns the new meta."""
    add, remove = check_tags(add), list(remove)
    replace = check_tags(replace) if replace is not None else None

    def change(raw):
        tags = replace if replace is not None else list(raw.get("tags") or [])
        raw["tags"] = [t for t in tags if t not in remove] + [t for t in add if t not in tags]

    return _edit_meta(Path(run_dir), "tag", change)


def check_deletable(run_dir: Path, roots) -> None:
    """RunError unless run_dir is a run the store recognises: a directory inside a runs root that
    looks like a run (docs/run-format.md), or one elsewhere whose meta.json names it (its id is the
    directory's name). Never a runs root or what holds one, `.`, `..`, the current directory or
    what holds it, or a symlink (its target is not ours)."""
    p = Path(run_dir)
    shown = printable(str(run_dir))
    if str(run_dir) in (".", "..") or p.name in ("", ".", ".."):
        raise RunError(f"{shown}: name a run directory, not {shown!r}")
    if os.path.islink(p):
        raise RunError(f"{shown}: a symlink; delete the link itself, or the run by its own path")
    if not os.path.isdir(p):
        raise RunError(f"{shown}: not a directory")
    real = os.path.realpath(p)
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = None
    for other in [*map(str, roots), *([cwd] if cwd else [])]:
        inside = os.path.realpath(other)
        if inside == real or inside.startswith(real.rstrip(os.sep) + os.sep):
            what = "the current directory" if other == cwd else f"the runs root {printable(other)}"
            raise RunError(f"{shown}: holds {what}; not deleted")
    if layout.in_a_root(p, roots) and layout.looks_like_run(p):
        return
    try:
        meta = read_meta(p)
    except RunError as e:
        raise RunError(f"{shown}: not a run of a runs root, and {e}; not deleted") from None
    if meta.id != p.name:
        raise RunError(f"{shown}: not in a runs root, and its meta.json names run "
                       f"{printable(meta.id or '')[:80]!r}, not this directory; not deleted")


TOMBSTONE = ".deleting-"  # .<id>.deleting-<pid>: a run being deleted (hidden: no listing shows it)


def interrupted_deletions(root: Path) -> list[Path]:
    """Tombstones whose deleter is gone: a deletion killed part way leaves one behind."""
    found = []
    for name in layout.entries(Path(root)) or []:
        head, sep, pid = name.rpartition(TOMBSTONE)
        if sep and head.startswith(".") and pid.isdigit() and not pid_alive(int(pid)):
            found.append(Path(root) / name)
    return found


def delete(run_dir: Path, roots) -> None:
    """Remove a run directory the store recognises (check_deletable), never one in use. Under the
    run's lock it is first renamed to a hidden tombstone, so no trainer can take the lock of a
    half-deleted run, and a deletion that fails part way leaves no run behind."""
    run_dir = Path(run_dir)
    check_deletable(run_dir, roots)
    if run_status(run_dir) == "running":
        raise RunError(f"run {printable(run_dir.name)}: running; stop it first "
                       f"(gigagpt runs stop {printable(run_dir.name)})")
    with RunLock(run_dir).acquire("delete", wait=0.5):
        tomb = run_dir.with_name(f".{run_dir.name}{TOMBSTONE}{os.getpid()}")
        try:
            os.rename(run_dir, tomb)
        except OSError as e:
            raise RunError(f"run {printable(run_dir.name)}: not deleted ({os_reason(e)})") from None
    try:
        shutil.rmtree(tomb)
    except OSError as e:
        raise RunError(f"run {printable(run_dir.name)}: removed from the runs, but {printable(str(tomb))} "
                       f"is left in part ({os_reason(e)})") from None


def running_pid(run_dir: Path) -> int:
    """The pid of a run's live trainer on this host, or RunError saying why there is none."""
    meta = read_meta(run_dir)
    status = meta.status if meta.status != "running" else liveness(run_dir, meta.host, meta.pid, meta.heartbeat)
    if status != "running":
        raise RunError(f"run {run_dir.name}: not running ({status})"
                       + ("; `gigagpt queue cancel` keeps it from starting" if status == "queued" else ""))
    if meta.host != HOST:
        raise RunError(f"run {run_dir.name}: runs on {printable(meta.host or '?')}; stop it there")
    holder = holder_pid(run_dir) if is_locked(run_dir) else None
    pid = holder or meta.pid
    if pid is None:
        raise RunError(f"run {run_dir.name}: meta.json names no trainer pid")
    return pid


def send_signal(pid: int, sig: signal.Signals) -> None:
    """SIGTERM goes to the trainer alone (it checkpoints and exits); SIGKILL to its whole process
    group when it leads one (a detached launch), so compile workers die with it."""
    try:
        if sig == signal.SIGKILL and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
