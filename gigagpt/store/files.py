"""Writing run files so that a reader or a crash never sees half of one."""
from __future__ import annotations

import errno
import json
import math
import os
import secrets
import stat
from pathlib import Path


class RunError(ValueError):
    """A run that cannot be used as asked: one line for the user."""


def atomic_write(path: Path, write, mode: str = "wb") -> None:
    """Write through a temp file in the same directory, fsync, then rename over `path`.

    A reader (or a crash) sees either the old file or the whole new one, never a torn one.
    """
    path = Path(path)
    while True:  # a fresh name, created exclusively: never through a planted file or symlink
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with open(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json(path: Path, obj: dict) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2) + "\n"), mode="w")


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def ends_with_newline(path: Path) -> bool:
    """Whether a non-empty file's last byte is a newline (no torn last line)."""
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def jsonl_line(record: dict) -> str:
    """One metrics.jsonl line. A NaN or infinity is written as null: strict JSON readers refuse those tokens."""
    record = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    return json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"


def append_jsonl(f, record: dict) -> None:
    """One whole line per record, flushed, so a reader sees at most one torn last line."""
    f.write(jsonl_line(record))
    f.flush()


def os_reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


class NotRegular(OSError):
    """A path that exists but is not a regular file (a directory, a FIFO, a device)."""


def _open_file(path: Path, flags: int, mode: str):
    """os.open without blocking (a FIFO named like a run file would block a plain open until a
    writer came), then NotRegular unless it is a regular file (not a directory, FIFO or device)."""
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegular(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def open_regular(path: Path):
    """Open a regular file for binary reading (_open_file)."""
    return _open_file(path, os.O_RDONLY, "rb")


class TooLarge(OSError):
    """A file bigger than its reader accepts (refused before reading it)."""


def read_regular(path: Path, limit: int) -> bytes:
    """A regular file's bytes, or TooLarge when it has more than `limit` (its size is checked before
    reading, and what was read after: the file may grow meanwhile)."""
    with open_regular(path) as f:
        data = f.read(limit + 1) if os.fstat(f.fileno()).st_size <= limit else None
    if data is None or len(data) > limit:
        raise TooLarge(errno.EFBIG, f"larger than {limit:,} bytes", str(path))
    return data


def open_append(path: Path):
    """Open a run's log for appending, as a launcher does before the trainer starts (created if
    missing). Never blocks (a FIFO), never follows a symlink (ELOOP) and never appends to anything
    but a regular file (NotRegular)."""
    return _open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, "ab")


def user_path(text: str) -> Path:
    """A path a user typed, `~` expanded where it can be: a ~user that does not exist (or no home
    directory) stays as typed, and is then not found, instead of raising RuntimeError."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)
