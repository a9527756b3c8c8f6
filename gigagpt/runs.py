"""`gigagpt runs`: find, inspect, stop, export, delete, rename and tag past runs. No torch.

The dashboard's runs screen uses the same functions. A run's summary (the row of `runs list`) comes
from its meta.json and an incremental scan of its metrics.jsonl; summaries are cached per run in
`<runs root>/.summaries.json`, keyed by the size and mtime of the files they come from, so a listing
re-reads only what changed (docs/run-format.md, "Summary cache").

Runs live under the runs root (--runs-root, else $GIGAGPT_RUNS or ./runs; new runs go there) and
under the extra roots of the settings file (gigagpt.toml: [runs] roots = [...]), all browsed alike.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import signal
import socket
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from gigagpt import plan, rundir
from gigagpt.config import ConfigError, extra_runs_roots, runs_root, settings_path, tomllib  # tomllib, or tomli < 3.11
from gigagpt.rundir import RunError

SUMMARY_CACHE = ".summaries.json"
CACHE_VERSION = 1
STATUSES = ("running", "completed", "stopped", "failed", "crashed", "damaged")
# meta.json keys a summary keeps (the cache stays small: no command line, no versions)
META_KEYS = ("name", "tags", "preset", "status", "failure", "pid", "host", "device", "world_size",
             "created", "updated", "heartbeat", "step", "max_steps", "tokens_per_step", "params")
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+:=/-]{0,63}$")
NAME_MAX = 100


class ExportError(RunError):
    pass


# ---------------------------------------------------------------------------- finding runs

RUN_FILES = ("meta.json", "train.log", "metrics.jsonl")  # any one makes a directory a run


def run_dirs(root: Path) -> list[Path]:
    """Directories under the runs root that look like runs: a meta.json, a train.log or a
    metrics.jsonl (a run whose meta.json is lost is still listed, as damaged)."""
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir()
            and any(os.path.exists(os.path.join(e.path, f)) for f in RUN_FILES)]


def root_of(args) -> Path:
    return Path(args.runs_root) if getattr(args, "runs_root", None) else runs_root()


def root_problem(root: Path) -> str | None:
    """Why a runs root cannot be listed, or None."""
    try:
        with os.scandir(root):
            pass
    except FileNotFoundError:
        return "not found"
    except NotADirectoryError:
        return "not a directory"
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    return None


def runs_roots(primary: Path | None = None) -> tuple[list[Path], list[str]]:
    """(roots, problems): `primary` (--runs-root; default $GIGAGPT_RUNS or ./runs) first, where new
    runs go, then the settings file's [runs] roots, duplicates dropped. An extra root that cannot be
    listed (or a settings file that cannot be read) is left out with one line in `problems`."""
    primary = Path(primary) if primary else runs_root()
    roots, problems, seen = [primary], [], {os.path.realpath(primary)}
    try:
        extras = extra_runs_roots()
    except ConfigError as e:
        return roots, [f"{e}; extra runs roots skipped"]
    for root in extras:
        if os.path.realpath(root) in seen:
            continue
        seen.add(os.path.realpath(root))
        problem = root_problem(root)
        if problem:
            problems.append(f"runs root {root} ([runs] roots in {settings_path()}): {problem}; skipped")
        else:
            roots.append(root)
    return roots, problems


def roots_of(args) -> list[Path]:
    """The runs roots of a `gigagpt runs` command; problems with extra roots go to stderr."""
    roots, problems = runs_roots(getattr(args, "runs_root", None))
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return roots


# ---------------------------------------------------------------------------- scanning metrics.jsonl

def _lines_with(data: bytes, needles: tuple[bytes, ...]) -> list[tuple[int, bytes]]:
    """(position, line) of every line holding one of `needles` (data ends with a newline).

    bytes.find runs at memchr speed, so finding the ~1% eval lines of a long log is cheap.
    """
    found = {}
    for needle in needles:
        i = data.find(needle)
        while i >= 0:
            start = data.rfind(b"\n", 0, i) + 1
            end = data.find(b"\n", i)
            found[start] = data[start:end]
            i = data.find(needle, end)
    return sorted(found.items())


EVAL_NEEDLES = (b'"kind":"eval"', b'"kind": "eval"', b'"event":"resume"', b'"event": "resume"')
TRAIN_NEEDLES = (b'"kind":"train"', b'"kind": "train"')


OBJECT_LINE = re.compile(rb"^\{[^\n]*\}[ \t\r]*$", re.M)


def _not_objects(data: bytes) -> int:
    """How many lines cannot be JSON objects (do not start with '{' and end with '}'), counted by
    one regular expression rather than by parsing: a listing never json-parses a whole log."""
    blank = data.count(b"\n\n") + data.startswith(b"\n")
    return data.count(b"\n") - len(OBJECT_LINE.findall(data)) - blank


def _json_line(line: bytes):
    try:
        rec = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def scan_metrics(path: Path, state: dict | None) -> dict:
    """Bring a metrics.jsonl scan state up to date, reading only the bytes added since `state`.

    The state (cached) holds the offset and inode, the last train line's numbers, the last and
    best val loss, the highest eval step and the count of lines that are not JSON objects. A
    resume that rolls back evals already counted (rare) means a rescan from the start.
    """
    fresh = {"inode": None, "offset": 0, "last": None, "val": None, "best_val": None,
             "eval_step": None, "bad_lines": 0}
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return fresh
    state = dict(state) if state else fresh
    if state["inode"] != st.st_ino or st.st_size < state["offset"]:
        state = {**fresh, "inode": st.st_ino}
    if st.st_size == state["offset"]:
        return state
    with open(path, "rb") as f:
        f.seek(state["offset"])
        data = f.read(st.st_size - state["offset"])
    data = data[:data.rfind(b"\n") + 1]  # a torn last line waits for the next scan
    if not data:
        return state
    evals, best, roll_back = [], state["best_val"], False
    for _, line in _lines_with(data, EVAL_NEEDLES):
        rec = _json_line(line)
        if rec is None:
            state["bad_lines"] += 1 if line.startswith(b"{") and line.rstrip().endswith(b"}") else 0
            continue
        if rec.get("kind") == "eval" and _number(rec.get("val_loss")) is not None:
            evals.append((rec.get("step") or 0, rec["val_loss"]))
        elif rec.get("event") == "resume":
            step = rec.get("step") or 0
            evals = [e for e in evals if e[0] <= step]
            if (state["eval_step"] or 0) > step:
                roll_back = True  # evals counted in an earlier scan are void now
    if roll_back and state["offset"]:
        return scan_metrics(path, None)
    if evals:
        best = min([v for _, v in evals] + ([best] if best is not None else []))
        state.update(val=evals[-1][1], best_val=best, eval_step=max(s for s, _ in evals))
    last = _last_train(data)
    if last is not None:
        state["last"] = last
    state["bad_lines"] += _not_objects(data)
    state["offset"] += len(data)
    return state


def _last_train(data: bytes) -> dict | None:
    """The numbers of the last train line in data that no later resume rolled back."""
    resumes = [(pos, _json_line(line)) for pos, line in _lines_with(data, EVAL_NEEDLES[2:])]
    end = len(data)
    for _ in range(100):  # a run of garbage lines at the end gives up rather than walk the file
        pos = max(data.rfind(needle, 0, end) for needle in TRAIN_NEEDLES)
        if pos < 0:
            return None
        start = data.rfind(b"\n", 0, pos) + 1
        rec = _json_line(data[start:data.find(b"\n", pos)])
        end = start
        if rec is None or rec.get("kind") != "train":
            continue
        cut = min([(r or {}).get("step") or 0 for p, r in resumes if p > start], default=None)
        if cut is not None and (rec.get("step") or 0) > cut:
            continue
        return {k: _number(rec.get(k)) for k in ("step", "loss", "tokens", "tok_s", "time")}
    return None


# ---------------------------------------------------------------------------- checkpoints

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def checkpoint_problem(path: Path) -> str | None:
    """Why the newest checkpoint cannot be loaded, judged without torch: a .pt file is a zip
    archive (torch.save's format); a sharded .dcp directory has DCP's .metadata file; a Cerebras
    .mdl file is HDF5."""
    try:
        if path.suffix == ".dcp":
            return None if (path / ".metadata").is_file() else f"checkpoint {path.name}: no .metadata (incomplete)"
        with open(path, "rb") as f:
            head = f.read(8)
        if path.suffix == ".mdl":
            return None if head == HDF5_MAGIC else f"checkpoint {path.name}: not an HDF5 file (truncated or corrupt)"
        if not zipfile.is_zipfile(path):
            return f"checkpoint {path.name}: not a torch checkpoint (truncated or corrupt)"
    except OSError as e:
        return f"checkpoint {path.name}: unreadable ({e.strerror or e})"
    return None


def scan_checkpoints(run_dir: Path) -> dict:
    ckpts = rundir.checkpoints(run_dir)
    if not ckpts:
        return {"count": 0, "last": None, "problem": None}
    step = re.search(r"step_(\d+)", ckpts[-1].name)
    return {"count": len(ckpts), "last": int(step.group(1)) if step else None,
            "problem": checkpoint_problem(ckpts[-1])}


# ---------------------------------------------------------------------------- summaries

def _stamp(path: Path) -> list | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def read_meta_part(run_dir: Path) -> dict:
    try:
        meta = rundir.read_meta(run_dir)
    except RunError as e:
        return {"error": str(e).replace(f"{run_dir}/", "")}
    except OSError as e:
        return {"error": f"meta.json: unreadable ({e.strerror or e})"}
    return {k: meta.get(k) for k in META_KEYS}


def update_entry(run_dir: Path, entry: dict | None) -> tuple[dict, bool]:
    """A run's cache entry, re-reading only the files whose size or mtime changed. (entry, changed)"""
    entry = dict(entry or {})
    changed = False
    stamp = _stamp(run_dir / "meta.json")
    if "meta" not in entry or entry.get("meta_stamp") != stamp:
        entry["meta"], entry["meta_stamp"], changed = read_meta_part(run_dir), stamp, True
    stamp = _stamp(run_dir / "metrics.jsonl")
    if "metrics" not in entry or entry.get("metrics_stamp") != stamp:
        entry["metrics"] = scan_metrics(run_dir / "metrics.jsonl", entry.get("metrics"))
        entry["metrics_stamp"], changed = stamp, True
    # A new checkpoint changes the directory's mtime; a damaged one is judged once per change.
    stamp = _stamp(run_dir / "checkpoints")
    if "ckpt" not in entry or entry.get("ckpt_stamp") != stamp:
        entry["ckpt"], entry["ckpt_stamp"], changed = scan_checkpoints(run_dir), stamp, True
    return entry, changed


def summary(run_dir: Path, entry: dict, now: float | None = None) -> dict:
    """The row of `runs list` (and of the dashboard's runs table) from a cache entry."""
    now = now or time.time()
    meta, scan, ckpt = entry["meta"], entry["metrics"], entry["ckpt"]
    last = scan.get("last") or {}
    problems = [p for p in (meta.get("error"), ckpt.get("problem")) if p]
    if scan.get("bad_lines"):
        problems.append(f"metrics.jsonl: {scan['bad_lines']} lines are not JSON objects (skipped)")
    if "error" in meta:
        status = "damaged"
    else:
        status = rundir.effective_status(meta, now)
    created = meta.get("created")
    end = now if status == "running" else (meta.get("updated") or last.get("time"))
    step = meta.get("step") if meta.get("step") is not None else last.get("step")
    tokens = last.get("tokens")
    if tokens is None and step is not None and meta.get("tokens_per_step"):
        tokens = step * meta["tokens_per_step"]
    return {
        "id": run_dir.name, "path": str(run_dir), "root": str(run_dir.parent), "name": meta.get("name") or run_dir.name,
        "tags": list(meta.get("tags") or []), "preset": meta.get("preset"), "status": status,
        "failure": meta.get("failure"), "problem": "; ".join(problems) or None,
        "step": step, "max_steps": meta.get("max_steps"), "tokens": tokens,
        "loss": last.get("loss"), "val_loss": scan.get("val"), "best_val": scan.get("best_val"),
        "tok_s": last.get("tok_s"), "device": meta.get("device"), "world_size": meta.get("world_size"),
        "host": meta.get("host"), "pid": meta.get("pid"), "params": meta.get("params"),
        "started": created, "duration": max(0.0, end - created) if created and end else None,
        "checkpoints": ckpt.get("count", 0), "last_checkpoint": ckpt.get("last"),
        "checkpoint_problem": ckpt.get("problem"),
    }


class SummaryCache:
    """`<root>/.summaries.json`: {"version", "runs": {id: entry}}. Written atomically, only when
    something changed; a cache that cannot be read or written is rebuilt or skipped, never fatal."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.path = self.root / SUMMARY_CACHE
        self.entries: dict[str, dict] = {}
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            if saved.get("version") == CACHE_VERSION:
                self.entries = saved["runs"]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass

    def save(self) -> None:
        try:
            rundir.write_json(self.path, {"version": CACHE_VERSION, "runs": self.entries})
        except OSError:
            pass  # a read-only runs root: listings stay correct, only slower


def list_runs(root: Path, cache: SummaryCache | None = None) -> list[dict]:
    """A summary of every run under `root`, newest first, damaged runs included with their problem."""
    cache = cache or SummaryCache(root)
    dirs = run_dirs(root)
    entries, dirty, now = {}, False, time.time()
    rows = []
    for run_dir in dirs:
        entry, changed = update_entry(run_dir, cache.entries.get(run_dir.name))
        entries[run_dir.name] = entry
        dirty |= changed
        rows.append(summary(run_dir, entry, now))
    dirty |= len(entries) != len(cache.entries)
    cache.entries = entries
    if dirty:
        cache.save()
    rows.sort(key=lambda r: (r["started"] or 0, r["id"]), reverse=True)
    return rows


def list_all(roots: list[Path], caches: dict | None = None) -> list[dict]:
    """list_runs over several roots (each with its own cache, kept in `caches` by root), newest first."""
    caches = {} if caches is None else caches
    rows = []
    for root in roots:
        rows += list_runs(root, caches.setdefault(Path(root), SummaryCache(root)))
    rows.sort(key=lambda r: (r["started"] or 0, r["id"]), reverse=True)
    return rows


def _runs_in(roots: list[Path], pick) -> list[Path]:
    """The run directories pick(root) gives in each root, each once (two roots may be one)."""
    found = {}
    for root in roots:
        try:
            for d in pick(root):
                found.setdefault(os.path.realpath(d), d)
        except OSError:  # an unreadable root holds nothing we can use
            pass
    return list(found.values())


def find_run(roots, arg: str) -> Path:
    """A run given as a run directory, as an id under one of the runs roots, or as a run name
    (`smoke` for smoke-20261128-135507, the id `new_run_id` makes) that one run has; RunError when
    none has it, or when several do (two roots may hold the same id: then its path says which)."""
    roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
    p = Path(arg)
    if any((p / f).exists() for f in (*RUN_FILES, "config.toml")):
        return p
    arg = arg.rstrip("/")
    if "/" not in arg and arg not in ("", ".", ".."):  # a path was tried above; an id names no parent
        named = re.compile(re.escape(arg) + r"-\d{8}-\d{6}(?:-\d+)?")
        for several, pick in (("in {} runs roots", lambda root: [root / arg] if (root / arg).is_dir() else []),
                              ("{} runs match", lambda root: [d for d in run_dirs(root) if named.fullmatch(d.name)])):
            found = _runs_in(roots, pick)
            if len(found) == 1:
                return found[0]
            if found:
                where = ", ".join(str(d if len(roots) > 1 else d.name) for d in found[:6])
                more = ", ..." if len(found) > 6 else ""
                raise RunError(f"run {arg!r}: {several.format(len(found))} ({where}{more}); give the id"
                               f"{' or the path' if len(roots) > 1 else ''} of the one you mean")
    raise RunError(f"run {arg!r}: no run directory at {p}, no run {arg!r} in the runs "
                   f"root{'s' if len(roots) > 1 else ''} ({', '.join(map(str, roots))})")


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Names for runs side by side: the id, or `<root name>/<id>` where two runs share an id."""
    names = [Path(d).name for d in run_dirs]
    out = [n if names.count(n) == 1 else f"{Path(d).parent.name}/{n}" for d, n in zip(run_dirs, names)]
    return [o if out.count(o) == 1 else f"{o}#{i + 1}" for i, o in enumerate(out)]


def run_summary(run_dir: Path) -> dict:
    entry, _ = update_entry(run_dir, None)
    return summary(run_dir, entry)


# ---------------------------------------------------------------------------- filtering and sorting

SORT_KEYS = ("started", "name", "preset", "status", "step", "tokens", "loss", "val_loss", "best_val",
             "tok_s", "device", "duration")


def matches(row: dict, text: str = "", statuses=()) -> bool:
    if statuses and row["status"] not in statuses:
        return False
    if text:
        hay = " ".join(str(x) for x in (row["id"], row["name"], row["preset"], row["device"],
                                          row["status"], *row["tags"])).lower()
        return all(word in hay for word in text.lower().split())
    return True


def sort_rows(rows: list[dict], key: str, reverse: bool = False) -> list[dict]:
    """Rows sorted by `key`; rows without a value go last whichever the direction."""
    have = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    have.sort(key=lambda r: (r[key].lower() if isinstance(r[key], str) else r[key]), reverse=reverse)
    return have + missing


# ---------------------------------------------------------------------------- formatting

def human_count(n) -> str:
    """Table cells: three significant digits."""
    return plan.human_count(n, digits=3)


def fmt_loss(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def fmt_duration(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds / 86400:.1f}d"


def fmt_time(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "–"


def fmt_step(row: dict) -> str:
    return f"{row['step'] if row['step'] is not None else '?'}/{row['max_steps'] or '?'}"


def note(row: dict) -> str:
    """The failure reason or what is damaged: one line."""
    return "; ".join(x for x in (row["failure"], row["problem"]) if x)


TABLE = (("RUN", lambda r: r["name"] if r["name"] == r["id"] else f"{r['name']} ({r['id']})"),
         ("PRESET", lambda r: r["preset"] or "–"), ("STATUS", lambda r: r["status"]),
         ("STEP", fmt_step), ("TOKENS", lambda r: human_count(r["tokens"])),
         ("LOSS", lambda r: fmt_loss(r["loss"])), ("VAL", lambda r: fmt_loss(r["val_loss"])),
         ("BEST VAL", lambda r: fmt_loss(r["best_val"])), ("TOK/S", lambda r: human_count(r["tok_s"])),
         ("DEVICE", lambda r: r["device"] or "–"), ("STARTED", lambda r: fmt_time(r["started"])),
         ("DURATION", lambda r: fmt_duration(r["duration"])), ("TAGS", lambda r: ",".join(r["tags"])),
         ("NOTE", note))


ROOT_COLUMN = ("ROOT", lambda r: r["root"])  # `runs list` shows it when there are several roots


def table(rows: list[dict], columns=TABLE) -> str:
    cells = [[h for h, _ in columns]] + [[f(r) for _, f in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


# ---------------------------------------------------------------------------- configs

def flat_config(run_dir: Path) -> dict[str, object]:
    """config.toml as {"section.key": value}; {} when it is missing or unreadable."""
    try:
        raw = tomllib.loads((Path(run_dir) / "config.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    return {f"{section}.{key}": value for section, keys in raw.items() if isinstance(keys, dict)
            for key, value in keys.items()}


def config_diff(run_dirs: list[Path]) -> list[tuple[str, list]]:
    """The config keys whose values differ between runs: [(key, [value per run])]; a key a run
    lacks (or a run without a readable config) shows as None."""
    configs = [flat_config(d) for d in run_dirs]
    keys = sorted({k for c in configs for k in c})
    return [(k, [c.get(k) for c in configs]) for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1]


# ---------------------------------------------------------------------------- curves (compare)

NUM = rb"([^,}\n]*)"
TRAIN_PREFIX = np.frombuffer(b'{"kind":"train","step":', dtype=np.uint8)  # the trainer's lines
STEP_DIGITS = 12  # longer step numbers go the JSON way
# "loss" and "tokens" appear in train lines only ("val_loss" and "tokens_per_step" are other keys);
# time is in every line, but last in the trainer's: a greedy match from "kind":"train" finds it at once
TRAIN_VALUES = {"loss": re.compile(rb'"loss":' + NUM), "tokens": re.compile(rb'"tokens":' + NUM),
                "time": re.compile(rb'"kind":"train",[^\n]*"time":' + NUM)}
X_KEYS = ("tokens", "time")


def _floats(values) -> np.ndarray:
    """float64 of JSON number texts (null -> NaN); ValueError for anything else."""
    try:
        return np.fromiter(map(float, values), np.float64, count=len(values))
    except ValueError:
        pass
    out = [math.nan if v in (b"null", b"") else float(v) for v in values]  # raises on garbage
    return np.array(out, dtype=np.float64)


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
    is_train[fits] = (heads == TRAIN_PREFIX).all(axis=1) & (buf[ends[fits] - 1] == ord("}"))
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


def _fast_train(data: bytes, start: int, end: int, keys, line_starts: np.ndarray) -> dict | None:
    """Train columns of data[start:end], whose train lines (starting at line_starts) are all
    written as the trainer writes them: steps from the bytes, the other keys pulled out with
    regular expressions (both ~5x faster than json.loads). None when a column does not have a
    value for every line (a line torn or foreign): the caller parses JSON then."""
    steps = _steps(data, line_starts)
    if steps is None:
        return None
    seg = data[start:end]
    try:
        columns = {"step": steps}
        for key in keys:
            found = TRAIN_VALUES[key].findall(seg)
            if len(found) != len(line_starts):
                return None
            columns[key] = _floats(found)
        return columns
    except ValueError:
        return None


def _json_train(seg: bytes, keys) -> dict:
    rows = [r for r in rundir.parse_lines(seg)[0] if r.get("kind") == "train"]
    return {k: np.array([v if (v := _number(r.get(k))) is not None else math.nan for r in rows],
                        dtype=np.float64) for k in ("step", *keys)}


def load_curves(run_dir: Path, x_keys=X_KEYS) -> dict:
    """What the compare view plots for one run: {"train": {step, loss, *x_keys}, "eval": {step,
    val_loss}} as float64 arrays, resume roll-backs applied (as rundir.apply_resumes). x_keys may
    be () for the step axis alone: the tokens and time columns cost as much again to read."""
    try:
        data = (Path(run_dir) / "metrics.jsonl").read_bytes()
    except FileNotFoundError:
        data = b""
    data = data[:data.rfind(b"\n") + 1]
    keys = ("loss", *x_keys)
    train = {k: np.empty(0) for k in ("step", *keys)}
    evals: list[tuple[float, float]] = []
    # The lines that are not trainer-written train lines (evals, events, anything foreign) are
    # few: parsed as JSON. A resume splits the file into stretches whose train lines are read in
    # bulk; a stretch with a train line the trainer did not write that way is parsed as JSON.
    starts, ends, is_train = _train_lines(data)
    others = [(int(a), int(b), _json_line(data[a:b])) for a, b in zip(starts[~is_train], ends[~is_train])]
    start, fast = 0, True
    for pos, end, rec in [*others, (len(data), len(data), None)]:
        rec = rec or {}
        kind, step = rec.get("kind"), _number(rec.get("step")) or 0
        fast = fast and kind != "train"
        if kind == "eval" and _number(rec.get("val_loss")) is not None:
            evals.append((step, rec["val_loss"]))
        if not (kind == "event" and rec.get("event") == "resume") and pos < len(data):
            continue
        seg = data[start:pos]
        line_starts = starts[is_train & (starts >= start) & (starts < pos)]
        part = (fast and _fast_train(data, start, pos, keys, line_starts)) or _json_train(seg, keys)
        train = {k: np.concatenate([train[k], part[k]]) for k in train}
        if pos < len(data):
            keep = ~(train["step"] > step)
            train = {k: v[keep] for k, v in train.items()}
            evals = [e for e in evals if e[0] <= step]
        start, fast = end + 1, True
    ev = np.array(evals, dtype=np.float64).reshape(-1, 2)
    return {"train": train, "eval": {"step": ev[:, 0], "val_loss": ev[:, 1]}}


# ---------------------------------------------------------------------------- export

def metric_rows(run_dir: Path):
    """(step, kind, metric, value, time) for every number of every train and eval line."""
    for rec in rundir.load_metrics(run_dir):
        kind = rec.get("kind")
        if kind not in ("train", "eval"):
            continue
        step = rec.get("step")
        for key, value in rec.items():
            if key in ("kind", "step") or _number(value) is None:
                continue
            yield step, kind, key, value, rec.get("time")


def export_csv(run_dirs: list[Path], out) -> int:
    """Long form: run, step, kind, metric, value (one row per number). Returns the row count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run", "step", "kind", "metric", "value"])
    n = 0
    for run_dir, label in zip(run_dirs, run_labels(run_dirs)):
        for step, kind, key, value, _ in metric_rows(run_dir):
            writer.writerow([label, step, kind, key, repr(value) if isinstance(value, float) else value])
            n += 1
    return n


def export_tensorboard(run_dirs: list[Path], out_dir: Path) -> list[Path]:
    """One event directory per run, `<out_dir>/<run id>/` (run_labels): scalars `train/loss`, `eval/val_loss`...
    at their step and wall time, and the config as text. Needs tensorboardX (optional extra)."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ExportError("--tensorboard needs tensorboardX: pip install 'gigagpt[tensorboard]' "
                          "(or pip install tensorboardX)") from None
    written = []
    for run_dir, label in zip(run_dirs, run_labels(run_dirs)):
        target = Path(out_dir) / label
        with SummaryWriter(logdir=str(target)) as writer:
            for step, kind, key, value, wall in metric_rows(run_dir):
                if key != "time":
                    writer.add_scalar(f"{kind}/{key}", value, global_step=step, walltime=wall)
            try:
                config = (run_dir / "config.toml").read_text(encoding="utf-8")
                writer.add_text("config", "```\n" + config + "\n```", global_step=0)
            except OSError:
                pass
        written.append(target)
    return written


# ---------------------------------------------------------------------------- actions

def running_pid(run_dir: Path) -> int:
    """The pid of a run's live trainer on this host, or RunError saying why there is none."""
    meta = rundir.read_meta(run_dir)
    status = rundir.effective_status(meta)
    if status != "running":
        raise RunError(f"run {run_dir.name}: not running ({status})")
    if meta.get("host") != socket.gethostname():
        raise RunError(f"run {run_dir.name}: runs on {meta.get('host')}; stop it there")
    return meta["pid"]


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


def refuse_running(run_dir: Path, verb: str) -> dict:
    """meta.json of a run that is not running; RunError otherwise. The trainer rewrites meta.json
    from its memory every few seconds, so an edit made while it runs would be lost."""
    meta = rundir.read_meta(run_dir)
    if rundir.effective_status(meta) == "running":
        raise RunError(f"run {run_dir.name}: running; {verb} it after it stops")
    return meta


def rename(run_dir: Path, name: str) -> dict:
    name = name.strip()
    if not name or len(name) > NAME_MAX or any(c in name for c in "\n\r\t"):
        raise RunError(f"name {name!r}: must be 1-{NAME_MAX} characters on one line")
    meta = refuse_running(run_dir, "rename")
    meta["name"] = name
    rundir.write_json(run_dir / "meta.json", meta)
    return meta


def check_tags(tags) -> list[str]:
    for tag in tags:
        if not TAG.match(tag):
            raise RunError(f"tag {tag!r}: use letters, digits and . _ + : = / - (no spaces), at most 64")
    return list(dict.fromkeys(tags))


def set_tags(run_dir: Path, add=(), remove=(), replace: list[str] | None = None) -> dict:
    """Add and remove tags (or replace them all); returns the new meta."""
    add, remove = check_tags(add), list(remove)
    meta = refuse_running(run_dir, "tag")
    tags = check_tags(replace) if replace is not None else list(meta.get("tags") or [])
    tags = [t for t in tags if t not in remove] + [t for t in add if t not in tags]
    meta["tags"] = tags
    rundir.write_json(run_dir / "meta.json", meta)
    return meta


def delete(run_dir: Path) -> None:
    """Remove a run directory; refuses a running run (a damaged one, without meta.json, can go)."""
    try:
        meta = rundir.read_meta(run_dir)
    except RunError:
        meta = None
    if meta and rundir.effective_status(meta) == "running":
        raise RunError(f"run {run_dir.name}: running; stop it first (gigagpt runs stop {run_dir.name})")
    shutil.rmtree(run_dir)


# ---------------------------------------------------------------------------- the CLI

def cmd_list(args) -> int:
    statuses = [s for text in args.status for s in text.split(",") if s]
    for s in statuses:
        if s not in STATUSES:
            raise RunError(f"--status {s}: must be one of {', '.join(STATUSES)}")
    if args.sort and args.sort not in SORT_KEYS:
        raise RunError(f"--sort {args.sort}: must be one of {', '.join(SORT_KEYS)}")
    roots = roots_of(args)
    rows = [r for r in list_all(roots) if matches(r, args.filter or "", statuses)]
    if args.sort:
        rows = sort_rows(rows, args.sort, reverse=args.reverse)
    elif args.reverse:
        rows.reverse()
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(table(rows, TABLE[:1] + (ROOT_COLUMN,) + TABLE[1:] if len(roots) > 1 else TABLE))
    else:
        print(f"no runs in {', '.join(map(str, roots))}" + (" match" if statuses or args.filter else ""), file=sys.stderr)
    return 0


def cmd_show(args) -> int:
    run_dir = find_run(roots_of(args), args.run)
    row = run_summary(run_dir)
    if args.json:
        print(json.dumps({**row, "config": flat_config(run_dir)}, indent=2))
        return 0
    fields = [("run", row["id"]), ("name", row["name"]), ("path", row["path"]), ("status", row["status"]),
              ("preset", row["preset"]), ("step", fmt_step(row)), ("tokens", human_count(row["tokens"])),
              ("loss", fmt_loss(row["loss"])), ("val loss", fmt_loss(row["val_loss"])),
              ("best val", fmt_loss(row["best_val"])), ("tokens/s", human_count(row["tok_s"])),
              ("params", human_count(row["params"])),
              ("device", f"{row['device'] or '–'} x {row['world_size'] or 1} on {row['host'] or '?'}"),
              ("started", fmt_time(row["started"])), ("duration", fmt_duration(row["duration"])),
              ("checkpoints", f"{row['checkpoints']}" + (f", last at step {row['last_checkpoint']}"
                                                         if row["last_checkpoint"] is not None else "")),
              ("tags", ", ".join(row["tags"]) or "–")]
    if row["failure"]:
        fields.append(("failure", row["failure"]))
    if row["problem"]:
        fields.append(("problem", row["problem"]))
    for key, value in fields:
        print(f"{key:>12}  {value}")
    return 0


def cmd_stop(args) -> int:
    run_dir = find_run(roots_of(args), args.run)
    pid = running_pid(run_dir)
    send_signal(pid, signal.SIGKILL if args.kill else signal.SIGTERM)
    if args.kill:
        print(f"killed {run_dir.name} (pid {pid}); resume it from its last checkpoint with "
              f"`gigagpt resume {run_dir.name}`")
    else:
        print(f"stop requested: {run_dir.name} (pid {pid}) checkpoints after this step, then exits")
    return 0


def cmd_export(args) -> int:
    roots = roots_of(args)
    dirs = [find_run(roots, r) for r in args.runs]
    if args.csv:
        if args.csv == "-":
            n = export_csv(dirs, sys.stdout)
        else:
            with open(args.csv, "w", newline="", encoding="utf-8") as f:
                n = export_csv(dirs, f)
            print(f"wrote {n:,} rows from {len(dirs)} run(s) to {args.csv}", file=sys.stderr)
    else:
        written = export_tensorboard(dirs, Path(args.tensorboard))
        print(f"wrote {len(written)} TensorBoard run(s) under {args.tensorboard}: "
              f"tensorboard --logdir {args.tensorboard}", file=sys.stderr)
    return 0


def cmd_rm(args) -> int:
    roots = roots_of(args)
    dirs = [find_run(roots, r) for r in args.runs]
    for run_dir in dirs:  # refuse before asking, and before deleting any
        try:
            refuse_running(run_dir, "delete")
        except RunError as e:
            if "running" in str(e):
                raise RunError(f"run {run_dir.name}: running; stop it first "
                               f"(gigagpt runs stop {run_dir.name})") from None
    if not args.yes:
        if not sys.stdin.isatty():
            raise RunError("runs rm: pass --yes to delete without a question (stdin is not a terminal)")
        answer = input(f"delete {len(dirs)} run(s) ({', '.join(d.name for d in dirs)}) and their "
                       "checkpoints? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted", file=sys.stderr)
            return 1
    for run_dir in dirs:
        delete(run_dir)
        print(f"deleted {run_dir}")
    return 0


def cmd_rename(args) -> int:
    run_dir = find_run(roots_of(args), args.run)
    meta = rename(run_dir, args.name)
    print(f"{run_dir.name}: name {meta['name']!r}")
    return 0


def cmd_tag(args) -> int:
    run_dir = find_run(roots_of(args), args.run)
    if args.remove:
        meta = set_tags(run_dir, remove=args.tags)
    else:
        meta = set_tags(run_dir, add=args.tags)
    print(f"{run_dir.name}: tags {', '.join(meta['tags']) or '(none)'}")
    return 0


def cmd_compare(args) -> int:
    roots = roots_of(args)
    dirs = [find_run(roots, r) for r in args.runs]
    rows = [run_summary(d) for d in dirs]
    print(table(rows, TABLE[:-2]))
    diff = config_diff(dirs)
    print()
    if diff:
        print(table([{"key": k, "values": v} for k, v in diff],
                    [("CONFIG KEY", lambda r: r["key"])] + [
                        (label, lambda r, i=i: "–" if r["values"][i] is None else json.dumps(r["values"][i]))
                        for i, label in enumerate(run_labels(dirs))]))
    else:
        print("the configs are the same")
    return 0


def add_runs_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "runs", help="list, inspect, stop, export and delete past runs",
        description="Runs live under the runs root (--runs-root DIR, else $GIGAGPT_RUNS or ./runs), "
        "where new runs are launched, and under the extra roots of the settings file (gigagpt.toml: "
        "[runs] roots = [\"/path/a\", ...]), which are browsed alike: --runs-root replaces the default "
        "root only, the extra roots are still searched. A RUN is a run id found in one of the roots, or "
        "a run directory's path (needed when two roots hold the same id).")
    sub = p.add_subparsers(dest="runs_command", required=True, metavar="ACTION")

    def command(name, func, help):
        q = sub.add_parser(name, help=help, description=help)
        q.add_argument("--runs-root", help="the runs root (default: $GIGAGPT_RUNS or ./runs); the "
                       "settings file's [runs] roots are searched too")
        q.set_defaults(func=func)
        return q

    q = command("list", cmd_list, "every run with status, progress and losses (damaged ones with their problem)")
    q.add_argument("--status", action="append", default=[], metavar="S",
                   help=f"only runs with this status ({', '.join(STATUSES)}; repeatable or comma-separated)")
    q.add_argument("--filter", metavar="TEXT", help="only runs whose id, name, preset, device or tags hold every word")
    q.add_argument("--sort", metavar="KEY", help=f"sort by {', '.join(SORT_KEYS)}, ascending "
                   "(default: newest first)")
    q.add_argument("--reverse", action="store_true", help="reverse the order")
    q.add_argument("--json", action="store_true", help="a JSON array, one object per run")

    q = command("show", cmd_show, "one run in detail")
    q.add_argument("run", help="a run id under the runs roots, or a run directory")
    q.add_argument("--json", action="store_true", help="a JSON object, the config included")

    q = command("stop", cmd_stop, "stop a running run (SIGTERM: it checkpoints first)")
    q.add_argument("run")
    q.add_argument("--kill", action="store_true", help="SIGKILL at once: steps since the last checkpoint are lost")

    q = command("export", cmd_export, "write runs' metrics as CSV or as TensorBoard event files")
    q.add_argument("runs", nargs="+", metavar="RUN")
    out = q.add_mutually_exclusive_group(required=True)
    out.add_argument("--csv", metavar="FILE", help="long form: run,step,kind,metric,value ('-': stdout)")
    out.add_argument("--tensorboard", metavar="DIR", help="one event directory per run under DIR (needs tensorboardX)")

    q = command("rm", cmd_rm, "delete runs and their checkpoints (never a running run)")
    q.add_argument("runs", nargs="+", metavar="RUN")
    q.add_argument("-y", "--yes", action="store_true", help="do not ask")

    q = command("rename", cmd_rename, "set a run's display name (the directory keeps its id)")
    q.add_argument("run")
    q.add_argument("name")

    q = command("tag", cmd_tag, "add tags to a run (or remove them with --remove)")
    q.add_argument("run")
    q.add_argument("tags", nargs="+", metavar="TAG")
    q.add_argument("--remove", action="store_true", help="remove these tags instead")

    q = command("compare", cmd_compare, "runs side by side, and the config keys that differ")
    q.add_argument("runs", nargs="+", metavar="RUN")
