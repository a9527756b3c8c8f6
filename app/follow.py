"""Following run directories: incremental reading of metrics.jsonl and train.log, and chart math.

No Textual and no torch here, so the tests and bench/dash.py drive it directly. The format is
docs/run-format.md; the rules it follows are toolong's: keep byte offsets, read only new bytes,
leave a torn last line for the next read, start over when a file is truncated or replaced.
"""
from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import psutil

from gigagpt import rundir
from gigagpt.rundir import Cursor, parse_lines  # the one reader, shared with `gigagpt runs`

TRAIN_COLUMNS = ("step", "tokens", "time", "loss", "lr", "tok_s", "mfu", "rss", "mem_alloc", "mem_peak")
EVAL_COLUMNS = ("step", "val_loss")
TAIL_FIRST_BYTES = 4 << 20  # a bigger metrics.jsonl shows its last 4 MiB at once, the rest loads behind
HISTORY_CHUNK_BYTES = 1 << 20  # the history loader holds the GIL for one chunk's json.loads at a time
LOG_FIRST_BYTES = 256 << 10  # a long train.log is shown from its last 256 KiB
LOG_KEEP_LINES = 2000


# ---------------------------------------------------------------------------- series

def _floats(values: list) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64)  # None becomes NaN
    except (TypeError, ValueError):  # a string or a list where a number belongs
        return np.array([v if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
                         for v in values], dtype=np.float64)


class Columns:
    """Growable float64 columns, NaN where a value is missing; `col(name)` is a view, no copy.

    Growing allocates new arrays, so a view handed out earlier stays valid (and unchanged).
    """

    def __init__(self, names: tuple[str, ...]):
        self.names, self.n = names, 0
        self._data = {k: np.empty(0) for k in names}

    def __len__(self) -> int:
        return self.n

    def col(self, name: str) -> np.ndarray:
        return self._data[name][:self.n]

    def extend(self, rows: list[dict]) -> None:
        if not rows:
            return
        need = self.n + len(rows)
        for name in self.names:
            arr = self._data[name]
            if need > len(arr):
                grown = np.empty(max(need, 2 * len(arr), 1024))
                grown[:self.n] = arr[:self.n]
                arr = self._data[name] = grown
            arr[self.n:need] = _floats([r.get(name) for r in rows])
        self.n = need

    def truncate(self, n: int) -> None:
        self.n = min(self.n, n)

    def cut_after_step(self, step: float) -> None:
        """Drop rows with step > `step` (steps only grow within what is kept)."""
        self.truncate(int(np.searchsorted(self.col("step"), step, side="right")))

    def concat(self, later: "Columns") -> "Columns":
        out = Columns(self.names)
        out.n = self.n + later.n
        out._data = {k: np.concatenate([self.col(k), later.col(k)]) for k in self.names}
        return out


class Series:
    """What a run's metrics.jsonl says, with resume roll-backs applied as lines arrive."""

    def __init__(self):
        self.train = Columns(TRAIN_COLUMNS)
        self.evals = Columns(EVAL_COLUMNS)
        self.events: list[dict] = []  # every `event` and `checkpoint` line, in order
        self.resume_steps: list[int] = []
        self.bad_lines = 0

    def apply(self, records: list[dict]) -> None:
        train, evals = [], []
        for rec in records:
            kind = rec.get("kind")
            if kind == "train":
                train.append(rec)
            elif kind == "eval":
                evals.append(rec)
            elif kind in ("event", "checkpoint"):
                self.events.append(rec)
                if kind == "event" and rec.get("event") == "resume":
                    # rundir.apply_resumes: steps after the checkpoint resumed from are void
                    self.train.extend(train)
                    self.evals.extend(evals)
                    train, evals = [], []
                    step = rec.get("step") or 0
                    self.resume_steps.append(step)
                    self.train.cut_after_step(step)
                    self.evals.cut_after_step(step)
        self.train.extend(train)
        self.evals.extend(evals)

    def then(self, later: "Series") -> "Series":
        """This (earlier part of the file) followed by `later`, whose resumes cut into this."""
        if later.resume_steps:
            self.train.cut_after_step(min(later.resume_steps))
            self.evals.cut_after_step(min(later.resume_steps))
        out = Series()
        out.train, out.evals = self.train.concat(later.train), self.evals.concat(later.evals)
        out.events = self.events + later.events
        out.resume_steps = self.resume_steps + later.resume_steps
        out.bad_lines = self.bad_lines + later.bad_lines
        return out

    def last(self, name: str):
        col = self.train.col(name)
        return float(col[-1]) if len(col) and not math.isnan(col[-1]) else None

    def best_val(self):
        vals = self.evals.col("val_loss")
        return float(np.nanmin(vals)) if len(vals) and not np.isnan(vals).all() else None

    def event(self, name: str) -> dict | None:
        return next((e for e in reversed(self.events) if e.get("event") == name), None)


# ---------------------------------------------------------------------------- one run

class RunTail:
    """A run directory being followed: meta.json, metrics.jsonl and train.log, read incrementally.

    `poll()` (any one thread at a time) reads what is new; `load_history()` (another thread) reads
    the part of a long metrics.jsonl that the first poll skipped. Readers take `lock` while they
    copy what they draw.
    """

    def __init__(self, run_dir: Path, key: str | None = None):
        self.dir = Path(run_dir)
        self.id = self.dir.name
        self.key = key or self.id  # the dashboard's name for it: ids may repeat across runs roots
        self.lock = threading.Lock()
        self.series = Series()
        self.generation = 0  # bumped whenever rows were replaced, not just appended
        self.meta: dict | None = None
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
        self._meta_mtime = -1  # never a real mtime (None stands for "no meta.json")
        self._reading = threading.Lock()  # one poll() at a time: the cursors are not shared

    # -- status

    def status(self, process_alive: bool | None = None) -> str:
        """meta.json's status, `crashed` for a dead trainer, `starting` before meta.json exists.

        `process_alive` is the launcher's knowledge of its own child, for the seconds before the
        trainer writes meta.json.
        """
        if self.meta is None:
            if process_alive:
                return "starting"
            return "unreadable" if self.meta_error and "missing" not in self.meta_error else "not started"
        return rundir.effective_status(self.meta)

    def failure(self, status: str) -> str | None:
        """One line saying why the run ended badly, or None."""
        meta = self.meta or {}
        if status == "failed":
            return meta.get("failure") or (self.series.event("failed") or {}).get("reason") or "failed"
        if status == "crashed":
            if meta.get("host") != socket.gethostname():
                return f"no heartbeat from {meta.get('host')} for over {rundir.STALE_AFTER} s"
            return f"trainer process {meta.get('pid')} is gone without writing a final status (killed?)"
        if status == "not started":
            return "the trainer exited before writing meta.json; see its log"
        if status == "unreadable":
            return self.meta_error
        return None

    def local_pid(self) -> int | None:
        """The trainer's pid when it runs on this host and is alive."""
        meta = self.meta or {}
        pid = meta.get("pid")
        if meta.get("host") == socket.gethostname() and rundir.pid_alive(pid):
            return pid
        return None

    def eta_seconds(self) -> float | None:
        """From the rate over the last 20 logged steps."""
        steps, times = self.series.train.col("step"), self.series.train.col("time")
        max_steps = (self.meta or {}).get("max_steps")
        if len(steps) < 2 or not max_steps:
            return None
        k = max(0, len(steps) - 20)
        dt, ds = times[-1] - times[k], steps[-1] - steps[k]
        if dt <= 0 or ds <= 0:
            return None
        return max(0.0, (max_steps - steps[-1]) * dt / ds)

    def elapsed_seconds(self, status: str) -> float | None:
        meta = self.meta or {}
        if not meta.get("created"):
            return None
        end = time.time() if status == "running" else meta.get("updated") or time.time()
        return max(0.0, end - meta["created"])

    # -- reading

    def poll(self) -> bool:
        """Read what is new in meta.json, metrics.jsonl and train.log. True when anything changed."""
        with self._reading:
            changed = self.poll_meta()
            changed |= self._poll_metrics()
            changed |= self._poll_log()
        if self.meta and self.meta.get("status") == "running":
            self.system_ram.append((time.time(), float(psutil.virtual_memory().used)))
        return changed

    def poll_meta(self) -> bool:
        path = self.dir / "meta.json"
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self._meta_mtime:
            return False
        self._meta_mtime = mtime
        try:
            meta, error = rundir.read_meta(self.dir), None
        except rundir.RunError as e:
            meta, error = None, str(e)
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
        end, head, offset = self.history_end, Series(), 0
        if not end:
            return False
        inode = self._metrics.inode
        with open(self._metrics.path, "rb") as f:
            if os.fstat(f.fileno()).st_ino != inode:
                return False  # replaced meanwhile: poll() starts over from 0 anyway
            while offset < end:
                data = f.read(min(HISTORY_CHUNK_BYTES, end - offset))
                cut = data.rfind(b"\n") + 1 or len(data)
                f.seek(offset + cut)
                offset += cut
                records, bad = parse_lines(data[:cut])
                head.bad_lines += bad
                head.apply(records)
                self.history_done = offset
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
        lines = data.decode("utf-8", errors="replace").splitlines()
        with self.lock:
            if reset:
                self.log_lines.clear()
                self.log_generation += 1
            self.log_lines.extend(lines)
            self.log_seq += len(lines)
        return True


# ---------------------------------------------------------------------------- chart math

def _ema_block(x: np.ndarray, weight: float, acc: float, t: int) -> tuple[np.ndarray, float, int]:
    """Debiased EMA of x (no NaNs) continuing from state (acc, t): (smoothed, acc, t)."""
    smooth = np.empty(len(x))
    # Vectorised per block: acc_i = w^(i+1) acc0 + (1-w) w^i sum_{j<=i} x_j w^-j. Blocks keep
    # w^-j below 1e100, so the scaled cumulative sum stays exact enough in float64.
    block = max(1, min(4096, int(100 / -math.log10(weight))))
    for start in range(0, len(x), block):
        chunk = x[start:start + block]
        i = np.arange(len(chunk), dtype=np.float64)
        acc_i = weight ** (i + 1) * acc + (1 - weight) * weight ** i * np.cumsum(chunk * weight ** -i)
        smooth[start:start + len(chunk)] = acc_i / (1 - weight ** (t + i + 1))
        acc, t = float(acc_i[-1]), t + len(chunk)
    return smooth, acc, t


def debiased_ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average with the start-up bias removed (Adam's correction).

    TensorBoard's smoothing starts from the first point and drags early values; this one divides
    by 1 - weight**t, so each point is a proper weighted mean of the points up to it. NaNs are
    skipped (their positions stay NaN). weight is in [0, 1).
    """
    return Smoother(weight).update(values, 0)


class Smoother:
    """debiased_ema of a growing column, computing only the new points on each update.

    `generation` must change whenever earlier values changed (a resume cut, a reload).
    """

    def __init__(self, weight: float):
        self.weight, self.key = weight, None
        self.out, self.n, self.acc, self.t = np.empty(0), 0, 0.0, 0

    def update(self, values: np.ndarray, generation) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if self.key != (generation, self.weight) or len(values) < self.n:
            self.key, self.n, self.acc, self.t = (generation, self.weight), 0, 0.0, 0
        new = values[self.n:]
        ok = ~np.isnan(new)
        part = np.full(len(new), np.nan)
        if self.weight <= 0:
            part[ok] = new[ok]
        elif ok.any():
            part[ok], self.acc, self.t = _ema_block(new[ok], self.weight, self.acc, self.t)
        self.out = np.concatenate([self.out[:self.n], part])
        self.n = len(values)
        return self.out


def downsample(x: np.ndarray, y: np.ndarray, buckets: int, keep_extremes: bool = True):
    """At most ~2*buckets points: per bucket of consecutive points, its min and max (so spikes
    survive), or just its last point when keep_extremes is False. NaN y values are dropped."""
    ok = ~np.isnan(y) & ~np.isnan(x)
    x, y = x[ok], y[ok]
    if len(x) <= 2 * buckets:
        return x, y
    starts = np.linspace(0, len(x), buckets, endpoint=False).astype(np.int64)
    if not keep_extremes:
        ends = np.append(starts[1:], len(x)) - 1
        return x[ends], y[ends]
    lo = np.minimum.reduceat(y, starts)
    hi = np.maximum.reduceat(y, starts)
    xs = x[starts]
    return np.repeat(xs, 2), np.column_stack([lo, hi]).ravel()
