"""Queued runs (docs/run-format.md, "Queued runs"): run directories whose meta.json says `queued`,
with their config.toml and nothing trained yet. The queue runner (gigagpt/runner.py) starts them
in `queue_order` with `gigagpt resume`; cancel and move hold the run's lock, and the trainer
checks the status again under that lock, so a run cancelled at any moment never starts."""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from gigagpt.store.files import (
    RunError,
    ends_with_newline,
    jsonl_line,
    open_append,
    os_reason,
    read_regular,
    write_json,
    write_text,
)
from gigagpt.store.layout import new_run_dir, run_dirs
from gigagpt.store.lock import RunLock, file_locked, pid_alive
from gigagpt.store.meta import Meta, read_meta

RUNNER_LOCK, RUNNER_STATE, RUNNER_LOG = ".queue-runner.lock", ".queue-runner.json", ".queue-runner.log"


def enqueue(root: Path, name: str, config_text: str, preset: str, command: list[str], max_steps: int,
            display: str | None = None, sweep: dict | None = None) -> Path:
    """A new queued run under root: config.toml first, then meta.json (what makes it a run)."""
    run_dir = new_run_dir(root, name)
    now = time.time()
    meta = {"id": run_dir.name, "name": display or run_dir.name, "preset": preset, "status": "queued",
            "created": now, "updated": now, "step": 0, "max_steps": max_steps, "command": command,
            "queue_order": now}
    if sweep:
        meta.update(sweep=sweep, tags=[f"sweep:{sweep['id']}"])
    try:
        write_text(run_dir / "config.toml", config_text)
        write_json(run_dir / "meta.json", meta)
    except OSError as e:
        raise RunError(f"run {run_dir}: not queued ({os_reason(e)})") from None
    return run_dir


def queued_runs(root: Path) -> list[tuple[Path, Meta]]:
    """The queued runs of a root, first to start first. Damaged runs are not queued runs."""
    out = []
    for run_dir in run_dirs(root):
        if os.path.islink(run_dir):  # a link to a run is that run again, not another queued one
            continue
        try:
            meta = read_meta(run_dir)
        except RunError:
            continue
        if meta.status == "queued":
            out.append((run_dir, meta))
    return sorted(out, key=lambda rm: (order_of(rm[1]), rm[0].name))


def order_of(meta: Meta) -> float:
    return meta.queue_order if meta.queue_order is not None else meta.created or 0.0


def _edit_queued(run_dir: Path, verb: str, change) -> None:
    """change(raw meta) for a run that is still queued, holding its lock (a trainer starting it
    holds the same lock: one of the two goes first, and the other sees what it did)."""
    try:
        with RunLock(run_dir).acquire(verb, wait=1.0):
            meta = read_meta(run_dir)
            if meta.status != "queued":
                raise RunError(f"run {run_dir.name}: {meta.status}, not queued; nothing to {verb}")
            raw = dict(meta.raw)
            change(raw)
            write_json(run_dir / "meta.json", {**raw, "updated": time.time()})
    except OSError as e:
        raise RunError(f"run {run_dir.name}: cannot {verb} it ({os_reason(e)})") from None


def cancel(run_dir: Path) -> None:
    _edit_queued(Path(run_dir), "cancel", lambda raw: raw.update(status="cancelled"))


def did_not_start(run_dir: Path, reason: str) -> None:
    """A queued run its trainer refused to start (a config or data error): failed, with why."""
    _edit_queued(Path(run_dir), "fail", lambda raw: raw.update(status="failed", failure=reason))


def move(run_dir: Path, position: int) -> int:
    """Put a queued run at `position` (1 = next to start) among its root's queued runs; returns
    the position it got (the last one at most). The queue is renumbered 1..n, each run under its
    own lock, so orders never run out of room between two neighbours."""
    run_dir = Path(run_dir)
    queued = [p for p, _ in queued_runs(run_dir.parent)]
    if run_dir.name not in [p.name for p in queued]:
        _edit_queued(run_dir, "move", lambda raw: None)  # raises: says what the run is instead
    others = [p for p in queued if p.name != run_dir.name]
    position = max(1, min(position, len(others) + 1))
    order = others[:position - 1] + [run_dir] + others[position - 1:]
    for i, p in enumerate(order, 1):
        try:
            _edit_queued(p, "move", lambda raw, i=i: raw.update(queue_order=float(i)))
        except RunError:
            if p.name == run_dir.name:
                raise
            # another run started or was cancelled meanwhile: it has left the queue
    return position


def record_event(run_dir: Path, event: dict) -> None:
    """Append an event line to a run no trainer is running (the runner's `retry`), under its lock."""
    path = Path(run_dir) / "metrics.jsonl"
    with RunLock(run_dir).acquire("record an event in", wait=2.0):
        try:
            torn = path.exists() and not ends_with_newline(path)  # a killed trainer's half-written last line
            with open_append(path) as f:
                f.write((("\n" if torn else "") + jsonl_line(event)).encode())
        except OSError as e:
            raise RunError(f"run {Path(run_dir).name}: metrics.jsonl not written ({os_reason(e)})") from None


# ---------------------------------------------------------------------------- the runner's lock and state

class RunnerLock:
    """One queue runner per runs root: a flock on `<root>/.queue-runner.lock`, held for its life."""

    def __init__(self, root: Path):
        self.path = Path(root) / RUNNER_LOCK
        self.fd: int | None = None

    def acquire(self) -> RunnerLock:
        try:
            Path(self.path.parent).mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise RunError(f"runs root {self.path.parent}: cannot open {RUNNER_LOCK} ({os_reason(e)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            state = runner_state(self.path.parent)
            who = f" (pid {state['pid']})" if state and state.get("pid") else ""
            raise RunError(f"runs root {self.path.parent}: a queue runner is already running{who}; "
                           "it picks up runs queued after it started") from None
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def still_linked(self) -> bool:
        """Whether the locked file is still the root's lock file (not removed with its root)."""
        try:
            a, b = os.fstat(self.fd), os.stat(self.path, follow_symlinks=False)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def runner_running(root: Path) -> bool:
    """Whether a queue runner holds this root's lock."""
    return file_locked(Path(root) / RUNNER_LOCK) is True


def write_runner_state(root: Path, state: dict) -> None:
    write_json(Path(root) / RUNNER_STATE, {**state, "host": socket.gethostname(), "updated": time.time()})


def runner_state(root: Path) -> dict | None:
    """The live runner's state ({pid, slots, devices, running: [ids], follow, ...}), or None when no
    runner holds the root (a state file left by a dead one says nothing)."""
    if not runner_running(root):
        return None
    try:
        state = json.loads(read_regular(Path(root) / RUNNER_STATE, 1 << 20))
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict):
        return {}
    pid = state.get("pid")
    if state.get("host") == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid):
        return {}
    return state
