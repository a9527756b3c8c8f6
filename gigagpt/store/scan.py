"""The incremental metrics.jsonl scan behind a run's summary: the last train line's numbers, the
last and best validation loss, and a count of bad lines (as metrics.clean judges them), reading
only the bytes added since the previous scan (the state is cached) and never parsing a whole log:
eval and resume lines are found by a byte search, the last train line by searching backwards."""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from gigagpt.store.files import os_reason
from gigagpt.store.metrics import Rollbacks, _json, chunks, clean, lines_with, number

EVAL_NEEDLES = (b'"kind":"eval"', b'"kind": "eval"')
TRAIN_NEEDLES = (b'"kind":"train"', b'"kind": "train"')
OTHER_NEEDLES = (b'"kind":"checkpoint"', b'"kind": "checkpoint"', b'"kind":"event"', b'"kind": "event"')
# a train line as the trainer writes it: good without parsing (its values are checked when read)
# a train line as the trainer writes it: good without parsing (its values are checked when read);
# possessive quantifiers: a line that fails is given up at once, not backtracked through
NUMBER = rb"(?:null|-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?(?:[eE][-+]?[0-9]++)?)"
TRAINER_LINE = re.compile(rb'^\{"kind":"train","step":(?:0|[1-9][0-9]{0,15})(?:,"[a-z_]{1,32}+":' + NUMBER
                          + rb")*+\}$", re.M)
LAST_KEYS = ("step", "loss", "tokens", "tok_s", "time")
FRESH = {"inode": None, "offset": 0, "last": None, "val": None, "best_val": None, "eval_step": None,
         "bad_lines": 0, "problem": None}


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


def bad_lines(data: bytes) -> int:
    """How many lines of data (whole lines) metrics.clean refuses, without parsing the train lines
    the trainer wrote (one regular expression counts those): lines that are not objects, and
    objects that are not records (a bad step, an unknown kind, invalid JSON)."""
    good = len(TRAINER_LINE.findall(data))
    if good != sum(data.count(n) for n in TRAIN_NEEDLES):  # some train lines are not the trainer's
        good = sum(1 for _, line in lines_with(data, TRAIN_NEEDLES) if _kind(line) == "train")
    good += sum(1 for _, line in lines_with(data, EVAL_NEEDLES + OTHER_NEEDLES)
                if _kind(line) in ("eval", "checkpoint", "event") and not TRAINER_LINE.match(line))
    blank = data.count(b"\n\n") + data.startswith(b"\n")
    return data.count(b"\n") - blank - good


def _kind(line: bytes):
    rec = clean(_json(line))
    return rec and rec["kind"]


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
    state["bad_lines"] += bad_lines(data)


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

