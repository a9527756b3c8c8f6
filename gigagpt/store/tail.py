"""Following a run as it is written: byte cursors over appended files, and metrics as growing
columns with resume roll-backs applied as lines arrive (the dashboard's live and runs screens).

The rules it follows are toolong's: keep byte offsets, read only new bytes, leave a torn last line
for the next read, start over when a file is truncated or replaced. Records come from
metrics.parse_lines, so they are checked as every other reader's are.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from gigagpt.store.files import open_regular

TRAIN_COLUMNS = ("step", "tokens", "time", "loss", "lr", "tok_s", "mfu", "rss", "mem_alloc", "mem_peak")
EVAL_COLUMNS = ("step", "val_loss")


class Cursor:
    """A byte offset into a file that its writer only appends to (metrics.jsonl, train.log).

    `read()` returns the complete new lines. When the file shrank or was replaced (new inode),
    reading starts over at 0 and `reset` says so, so the caller can drop what it built from it.
    """

    def __init__(self, path: Path, offset: int = 0, inode: int | None = None):
        self.path, self.offset, self.inode = Path(path), offset, inode

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except (OSError, ValueError):
            return 0

    def read(self, limit: int | None = None) -> tuple[bytes, bool]:
        try:
            st = self.path.stat()
            f = open_regular(self.path)
        except (OSError, ValueError):  # gone, or not a file (a directory, a FIFO, a symlink loop)
            reset = self.offset > 0
            self.offset, self.inode = 0, None
            return b"", reset
        reset = self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset)
        if reset:
            self.offset = 0
        self.inode = st.st_ino
        with f:
            if st.st_size <= self.offset:
                return b"", reset
            f.seek(self.offset)
            data = f.read(st.st_size - self.offset if limit is None else limit)
        end = data.rfind(b"\n") + 1
        if end == 0 and limit is not None and len(data) == limit:
            end = len(data)  # one line longer than a whole chunk: skip it rather than stall on it
        self.offset += end
        return data[:end], reset

    def skip_to_line_after(self, position: int) -> None:
        """Start reading at the first line that begins after `position` (for long files)."""
        try:
            with open_regular(self.path) as f:
                f.seek(max(0, position - 1))
                f.readline()
                self.offset = f.tell()
                self.inode = os.fstat(f.fileno()).st_ino
        except (OSError, ValueError):
            self.offset, self.inode = 0, None


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

    def concat(self, later: Columns) -> Columns:
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
                    # metrics.Rollbacks' rule: steps after the checkpoint resumed from are void
                    self.train.extend(train)
                    self.evals.extend(evals)
                    train, evals = [], []
                    step = rec.get("step") or 0
                    self.resume_steps.append(step)
                    self.train.cut_after_step(step)
                    self.evals.cut_after_step(step)
        self.train.extend(train)
        self.evals.extend(evals)

    def then(self, later: Series) -> Series:
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


