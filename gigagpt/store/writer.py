"""A trainer's side of the run directory: own it, keep meta.json fresh, append metrics, finish.

Both trainers (gigagpt/train.py, gigagpt/cerebras.py) write a run only through this; no torch here.
A trainer first `claim`s the directory (the lock, held until the process exits, and the checks that
refuse a run that is not its to write), decides where it starts, then `start`s writing. A write
that fails (a full disk, an I/O error) raises WriteFailed, one line naming the file: the trainer
ends the run `failed` with it, and `finish` still records that wherever the disk lets it.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from gigagpt.config import ConfigError
from gigagpt.store.checkpoints import set_aside
from gigagpt.store.failed import WriteFailed, writing
from gigagpt.store.files import RunError, ends_with_newline, jsonl_line, open_append, os_reason, write_json, write_text
from gigagpt.store.layout import check_new_run_dir, checkpoint_step, remove_stale_temps
from gigagpt.store.lock import HEARTBEAT_SECONDS, RunLock, is_locked, liveness
from gigagpt.store.meta import printable, read_meta

# Freed when the run ends, so that its last status fits on a disk that something else filled up.
RESERVE, RESERVE_BYTES = ".reserve.tmp", 256 << 10


class Tee:
    """What the trainer prints, to its terminal (or pipe) and to train.log when that is not the
    terminal already. A failed write to either (a full disk, a reader gone) is not a crash."""

    def __init__(self, stream, log):
        self.stream, self.log = stream, log

    def write(self, s):
        for out in (self.stream, self.log):
            if out is not None:
                try:
                    out.write(s if out is self.stream else s.encode("utf-8", "replace"))
                    out.flush()
                except (OSError, ValueError):
                    pass
        return len(s)

    def flush(self):
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def isatty(self):
        return self.stream.isatty()

    def fileno(self):
        return self.stream.fileno()


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), path.stat()
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    except OSError:
        return False


def check_not_running(run_dir: Path, what: str = "resume") -> None:
    """Refuse (RunError) a run whose trainer is alive: its lock is held (or, for a run without a
    lock file, its pid lives). The trainer's own claim is the race-free check; this one answers
    before a launcher starts processes."""
    if is_locked(run_dir):
        RunLock(run_dir).acquire(what).release()  # the lock's own message names the holder
    try:
        meta = read_meta(run_dir)
    except RunError:
        return
    if meta.status == "running" and liveness(run_dir, meta.host, meta.pid, meta.heartbeat) == "running":
        raise RunError(f"run {run_dir.name}: still running (pid {meta.pid} on {printable(meta.host or '?')}); "
                       f"{what} it after that stops")


class RunWriter:
    """The one writer of a run directory (docs/run-format.md). Under torchrun only rank 0 has a
    real one; the other ranks get `RunWriter.silent()`, which writes nothing."""

    def __init__(self, run_dir: Path, active: bool = True):
        self.run_dir, self.active = Path(run_dir), active
        self.lock = RunLock(self.run_dir)
        self.old: dict = {}  # the meta.json a resumed run had
        self.meta: dict = {"step": 0}
        self._meta_lock, self._stop = threading.Lock(), threading.Event()
        self._metrics = None
        self._torn = False  # a failed append left part of a line: the next one starts a new line
        self._beat_error: str | None = None
        self.started = False

    @classmethod
    def silent(cls, run_dir: Path) -> RunWriter:
        return cls(run_dir, active=False)

    @classmethod
    def claim(cls, run_dir: Path, new: bool) -> RunWriter:
        """Own `run_dir` before anything is written (RunError, nothing touched, when it is not ours):
        take its lock, then check under it that a new run's directory is empty (or holds only what
        a launcher puts there first), or that a resumed one is a run."""
        run_dir = Path(run_dir)
        if new:
            check_new_run_dir(run_dir)
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise RunError(f"--run-dir {run_dir}: cannot create it ({os_reason(e)})") from None
        writer = cls(run_dir)
        writer.lock.acquire("train in" if new else "resume")
        try:
            if new:
                check_new_run_dir(run_dir)  # again: another trainer may have started in it first
            else:
                meta = read_meta(run_dir)
                if meta.status == "cancelled":  # checked under the lock `gigagpt queue cancel` takes
                    raise RunError(f"run {run_dir.name}: cancelled before it started; nothing to resume")
                writer.old = dict(meta.raw)
        except RunError as e:
            writer.lock.release()
            raise RunError(f"run {run_dir}: {e}" if str(e).startswith("meta.json") else str(e)) from None
        return writer

    # ------------------------------------------------------------------------ starting

    def start(self, config_text: str, preset: str, argv, step: int = 0, **fields) -> None:
        """Begin writing: our output into train.log, stale temp files removed, config.toml,
        meta.json saying `running` (kept fresh by a heartbeat thread), metrics.jsonl opened."""
        old = self.old
        self.meta = {
            **old, "id": self.run_dir.name, "name": old.get("name") or self.run_dir.name,
            "preset": old.get("preset") or preset, "status": "running", "failure": None, "pid": os.getpid(),
            "host": socket.gethostname(), "world_size": 1, "command": list(argv or sys.argv),
            "created": old.get("created") or time.time(), "step": step, **fields,
            **({"created": time.time(), "queued_at": old.get("created")} if old.get("status") == "queued" else {}),
        }
        self.started = True
        if not self.active:
            return
        self._tee()
        removed = [r for r in remove_stale_temps(self.run_dir) if r != RESERVE]
        if removed:
            print(f"removed temp files an interrupted write left: {', '.join(removed)}", flush=True)
        with writing("config.toml"):
            write_text(self.run_dir / "config.toml", config_text)
        self.update()
        self._reserve()
        threading.Thread(target=self._beat, name="heartbeat", daemon=True).start()
        path = self.run_dir / "metrics.jsonl"
        with writing("metrics.jsonl"):  # a symlink, a FIFO, a directory: WriteFailed, nothing written
            self._metrics = open_append(path).detach()  # unbuffered: one write(2) a line
            self._torn = os.fstat(self._metrics.fileno()).st_size > 0 and not ends_with_newline(path)

    def _tee(self) -> None:
        log_path = self.run_dir / "train.log"
        try:
            log = open_append(log_path)  # never blocks on a FIFO nor follows a symlink
        except OSError as e:
            print(f"train.log: cannot open it ({os_reason(e)}); output goes to the terminal only", flush=True)
            log = None
        sys.stdout = Tee(sys.stdout, None if _same_file(1, log_path) else log)
        sys.stderr = Tee(sys.stderr, None if _same_file(2, log_path) else log)

    def _reserve(self) -> None:
        try:
            with open(self.run_dir / RESERVE, "wb") as f:
                f.write(b"\0" * RESERVE_BYTES)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            self._free_reserve()  # a disk already this full: the run will say so itself

    def _free_reserve(self) -> None:
        try:
            os.unlink(self.run_dir / RESERVE)
        except OSError:
            pass

    # ------------------------------------------------------------------------ while training

    def update(self, **fields) -> None:
        """Rewrite meta.json (atomically) with these fields; WriteFailed if it cannot be written."""
        with self._meta_lock:
            now = time.time()
            self.meta.update(fields, updated=now, heartbeat=now)
            if self.active:
                with writing("meta.json"):
                    write_json(self.run_dir / "meta.json", self.meta)

    def _beat(self) -> None:
        """The heartbeat: a failed write is said once in train.log and retried; it never stops the
        thread (a dead heartbeat would make a live run on another host look crashed)."""
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self.update()
            except Exception as e:  # noqa: BLE001 - the heartbeat must outlive any error
                if self._beat_error is None:
                    print(f"heartbeat: {e}; retrying every {HEARTBEAT_SECONDS} s", file=sys.stderr, flush=True)
                self._beat_error = str(e)
            else:
                if self._beat_error is not None:
                    print("heartbeat: meta.json written again", file=sys.stderr, flush=True)
                self._beat_error = None

    def append(self, record: dict) -> None:
        """One metrics.jsonl line (a `time` is added when missing); WriteFailed if it cannot be."""
        if not self.active:
            return
        data = jsonl_line({**record, "time": record.get("time", time.time())}).encode()
        if self._torn:
            data = b"\n" + data  # a crash or a full disk tore the last line: it stays a line of its own
        done = 0
        try:
            while done < len(data):
                done += self._metrics.write(data[done:])
        except OSError as e:
            self._torn = self._torn if done == 0 else True
            raise WriteFailed("metrics.jsonl", e) from None
        self._torn = False

    def event(self, event: str, step: int, **fields) -> None:
        self.append({"kind": "event", "event": event, "step": step, **fields})

    def set_aside(self, skipped: list[tuple[Path, str]], step: int) -> None:
        """Checkpoints a resume could not load, renamed out of the way (store.checkpoints.set_aside),
        each said in train.log and as a `checkpoint_skipped` event."""
        if not self.active:
            return
        for (path, reason), moved in zip(skipped, set_aside([p for p, _ in skipped])):
            rel = lambda p: str(p.relative_to(self.run_dir))  # noqa: E731
            print(f"skipped {rel(path)}: {reason}; moved to {rel(moved)}", flush=True)
            self.event("checkpoint_skipped", step, path=rel(path), checkpoint_step=checkpoint_step(path),
                       reason=reason, moved_to=rel(moved))

    # ------------------------------------------------------------------------ the end

    def run(self, body, start) -> tuple[str, str | None]:
        """Run the trainer's `body()` -> (status, reason) and say how it ended: a RunError or
        ConfigError before `start` (nothing written yet) is raised for the command line's one line;
        any later error makes the run `failed` with one line of reason (a traceback in train.log
        only for a crash that is not a failed write). `start(step)` is called if body never did."""
        try:
            status, reason = body()
        except (RunError, ConfigError) as e:
            if not self.started:
                raise
            status, reason = "failed", str(e)
        except WriteFailed as e:  # a full disk, an I/O error: the OS's reason is the whole story
            status, reason = "failed", str(e)
        except Exception as e:  # noqa: BLE001 - any crash becomes a 'failed' run with its reason
            traceback.print_exc()
            lines = str(e).strip().splitlines()
            status, reason = "failed", f"{type(e).__name__}: {lines[0] if lines else ''}"
        if not self.started:
            try:
                step = self.old.get("step")
                start(step if isinstance(step, int) else 0)
            except WriteFailed:
                pass  # finish tries meta.json again
        return status, reason

    def finish(self, status: str, reason: str | None = None, announce: bool = True) -> int:
        """Record how the run ended: its last event line and meta.json's status, each written if
        the disk lets it (the reserve is freed first). Returns the exit code."""
        self._stop.set()
        if self.active:
            self._free_reserve()
            problems = []
            if self._metrics is not None:
                try:
                    self.event(status, self.meta.get("step", 0), **({"reason": reason} if reason else {}))
                except WriteFailed as e:
                    problems.append(str(e))
            try:
                self.update(status=status, failure=reason)
            except WriteFailed as e:
                problems.append(str(e))
            if announce:
                print(f"run {self.run_dir.name}: {status}" + (f" ({reason})" if reason else ""), flush=True)
                for p in problems:
                    print(f"run {self.run_dir.name}: could not record that: {p}", flush=True)
        return 1 if status == "failed" else 0
