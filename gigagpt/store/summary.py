"""A run's summary (its row in `runs list` and the dashboard's runs table), and the per-root
summary cache `<root>/.summaries.json` (docs/run-format.md, "The summary cache"): a listing
re-reads only the files whose size or mtime changed. A damaged run is a row with status
`damaged` and its problem, never an exception; a damaged cache is rebuilt."""
from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path

from gigagpt.store import layout
from gigagpt.store.files import RunError, atomic_write, open_regular, os_reason, read_regular
from gigagpt.store.lock import liveness
from gigagpt.store.meta import CHECKS, check_meta, printable, read_meta
from gigagpt.store.scan import check_state, scan_metrics

SUMMARY_CACHE = ".summaries.json"
CACHE_VERSION = 2
CACHE_MAX_BYTES = 32 << 20  # ~30 KB a run: far more than any real root needs
STATUSES = ("running", "completed", "stopped", "failed", "crashed", "damaged", "queued", "cancelled")
# meta.json keys a summary keeps (the cache stays small: no command line, no versions)
META_KEYS = ("id", "name", "tags", "preset", "status", "failure", "pid", "host", "device", "world_size",
             "created", "updated", "heartbeat", "step", "max_steps", "tokens_per_step", "params")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint cannot be loaded, judged without torch: a .pt file is a zip archive
    (torch.save's format); a sharded .dcp directory has DCP's .metadata; a .mdl file is HDF5."""
    try:
        if path.suffix == ".dcp":
            return None if (path / ".metadata").is_file() else f"checkpoint {path.name}: no .metadata (incomplete)"
        with open_regular(path) as f:
            if path.suffix == ".mdl":
                ok = f.read(8) == HDF5_MAGIC
                return None if ok else f"checkpoint {path.name}: not an HDF5 file (truncated or corrupt)"
            if not zipfile.is_zipfile(f):
                return f"checkpoint {path.name}: not a torch checkpoint (truncated or corrupt)"
    except (OSError, ValueError) as e:
        return f"checkpoint {path.name}: unreadable ({os_reason(e)})"
    return None


def scan_checkpoints(run_dir: Path) -> dict:
    ckpts = layout.checkpoints(run_dir)
    if not ckpts:
        problem = None
        if os.path.lexists(run_dir / "checkpoints") and layout.entries(run_dir / "checkpoints", follow=True) is None:
            problem = "checkpoints: not a directory"
        return {"count": 0, "last": None, "problem": problem}
    return {"count": len(ckpts), "last": layout.checkpoint_step(ckpts[-1]), "problem": checkpoint_problem(ckpts[-1])}


def _stamp(path: Path) -> list | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def read_meta_part(run_dir: Path) -> dict:
    """meta.json's listed keys, or {"error": why} (the cached form; checked again when read back)."""
    try:
        meta = read_meta(run_dir)
    except RunError as e:
        return {"error": str(e)}
    return {k: meta.raw.get(k) for k in META_KEYS if k in meta.raw}


def _check_entry(entry) -> bool:
    """Whether a cache entry has the shape update_entry makes; anything else is re-read."""
    if not isinstance(entry, dict):
        return False
    meta, ckpt = entry.get("meta"), entry.get("ckpt")
    if not isinstance(meta, dict) or not isinstance(ckpt, dict) or not check_state(entry.get("metrics")):
        return False
    if "error" in meta:
        if not isinstance(meta["error"], str) or len(meta) != 1:
            return False
    else:
        try:
            check_meta(meta)
        except RunError:
            return False
    count, last, problem = ckpt.get("count"), ckpt.get("last"), ckpt.get("problem")
    # a file that is not there has no stamp: its part must say so (a crafted entry would be trusted forever)
    if entry.get("meta_stamp") is None and "error" not in meta:
        return False
    if entry.get("metrics_stamp") is None and entry["metrics"].get("offset"):
        return False
    return (type(count) is int and count >= 0 and (last is None or type(last) is int)
            and (problem is None or isinstance(problem, str))
            and all(s is None or (isinstance(s, list) and len(s) == 3 and all(type(x) is int for x in s))
                    for s in (entry.get("meta_stamp"), entry.get("metrics_stamp"), entry.get("ckpt_stamp"))))


def update_entry(run_dir: Path, entry: dict | None) -> tuple[dict, bool]:
    """A run's cache entry, re-reading only the files whose size or mtime changed. (entry, changed)"""
    entry = dict(entry) if _check_entry(entry) else {}
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
    scan, ckpt = entry["metrics"], entry["ckpt"]
    error = entry["meta"].get("error")
    meta = {k: None for k in CHECKS} if error else {**{k: None for k in CHECKS}, **entry["meta"]}
    last = scan.get("last") or {}
    problems = [p for p in (error, scan.get("problem"), ckpt.get("problem")) if p]
    if scan.get("bad_lines"):
        problems.append(f"metrics.jsonl: {scan['bad_lines']} lines are not JSON objects (skipped)")
    if error:
        status = "damaged"
    elif meta["status"] == "running":
        status = liveness(run_dir, meta["host"], meta["pid"], meta["heartbeat"], now)
    else:
        status = meta["status"]
    created = meta["created"]
    end = now if status == "running" else (meta["updated"] or last.get("time"))
    step = meta["step"] if meta["step"] is not None else last.get("step")
    tokens = last.get("tokens")
    if tokens is None and step is not None and meta["tokens_per_step"]:
        tokens = step * meta["tokens_per_step"]
    name = printable(meta["name"] or "") or printable(run_dir.name)
    return {
        "id": run_dir.name, "path": str(run_dir), "root": str(run_dir.parent), "name": name,
        "tags": list(meta["tags"] or []), "preset": meta["preset"] and printable(meta["preset"]), "status": status,
        "failure": meta["failure"] and printable(meta["failure"]), "problem": "; ".join(problems) or None,
        "step": step, "max_steps": meta["max_steps"], "tokens": tokens,
        "loss": last.get("loss"), "val_loss": scan.get("val"), "best_val": scan.get("best_val"),
        "tok_s": last.get("tok_s"), "device": meta["device"] and printable(meta["device"]),
        "world_size": meta["world_size"], "host": meta["host"] and printable(meta["host"]), "pid": meta["pid"],
        "params": meta["params"], "started": created,
        "duration": max(0.0, end - created) if created and end else None,
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
            saved = json.loads(read_regular(self.path, CACHE_MAX_BYTES))
            if isinstance(saved, dict) and saved.get("version") == CACHE_VERSION and isinstance(saved.get("runs"), dict):
                self.entries = saved["runs"]
        except (OSError, ValueError, RecursionError):
            pass

    def save(self) -> None:
        try:
            # compact: json's C encoder (indent= makes it the pure-Python one, 5x slower)
            atomic_write(self.path, lambda f: f.write(json.dumps({"version": CACHE_VERSION, "runs": self.entries},
                                                                 separators=(",", ":"))), mode="w")
        except (OSError, ValueError):
            pass  # a read-only runs root: listings stay correct, only slower


def list_runs(root: Path, cache: SummaryCache | None = None) -> list[dict]:
    """A summary of every run under `root`, newest first, damaged runs included with their problem."""
    cache = cache or SummaryCache(root)
    entries, dirty, now, rows = {}, False, time.time(), []
    for run_dir in layout.run_dirs(root):
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


def run_summary(run_dir: Path) -> dict:
    entry, _ = update_entry(Path(run_dir), None)
    return summary(Path(run_dir), entry)


def run_status(run_dir: Path) -> str:
    """`damaged`, or meta.json's status with `crashed` for a running run whose trainer is gone."""
    try:
        meta = read_meta(run_dir)
    except RunError:
        return "damaged"
    if meta.status != "running":
        return meta.status
    return liveness(run_dir, meta.host, meta.pid, meta.heartbeat)
