"""The incremental metrics.jsonl scan behind a run's summary: the last train line's numbers, the
last and best validation loss, and a count of bad lines, reading only the bytes added since the
previous scan (the state is cached) and never parsing a whole log: eval and resume lines are
found by a byte search, the last train line by searching backwards."""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from gigagpt.store.files import os_reason
from gigagpt.store.metrics import Rollbacks, _json, chunks, clean, lines_with, number

EVAL_NEEDLES = (b'"kind":"eval"', b'"kind": "eval"')
TRAIN_NEEDLES = (b'"kind":"train"', b'"kind": "train"')
OBJECT_LINE = re.compile(rb"^\{[^\n]*\}[ \t\r]*$", re.M)
LAST_KEYS = ("step", "loss", "tokens", "tok_s", "time")
FRESH = {"inode": None, "offset": 0, "last": None, "val": None, "best_val": None, "eval_step": None,
         "bad_lines": 0, "problem": None}


def not_objects(data: bytes) -> int:
    """How many lines cannot be JSON objects (do not start with '{' and end with '}'), counted by
    one regular expression rather than by parsing."""
    blank = data.count(b"\n\n") + data.startswith(b"\n")
    return data.count(b"\n") - len(OBJECT_LINE.findall(data)) - blank


def scan_metrics(path: Path, state: dict | None) -> dict:
    """Bring a scan state (FRESH's keys) up to date with the file, reading only what was added.

    A resume that voids lines already counted means a rescan from the start (rare)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return dict(FRESH)
    except (OSError, ValueError) as e:
        return {**FRESH, "problem": f"metrics.jsonl: unreadable ({os_reason(e)})"}
    if not stat.S_ISREG(st.st_mode):
        return {**FRESH, "problem": "metrics.jsonl: not a regular file"}
    state = dict(state) if state else dict(FRESH)
    if state["inode"] != st.st_ino or st.st_size < state["offset"]:
        state = {**FRESH, "inode": st.st_ino}
    if st.st_size == state["offset"]:
        return state
    rollbacks = Rollbacks.of(path, state["offset"], st.st_size)
    if rollbacks.lowest() is not None and state["offset"]:
        counted = max((state["last"] or {}).get("step") or 0, state["eval_step"] or 0)
        if rollbacks.lowest() < counted:
            return scan_metrics(path, {**FRESH, "inode": st.st_ino})
    for start, data in chunks(path, state["offset"], st.st_size):
        _scan_chunk(state, start, data, rollbacks)
        state["offset"] = start + len(data)
    return state


def _scan_chunk(state: dict, start: int, data: bytes, rollbacks: Rollbacks) -> None:
    for pos, line in lines_with(data, EVAL_NEEDLES):
        rec = clean(_json(line))
        if rec is None or rec["kind"] != "eval" or rollbacks.void(start + pos, rec):
            continue
        state["eval_step"] = max(state["eval_step"] or 0, rec["step"])
        val = rec.get("val_loss")
        if val is not None:
            state["val"] = val
            state["best_val"] = val if state["best_val"] is None else min(state["best_val"], val)
    last = _last_train(data, start, rollbacks)
    if last is not None:
        state["last"] = last
    state["bad_lines"] += not_objects(data)


def _last_train(data: bytes, start: int, rollbacks: Rollbacks) -> dict | None:
    """The numbers of the last good train line in data that no resume voided."""
    end = len(data)
    for _ in range(10_000):  # a long run of bad or voided lines at the end: give up, not walk the file
        pos = max(data.rfind(needle, 0, end) for needle in TRAIN_NEEDLES)
        if pos < 0:
            return None
        line_start = data.rfind(b"\n", 0, pos) + 1
        line_end = data.find(b"\n", pos)
        rec = clean(_json(data[line_start:line_end if line_end >= 0 else len(data)]))
        end = line_start
        if rec is None or rec["kind"] != "train" or rollbacks.void(start + line_start, rec):
            continue
        return {k: rec.get(k) for k in LAST_KEYS}
    return None


def check_state(state) -> bool:
    """Whether a cached scan state has the shape scan_metrics makes (a damaged cache is rebuilt)."""
    def num(v):
        return v is None or number(v) is not None
    if not isinstance(state, dict) or set(state) != set(FRESH):
        return False
    last = state["last"]
    return (isinstance(state["offset"], int) and state["offset"] >= 0 and not isinstance(state["offset"], bool)
            and (state["inode"] is None or isinstance(state["inode"], int))
            and isinstance(state["bad_lines"], int) and state["bad_lines"] >= 0
            and all(num(state[k]) for k in ("val", "best_val", "eval_step"))
            and (state["problem"] is None or isinstance(state["problem"], str))
            and (last is None or (isinstance(last, dict) and set(last) == set(LAST_KEYS)
                                  and all(num(v) for v in last.values()))))

