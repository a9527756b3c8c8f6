"""Following a run as it is written: meta.json, metrics.jsonl and train.log, read incrementally
through the run store (gigagpt.store: tail's byte cursors and columns, meta's checked record,
lock's liveness). No Textual and no torch here, so the tests and bench/dash.py drive it directly.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path

import psutil

from gigagpt.store.files import RunError
from gigagpt.store.lock import HOST, STALE_AFTER, liveness
from gigagpt.store.meta import Meta, printable, read_meta
from gigagpt.store.metrics import parse_lines
from gigagpt.store.tail import Cursor, Series

TAIL_FIRST_BYTES = 4 << 20  # a bigger metrics.jsonl shows its last 4 MiB at once, the rest loads behind
HISTORY_CHUNK_BYTES = 1 << 20  # the history loader holds the GIL for one chunk's json.loads at a time
LOG_FIRST_BYTES = 256 << 10  # a long train.log is shown from its last 256 KiB
LOG_KEEP_LINES = 2000


class RunTail:
    """A run directory being followed: meta.json, metrics.jsonl and train.log, read incrementally.

    `poll()` (any one thread at a time) reads what is new; `load_history()` (another thread) reads
    the part of a long metrics.jsonl that the first poll skipped. Readers take `lock` while they
    copy what they draw.
    """

    def __init__(self, run_dir: Path, key: str | None = None):
        self.dir = Path(run_dir)
        self.id = self.dir.name
        self.label = printable(self.id) or "?"  # what the screen shows: a name may hold escapes
        self.key = key or self.id  # the dashboard's name for it: ids may repeat across runs roots
        self.lock = threading.Lock()
        self.series = Series()
        self.generation = 0  # bumped whenever rows were replaced, not just appended
        self.meta: Meta | None = None  # the checked meta.json, or None with meta_error saying why
        self.meta_error: str | None = None
        self.history_end = 0  # bytes of metrics.jsonl before this still to load (load_history)
        self.history_done = 0
        self.history_loading = False  # set by whoever runs load_history
        self.log_lines: deque[str] = deque(maxlen=LOG_KEEP_LINES)
        self.log_seq = 0  # lines ever added to log_lines; a reader compares it with what it showed
        self.log_generation = 0
        self.system_ram: list[tuple[float, float]] = []  # (time, bytes used) sampled while running
        self._metrics = Cursor(self.dir / "metrics.jsonl")
        self._log = Cursor(self.dir / "train.log")
        self._reading = threading.Lock()  # one poll() at a time: the cursors are not shared

    def field(self, name: str, default=None):
        """A meta.json field (checked by the store), or `default` when it is absent or unreadable."""
        value = getattr(self.meta, name, None) if self.meta is not None else None
        return default if value is None else value

    def step(self) -> int:
        """Steps done: meta.json's, else the last train line's (as a run's summary says it)."""
        step = self.field("step")
        if step is None:
            last = self.series.last("step")
            step = int(last) if last is not None else 0
        return step

    # -- status

    def status(self, process_alive: bool | None = None) -> str:
        """meta.json's status; `crashed` for a running run whose trainer is gone (its lock on this
        host, its heartbeat elsewhere); `damaged` for an unreadable meta.json.

        `process_alive` is the launcher's knowledge of its own child, for the seconds before the
        trainer writes meta.json (`starting`) or when it died before (`not started`).
        """
        meta = self.meta
        if meta is None:
            if process_alive:
                return "starting"
            if process_alive is False and self.meta_error == "meta.json: missing":
                return "not started"
            return "damaged"
        if meta.status != "running":
            return meta.status
        return liveness(self.dir, meta.host, meta.pid, meta.heartbeat)

    def failure(self, status: str) -> str | None:
        """One line saying why the run ended badly or cannot be read, or None."""
        if status == "failed":
            reason = self.field("failure") or (self.series.event("failed") or {}).get("reason")
            return printable(reason) if isinstance(reason, str) and reason else "failed"
        if status == "crashed":
            host = self.field("host")
            if host != HOST:
                return f"no heartbeat from {printable(host or '?')} for over {STALE_AFTER} s"
            return f"trainer process {self.field('pid', '?')} is gone without writing a final status (killed?)"
        if status == "not started":
            return "the trainer exited before writing meta.json; see its log"
        if status == "damaged":
            return printable(self.meta_error or "meta.json: unreadable")
        return None

    def eta_seconds(self) -> float | None:
        """From the rate over the last 20 logged steps."""
        steps, times = self.series.train.col("step"), self.series.train.col("time")
        max_steps = self.field("max_steps")
        if len(steps) < 2 or not max_steps:
            return None
        k = max(0, len(steps) - 20)
        dt, ds = times[-1] - times[k], steps[-1] - steps[k]
        if not dt > 0 or not ds > 0:  # also when a time is missing (NaN)
            return None
        return max(0.0, (max_steps - steps[-1]) * dt / ds)

    def elapsed_seconds(self, status: str) -> float | None:
        created = self.field("created")
        if not created:
            return None
        end = time.time() if status == "running" else self.field("updated") or time.time()
        return max(0.0, end - created)

    # -- reading

    def poll(self) -> bool:
        """Read what is new in meta.json, metrics.jsonl and train.log. True when anything changed."""
        with self._reading:
            changed = self.poll_meta()
            changed |= self._poll_metrics()
            changed |= self._poll_log()
        if self.meta is not None and self.meta.status == "running":
            self.system_ram.append((time.time(), float(psutil.virtual_memory().used)))
        return changed

    def poll_meta(self) -> bool:
        """Read meta.json again (a checked record, ~1 KB); True when it changed."""
        try:
            meta, error = read_meta(self.dir), None
        except RunError as e:
            meta, error = None, str(e)
        old = (self.meta.raw if self.meta is not None else None, self.meta_error)
        if (meta.raw if meta is not None else None, error) == old:
            return False
        with self.lock:
            self.meta, self.meta_error = meta, error
        return True

    def _poll_metrics(self) -> bool:
        cursor = self._metrics
        if cursor.offset == 0 and cursor.inode is None and cursor.size() > TAIL_FIRST_BYTES:
            # First look at a long file: show its end now, let load_history() fill in the rest.
            cursor.skip_to_line_after(cursor.size() - TAIL_FIRST_BYTES)
            with self.lock:
                self.history_end, self.history_done = cursor.offset, 0
        data, reset = cursor.read()
        if reset:
            with self.lock:
                self.series, self.history_end = Series(), 0
                self.generation += 1
        if not data:
            return reset
        records, bad = parse_lines(data)
        with self.lock:
            resumes = len(self.series.resume_steps)
            self.series.bad_lines += bad
            self.series.apply(records)
            if len(self.series.resume_steps) != resumes:
                self.generation += 1  # rows were cut, not just appended
        return True

    def load_history(self) -> bool:
        """Read metrics.jsonl up to where the first poll started, and put it in front."""
        end, head = self.history_end, Series()
        if not end:
            return False
        inode = self._metrics.inode
        cursor = Cursor(self._metrics.path, 0, inode)  # a new inode or a shorter file: reset
        while cursor.offset < end:
            data, reset = cursor.read(limit=min(HISTORY_CHUNK_BYTES, end - cursor.offset))
            if reset or not data:
                return False  # replaced or cut meanwhile: poll() starts over from 0 anyway
            records, bad = parse_lines(data)
            head.bad_lines += bad
            head.apply(records)
            self.history_done = min(cursor.offset, end)
        with self.lock:
            if self._metrics.inode != inode or self.history_end != end:
                return False
            self.series = head.then(self.series)
            self.history_end = 0
            self.generation += 1
        return True

    def _poll_log(self) -> bool:
        cursor = self._log
        if cursor.offset == 0 and cursor.inode is None and cursor.size() > LOG_FIRST_BYTES:
            cursor.skip_to_line_after(cursor.size() - LOG_FIRST_BYTES)
        data, reset = cursor.read()
        if not data and not reset:
            return False
        # A log holds whatever the trainer's libraries printed: escapes would garble the screen.
        lines = [printable(line.expandtabs()) for line in data.decode("utf-8", errors="replace").splitlines()]
        with self.lock:
            if reset:
                self.log_lines.clear()
                self.log_generation += 1
            self.log_lines.extend(lines)
            self.log_seq += len(lines)
        return True
