"""The run directory: the contract between the trainer and its readers (docs/run-format.md).

No torch here: the dashboard and `gigagpt runs` read runs with this module.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

STATUSES = ("running", "completed", "stopped", "failed")
HEARTBEAT_SECONDS = 10  # the trainer refreshes meta.json's heartbeat this often
STALE_AFTER = 90  # a running run silent for this long is reported as crashed
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


from gigagpt.store.files import RunError  # noqa: E402,F401  (moving to gigagpt.store)


def check_run_id(run_id: str) -> str:
    if "/" in run_id or "\\" in run_id or ".." in run_id or not _SAFE_ID.match(run_id):
        raise RunError(
            f"run name {run_id!r}: use letters, digits and . _ + - (no '/', no '..', at most 128)"
        )
    return run_id


def new_run_id(root: Path, name: str) -> str:
    """'<name>-<YYYYmmdd-HHMMSS>', with a numeric suffix if that directory exists already."""
    base = check_run_id(f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_id, i = base, 1
    while (Path(root) / run_id).exists():
        i += 1
        run_id = f"{base}-{i}"
    return run_id


def atomic_write(path: Path, write, mode: str = "wb") -> None:
    """Write through a temp file in the same directory, fsync, then rename over `path`.

    A reader (or a crash) sees either the old file or the whole new one, never a torn one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json(path: Path, obj: dict) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2) + "\n"), mode="w")


def read_meta(run_dir: Path) -> dict:
    """meta.json, or raise RunError saying what is wrong with it."""
    path = Path(run_dir) / "meta.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("status") not in STATUSES:
        raise RunError(f"{path}: status = {meta.get('status') if isinstance(meta, dict) else meta!r}: "
                       f"must be one of {', '.join(STATUSES)}")
    return meta


def pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited child of ours not yet reaped) is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def effective_status(meta: dict, now: float | None = None) -> str:
    """meta's status, except 'crashed' for a 'running' run whose process is gone.

    On this host a dead pid says so at once; elsewhere a heartbeat older than STALE_AFTER does.
    """
    status = meta.get("status")
    if status != "running":
        return status
    if meta.get("host") == socket.gethostname() and not pid_alive(meta.get("pid")):
        return "crashed"
    beat = meta.get("heartbeat") or meta.get("updated") or 0
    if (now or time.time()) - beat > STALE_AFTER:
        return "crashed"
    return status


def ends_with_newline(path: Path) -> bool:
    """Whether a non-empty file's last byte is a newline (no torn last line)."""
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def append_jsonl(f, record: dict) -> None:
    """One whole line per record, flushed, so a reader sees at most one torn last line."""
    f.write(json.dumps(record, separators=(",", ":")) + "\n")
    f.flush()


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
        except FileNotFoundError:
            return 0

    def read(self, limit: int | None = None) -> tuple[bytes, bool]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            reset = self.offset > 0
            self.offset, self.inode = 0, None
            return b"", reset
        reset = self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset)
        if reset:
            self.offset = 0
        self.inode = st.st_ino
        if st.st_size <= self.offset:
            return b"", reset
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(st.st_size - self.offset if limit is None else limit)
        end = data.rfind(b"\n") + 1
        if end == 0 and limit is not None and len(data) == limit:
            end = len(data)  # one line longer than a whole chunk: skip it rather than stall on it
        self.offset += end
        return data[:end], reset

    def skip_to_line_after(self, position: int) -> None:
        """Start reading at the first line that begins after `position` (for long files)."""
        with open(self.path, "rb") as f:
            f.seek(max(0, position - 1))
            f.readline()
            self.offset = f.tell()
        self.inode = self.path.stat().st_ino


def parse_lines(data: bytes) -> tuple[list[dict], int]:
    """JSON objects from complete lines, and how many lines were not JSON objects.

    One json.loads over the whole chunk is ~2x faster than one per line; a chunk holding any bad
    line is parsed again line by line, so a bad line costs only itself.
    """
    lines = [line for line in data.split(b"\n") if line.strip()]
    if not lines:
        return [], 0
    try:
        records = json.loads(b"[" + b",".join(lines) + b"]")
        if len(records) == len(lines) and all(type(r) is dict for r in records):
            return records, 0
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass
    records, bad = [], 0
    for line in lines:
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            rec = None
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad += 1
    return records, bad


READ_CHUNK_BYTES = 4 << 20  # read_jsonl parses this much at a time: memory stays bounded


def read_jsonl(path: Path, offset: int = 0, end: int | None = None) -> tuple[list[dict], int, int]:
    """Records from byte `offset` up to the last complete line (before byte `end`, if given).

    Returns (records, next_offset, bad_lines). A torn last line is left for the next call;
    a complete line that is not a JSON object is counted in bad_lines and skipped.
    """
    records, bad = [], 0
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return [], offset, 0
    with f:
        limit = os.fstat(f.fileno()).st_size if end is None else end
        f.seek(offset)
        while offset < limit:
            data = f.read(min(READ_CHUNK_BYTES, limit - offset))
            if not data:
                break
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                if len(data) < READ_CHUNK_BYTES:
                    break  # a torn last line: left for the next call
                cut = len(data)  # one line longer than a chunk: skip it rather than stall on it
                bad += 1
            f.seek(offset + cut)
            offset += cut
            chunk, chunk_bad = parse_lines(data[:cut])
            records.extend(chunk)
            bad += chunk_bad
    return records, offset, bad


def apply_resumes(records: list[dict]) -> list[dict]:
    """Drop records that a later resume rolled back.

    A run killed after its last checkpoint logged steps that resume recomputes; the
    {"kind": "event", "event": "resume", "step": N} line marks that steps > N before it are void.
    """
    out = []
    for rec in records:
        if rec.get("kind") == "event" and rec.get("event") == "resume":
            step = rec.get("step", 0)
            out = [r for r in out if r.get("kind") == "event" or r.get("step", 0) <= step]
        out.append(rec)
    return out


def load_metrics(run_dir: Path) -> list[dict]:
    records, _, _ = read_jsonl(Path(run_dir) / "metrics.jsonl")
    return apply_resumes(records)


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first: step_*.pt files (one process or DDP), step_*.dcp
    directories (sharded) and step_*.mdl files (cstorch.save, the Cerebras backend). Temp names of
    an interrupted write start with '.' and are ignored."""
    found = [p for kind in ("pt", "dcp", "mdl") for p in Path(run_dir, "checkpoints").glob(f"step_*.{kind}")]
    return sorted(found, key=lambda p: p.name)
