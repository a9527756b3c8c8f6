"""What compare shows: each run's curves as float64 columns, read fast, and the config keys that
differ between runs. The curves follow the same rules as metrics.Reader (tests check they agree):
train lines written the trainer's way are read in bulk with numpy and regular expressions, every
other line goes through metrics.clean.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from gigagpt.config import tomllib  # tomllib, or tomli < 3.11
from gigagpt.store.files import read_regular
from gigagpt.store.metrics import _json, chunks, clean, parse_lines

CONFIG_MAX_BYTES = 1 << 20


def read_config_text(run_dir: Path) -> str | None:
    """config.toml's text, or None when it is missing, not a file, too big or not UTF-8."""
    try:
        return read_regular(Path(run_dir) / "config.toml", CONFIG_MAX_BYTES).decode("utf-8")
    except (OSError, ValueError):
        return None


def flat_config(run_dir: Path) -> dict[str, object]:
    """config.toml as {"section.key": value}; {} when it is missing or unreadable."""
    text = read_config_text(run_dir)
    try:
        raw = tomllib.loads(text) if text is not None else {}
    except (ValueError, RecursionError):  # TOMLDecodeError is a ValueError
        return {}
    return {f"{section}.{key}": value for section, keys in raw.items() if isinstance(keys, dict)
            for key, value in keys.items()}


def config_diff(run_dirs: list[Path]) -> list[tuple[str, list]]:
    """The config keys whose values differ between runs: [(key, [value per run])]; a key a run
    lacks (or a run without a readable config) shows as None."""
    configs = [flat_config(d) for d in run_dirs]
    keys = sorted({k for c in configs for k in c})
    return [(k, [c.get(k) for c in configs]) for k in keys if len({json.dumps(c.get(k), default=str) for c in configs}) > 1]


NUM = rb"([^,}\n]*)"
TRAIN_PREFIX = np.frombuffer(b'{"kind":"train","step":', dtype=np.uint8)  # the trainer's lines
STEP_DIGITS = 12  # longer step numbers go the JSON way
# "loss" and "tokens" appear in train lines only ("val_loss" and "tokens_per_step" are other keys);
# time is in every line, but last in the trainer's: a greedy match from "kind":"train" finds it at once
TRAIN_VALUES = {"loss": re.compile(rb'"loss":' + NUM), "tokens": re.compile(rb'"tokens":' + NUM),
                "time": re.compile(rb'"kind":"train",[^\n]*"time":' + NUM)}
X_KEYS = ("tokens", "time")


def _floats(values) -> np.ndarray:
    """float64 of JSON number texts (null, NaN and infinities -> NaN, as metrics.clean reads
    them); ValueError for anything else."""
    try:
        out = np.fromiter(map(float, values), np.float64, count=len(values))
    except ValueError:
        out = np.array([math.nan if v in (b"null", b"") else float(v) for v in values], dtype=np.float64)
    out[~np.isfinite(out)] = math.nan
    return out


def _train_lines(data: bytes):
    """Start and end (the newline's position) of every line of data (which ends with a newline),
    and a mask of the train lines written as the trainer writes them: its compact prefix, ending
    in "}". numpy over the bytes, in one pass where bytes.find took two."""
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == ord("\n"))
    starts = np.concatenate(([0], ends[:-1] + 1)) if len(ends) else ends
    fits = np.flatnonzero(starts + len(TRAIN_PREFIX) < ends)
    heads = buf[starts[fits, None] + np.arange(len(TRAIN_PREFIX))]
    is_train = np.zeros(len(starts), dtype=bool)
    # ... ending in "}" (and not ",}": JSON refuses a trailing comma)
    is_train[fits] = (heads == TRAIN_PREFIX).all(axis=1) & (buf[ends[fits] - 1] == ord("}")) \
        & (buf[ends[fits] - 2] != ord(","))
    return starts, ends, is_train


def _steps(data: bytes, line_starts: np.ndarray) -> np.ndarray | None:
    """The step numbers of train lines that start at line_starts, read straight from the bytes
    after the prefix (digits, then a comma); None when one is not like that."""
    buf = np.frombuffer(data, dtype=np.uint8)
    window = np.arange(STEP_DIGITS + 1)
    text = buf[np.minimum(line_starts[:, None] + len(TRAIN_PREFIX) + window, len(buf) - 1)]
    digits = (text >= ord("0")) & (text <= ord("9"))
    n = np.argmin(digits, axis=1)  # the first byte that is not a digit
    bad = (n == 0) | (text[np.arange(len(n)), n] != ord(",")) | ((n > 1) & (text[:, 0] == ord("0")))
    if bad.any():  # not digits then a comma, or a leading zero JSON does not allow
        return None
    powers = np.where(window < n[:, None], 10 ** np.maximum(n[:, None] - 1 - window, 0), 0)
    return ((text.astype(np.int64) - ord("0")) * powers).sum(axis=1).astype(np.float64)


LEADING_ZERO = re.compile(rb",-?0[0-9]")


def json_numbers(values: list[bytes]) -> bool:
    """Whether every value is a JSON number or null, given that float() will parse each (and
    raise on what it cannot): these checks refuse what float() takes and JSON does not (1_000,
    nan, inf, +1, .5, 1., 01, spaces). Byte counts and searches, ~5x faster than a grammar."""
    text = b"," + b",".join(values)
    if text.replace(b"null", b"").translate(None, b"0123456789-.eE+,"):
        return False
    if text.count(b"+") != text.count(b"e+") + text.count(b"E+"):
        return False
    if any(p in text for p in (b",,", b",.", b"-.", b".,", b".e", b".E", b"..")) or text.endswith(b"."):
        return False
    return LEADING_ZERO.search(text) is None


CHUNK_BYTES = 32 << 20


def _fast_train(data: bytes, start: int, end: int, keys, line_starts: np.ndarray, others) -> dict | None:
    """Train columns of data[start:end], whose train lines (starting at line_starts) are all
    written as the trainer writes them: steps from the bytes, the other keys pulled out with
    regular expressions (both ~5x faster than json.loads). None when a line is not plain (not
    ASCII, a nested object, a value that is not a JSON number, a key twice or missing): the caller
    parses JSON then, so both ways read what metrics.Reader reads."""
    seg = data[start:end]
    # one object a line, no nested object or array: else a regular expression could take a key
    # inside for the line's own, or read a line JSON refuses (the JSON path reads those lines).
    # Not checked, for speed: a line malformed between two other keys (a doubled comma, an
    # unquoted key), which compare reads where metrics.Reader drops it
    n = len(line_starts)  # each starts with '{' and ends with '}': with no more of them, none nests
    opens = seg.count(b"{") - sum(data.count(b"{", a, b) for a, b in others)
    closes = seg.count(b"}") - sum(data.count(b"}", a, b) for a, b in others)
    if not seg.isascii() or opens != n or closes != n or b"[" in seg:
        return None
    steps = _steps(data, line_starts)
    if steps is None:
        return None
    try:
        columns = {"step": steps}
        for key in keys:
            found = TRAIN_VALUES[key].findall(seg)
            if len(found) != len(line_starts) or not json_numbers(found):
                return None
            columns[key] = _floats(found)
        return columns
    except ValueError:
        return None


def _json_train(seg: bytes, keys) -> dict:
    rows = [r for r in parse_lines(seg)[0] if r["kind"] == "train"]
    return {k: np.array([math.nan if r.get(k) is None else r[k] for r in rows], dtype=np.float64)
            for k in ("step", *keys)}


def load_curves(run_dir: Path, x_keys=X_KEYS) -> dict:
    """What the compare view plots for one run: {"train": {step, loss, *x_keys}, "eval": {step,
    val_loss}} as float64 arrays, resume roll-backs applied (as metrics.Reader). x_keys may
    be () for the step axis alone: the tokens and time columns cost as much again to read.
    The file is read in chunks: memory is the chunk and the columns."""
    keys = ("loss", *x_keys)
    train = {k: np.empty(0) for k in ("step", *keys)}
    evals: list[tuple[float, float]] = []
    for _, data in chunks(Path(run_dir) / "metrics.jsonl", size=CHUNK_BYTES):
        train, evals = _read_chunk(data, keys, train, evals)
    ev = np.array(evals, dtype=np.float64).reshape(-1, 2)
    return {"train": train, "eval": {"step": ev[:, 0], "val_loss": ev[:, 1]}}


def _read_chunk(data: bytes, keys, train: dict, evals: list):
    # The lines that are not trainer-written train lines (evals, events, anything foreign) are
    # few: parsed as JSON. A resume splits the chunk into stretches whose train lines are read in
    # bulk; a stretch with a train line the trainer did not write that way is parsed as JSON.
    starts, ends, is_train = _train_lines(data)
    others = [(int(a), int(b), clean(_json(data[a:b]))) for a, b in zip(starts[~is_train], ends[~is_train])]
    start, fast, spans = 0, True, []
    for pos, end, rec in [*others, (len(data), len(data), None)]:
        rec = rec or {}
        kind, step = rec.get("kind"), rec.get("step", 0)
        fast = fast and kind != "train"
        if kind == "eval" and rec.get("val_loss") is not None:
            evals.append((step, rec["val_loss"]))
        if not (kind == "event" and rec.get("event") == "resume") and pos < len(data):
            spans.append((pos, end))
            continue
        mine = is_train & (starts >= start) & (starts < pos)
        part = (fast and _fast_train(data, start, pos, keys, starts[mine], spans)) \
            or _json_train(data[start:pos], keys)
        train = {k: np.concatenate([train[k], part[k]]) for k in train}
        if pos < len(data):
            keep = ~(train["step"] > step)
            train = {k: v[keep] for k, v in train.items()}
            evals = [e for e in evals if e[0] <= step]
        start, fast, spans = end + 1, True, []
    return train, evals
