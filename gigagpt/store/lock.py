"""A trainer's ownership of its run directory, and whether a run is running or crashed.

The trainer holds an exclusive flock on `<run>/.lock` for its whole life; the kernel releases it
on any death (a kill, an OOM, a power-off of the process), and a suspended trainer (SIGSTOP, a
debugger) keeps it. So on the run's own host the lock decides `running` vs `crashed`; for a run on
another host (a shared filesystem, where flock may not cross machines) the heartbeat does.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import time
from pathlib import Path

import psutil

from gigagpt.store.files import RunError

LOCK_FILE = ".lock"
HEARTBEAT_SECONDS = 10  # the trainer refreshes meta.json's heartbeat this often
STALE_AFTER = 90  # a run on another host silent for this long is reported as crashed
HOST = socket.gethostname()


class RunLock:
    """The exclusive lock a trainer (or a deletion) holds on a run directory."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self, what: str = "train", wait: float = 2.0) -> RunLock:
        """Take the lock or raise RunError naming its holder. Readers probe it with a shared lock
        for a moment, so a busy lock is retried for `wait` seconds before giving up."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as e:  # a read-only or vanished run directory, a .lock that is not a file
            raise RunError(f"run {self.path.parent.name}: cannot open its lock file {LOCK_FILE} "
                           f"({e.strerror or e})") from None
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    os.close(fd)
                    holder = holder_pid(self.path.parent)
                    raise RunError(f"run {self.path.parent.name}: in use by "
                                   f"{f'process {holder}' if holder else 'another process'} "
                                   f"(a trainer or a deletion); {what} it after that stops") from None
                time.sleep(0.05)
        if not _still_linked(fd, self.path):  # a deletion renamed the run away meanwhile
            os.close(fd)
            raise RunError(f"run {self.path.parent.name}: being deleted")
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # a full disk: the lock holds all the same; the pid only names the holder
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _still_linked(fd: int, path: Path) -> bool:
    """Whether the locked file is still the one at `path` (not renamed away or unlinked)."""
    try:
        st, now = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return st.st_nlink > 0 and (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino)


def is_locked(run_dir: Path) -> bool | None:
    """True while some process holds the run's lock, False when nobody does, None when the run
    has no lock file (written by an older trainer) or it cannot be opened."""
    return file_locked(Path(run_dir) / LOCK_FILE)


def file_locked(path: Path) -> bool | None:
    """Whether some process holds a flock on `path` (a shared-lock probe); None without the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError as e:
        return True if e.errno in (errno.EAGAIN, errno.EACCES) else None
    finally:
        os.close(fd)  # also drops the shared lock just taken


def hold(path: Path) -> int | None:
    """An flock on the directory `path` while the returned descriptor stays open (the kernel drops
    it on any death, SIGKILL included): `abandoned` never takes a held directory for a leftover."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # a filesystem without locks: the pid alone decides
        pass
    return fd


def abandoned(path: Path, pid: str) -> bool:
    """Whether `path`, a directory named for the pid of the process that made it, is a leftover to
    remove: our own (as root, another user's would be removable too), that process gone or its pid
    reused since the directory was last written, and not held (a live maker in another pid namespace,
    or across a clock step, looks gone by its pid alone). A symlink or a file is never one."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and pid.isdigit() and st.st_uid == os.getuid()
            and not pid_alive(int(pid), started_by=st.st_mtime) and not file_locked(path))


def holder_pid(run_dir: Path) -> int | None:
    try:
        text = (Path(run_dir) / LOCK_FILE).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and 0 < int(text) < 2**31 else None


def pid_alive(pid, started_by: float | None = None) -> bool:
    """A live process on this host (a zombie, exited but not yet reaped, is dead), and, given
    `started_by` (a time the trainer was alive), one started by then: a reused pid is not the trainer."""
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 2**31:
        return False
    try:
        proc = psutil.Process(pid)
        if started_by is not None and proc.create_time() > started_by + 5:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # exists, but we may not look at it


def liveness(run_dir: Path, host, pid, heartbeat, now: float | None = None) -> str:
    """`running` or `crashed` for a run whose meta.json says running: by its lock on this host,
    by its pid for a run whose trainer never took the lock (an older trainer; the lock file may
    then be a rename's or a deletion's), by its heartbeat on another host."""
    if host == HOST:
        locked = is_locked(run_dir)
        if locked:
            return "running"
        if locked is False and holder_pid(run_dir) == pid:
            return "crashed"  # the trainer held it, and the kernel let go when it died
        # the trainer wrote its heartbeat, so it was started before it: a younger process reuses its pid
        return "running" if pid_alive(pid, started_by=heartbeat) else "crashed"
    if (now or time.time()) - (heartbeat or 0) > STALE_AFTER:
        return "crashed"
    return "running"
