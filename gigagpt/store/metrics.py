"""The one metrics.jsonl reader: lines checked and cleaned, resume roll-backs applied.

Rules (docs/run-format.md, "Reading metrics.jsonl"):
- a line is a JSON object with a known `kind` and an integer `step` >= 0 (an event or checkpoint
  line other than a resume may leave it out). Any other line is bad: counted, skipped.
- a value that is not a finite number where a number belongs (a string, NaN, Infinity) reads as
  None; the line stays.
- a torn last line (no newline yet) is left for the next read; a line longer than a chunk is bad.
- `{"kind": "event", "event": "resume", "step": N}` voids every earlier train, eval or checkpoint
  line with step > N (a run killed after its last checkpoint logged steps that resume redoes).
Memory stays bounded: files are read in chunks, and roll-backs are found by a first pass.
"""
from __future__ import annotations

import bisect
import json
import math
import os
from array import array
from pathlib import Path

from gigagpt.store.files import open_regular

KINDS = ("train", "eval", "checkpoint", "event")
NUMBERS = ("loss", "lr", "grad_norm", "tokens", "tok_s", "mfu", "step_time", "rss", "mem_alloc",
           "mem_peak", "time", "val_loss", "params", "flops_per_token", "peak_flops", "tokens_per_step",
           "world_size", "log_steps", "log_loss_sum", "achieved_flops")
STEP_MAX = 2**53
CHUNK_BYTES = 4 << 20
RESUME_NEEDLES = (b'"event":"resume"', b'"event": "resume"')


def number(value):
    """A finite int or float, else None (bools, strings, NaN and infinities are not numbers here,
    nor an integer beyond 64 bits: 10**400 would overflow every float column it went into)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else None
    return value if math.isfinite(value) else None


def clean(rec) -> dict | None:
    """A parsed line as readers may trust it, or None when the line is bad."""
    if type(rec) is not dict or rec.get("kind") not in KINDS:
        return None
    step = rec.get("step")
    if "step" not in rec and rec["kind"] in ("event", "checkpoint") and rec.get("event") != "resume":
        step = 0
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= STEP_MAX:
        return None
    out = dict(rec, step=step)
    for key in NUMBERS:
        if key in out:
            out[key] = number(out[key])
    return out


def _no_constant(name):
    raise ValueError(name)


def parse_lines(data: bytes) -> tuple[list[dict], int]:
    """Clean records from complete lines, and how many lines were bad.

    One json.loads over the whole chunk is ~2x faster than one per line; a chunk holding any bad
    line is parsed again line by line, so a bad line costs only itself.
    """
    lines = [line for line in data.split(b"\n") if line.strip()]
    if not lines:
        return [], 0
    try:
        parsed = json.loads(b"[" + b",".join(lines) + b"]")
        if len(parsed) == len(lines):
            records = [clean(r) for r in parsed]
            if None not in records:
                return records, 0
    except (ValueError, RecursionError):
        pass
    records, bad = [], 0
    for line in lines:
        try:
            rec = clean(json.loads(line))
        except (ValueError, RecursionError):
            rec = None
        if rec is None:
            bad += 1
        else:
            records.append(rec)
    return records, bad


def chunks(path: Path, offset: int = 0, end: int | None = None, size: int = CHUNK_BYTES):
    """(start, bytes) of whole lines from byte `offset` up to the last complete line before `end`
    (default: the file's size now), at most `size` bytes each. A line longer than `size` is
    yielded as-is (it parses as bad)."""
    try:
        f = open_regular(path)
    except (OSError, ValueError):
        return  # missing or not a file: no records (the summary names the problem)
    with f:
        limit = os.fstat(f.fileno()).st_size if end is None else end
        f.seek(offset)
        while offset < limit:
            data = f.read(min(size, limit - offset))
            if not data:
                return
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                if len(data) < size:
                    return  # a torn last line: left for the next call
                cut = len(data)
            f.seek(offset + cut)
            yield offset, data[:cut]
            offset += cut


class Rollbacks:
    """The resume events of a file: which earlier lines they void. Found by a byte search for the
    resume lines (a listing never parses a whole log).

    Only what decides a line's fate is kept: for a line at offset p the cut is the lowest step of
    the resumes after p, so a resume with a step at or above a later one's is dropped when that
    later one arrives. The kept steps rise with the offsets; memory is two int arrays."""

    def __init__(self):
        self.offsets, self.cut = array("q"), array("q")

    def add(self, offset: int, step: int) -> None:
        while self.cut and self.cut[-1] >= step:
            self.offsets.pop()
            self.cut.pop()
        self.offsets.append(offset)
        self.cut.append(step)

    @classmethod
    def of(cls, path: Path, offset: int = 0, end: int | None = None) -> Rollbacks:
        found = cls()
        for start, data in chunks(path, offset, end):
            for at, rec in lines_with(data, RESUME_NEEDLES):
                rec = clean(_json(rec))
                if rec and rec["kind"] == "event" and rec.get("event") == "resume":
                    found.add(start + at, rec["step"])
        return found

    def lowest(self) -> int | None:
        """The lowest resume step of all (what an incremental reader must compare with)."""
        return self.cut[0] if self.cut else None

    def void(self, offset: int, rec: dict) -> bool:
        """Whether a later resume voids the record at `offset`."""
        if rec["kind"] == "event":
            return False
        i = bisect.bisect_right(self.offsets, offset)
        return i < len(self.offsets) and rec["step"] > self.cut[i]


def _json(line: bytes):
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def lines_with(data: bytes, needles: tuple[bytes, ...]) -> list[tuple[int, bytes]]:
    """(position, line) of every line holding one of `needles` (data ends with a newline).

    bytes.find runs at memchr speed, so finding the ~1% eval lines of a long log is cheap.
    """
    found = {}
    for needle in needles:
        i = data.find(needle)
        while i >= 0:
            start = data.rfind(b"\n", 0, i) + 1
            end = data.find(b"\n", i)
            end = len(data) if end < 0 else end
            found[start] = data[start:end]
            i = data.find(needle, end)
    return sorted(found.items())


class Reader:
    """Every record of a metrics.jsonl that no resume voided, in order, read in chunks:
    `for rec in Reader(path)`; afterwards `bad` counts the bad lines."""

    def __init__(self, path: Path):
        self.path, self.bad = Path(path), 0

    def __iter__(self):
        rollbacks = Rollbacks.of(self.path)
        for start, data in chunks(self.path):
            if rollbacks.offsets:
                yield from self._kept(start, data, rollbacks)
            else:
                records, bad = parse_lines(data)
                self.bad += bad
                yield from records

    def _kept(self, start: int, data: bytes, rollbacks: Rollbacks):
        pos = 0
        for line in data.split(b"\n"):
            at, pos = start + pos, pos + len(line) + 1
            if line.strip():
                rec = clean(_json(line))
                if rec is None:
                    self.bad += 1
                elif not rollbacks.void(at, rec):
                    yield rec


def load_metrics(run_dir: Path) -> list[dict]:
    """All kept records of a run (small runs, tests); stream with Reader for big ones."""
    return list(Reader(Path(run_dir) / "metrics.jsonl"))
