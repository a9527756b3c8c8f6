"""What the dashboard knows about runs: a summary row of every run under the runs roots (the
store's cached summaries), and a live RunTail of each run it follows (running ones, and the ones
opened in this session, a run outside the roots included). No Textual: the app polls it from a
worker thread; its screens read `rows` and `tails`.

A run is called by its key: its id in the runs root, its path in an extra root (two roots may
hold the same id) or outside the roots.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from app import launch
from app.follow import RunTail
from app.queue import QueueWatch
from gigagpt.store.layout import find_run
from gigagpt.store.summary import SummaryCache, list_all, summary, update_entry

MISSING_META = "meta.json: missing"
LIST_CPU_SHARE = 0.05  # with many runs, listing them may take this share of a core, no more


class RunTracker:
    def __init__(self, runs_root: Path, roots: list[Path]):
        self.runs_root = Path(runs_root)  # where new runs go
        self.roots = list(roots)  # it first, then the settings file's roots that can be read
        self._real_roots = {os.path.realpath(r): r for r in self.roots}
        self.caches: dict[Path, SummaryCache] = {}  # one per root
        self.rows: dict[str, dict] = {}  # key -> summary row (with "key"), newest first
        self.listed = False  # the roots were read at least once
        self.tails: dict[str, RunTail] = {}  # followed runs, read as they are written
        self.followed: set[str] = set()  # running runs, and runs opened in this session
        self.outside: dict[str, Path] = {}  # runs opened from outside the roots, by key
        self.resolved: dict[str, Path] = {}  # run directories found by resolve(), by key
        self._outside_entries: dict[str, dict] = {}  # their summary state (store.summary entries)
        self.alive: dict[str, bool] = {}  # runs started by this process: is the trainer alive?
        self._list_due = 0.0
        self._lock = threading.Lock()  # one refresh at a time
        self.queue = QueueWatch(self.runs_root, self.roots)  # each root's runner, queued runs' positions

    # -- keys

    def run_key(self, root: Path, run_id: str) -> str:
        return run_id if Path(root) == self.runs_root else str(Path(root) / run_id)

    def key_of(self, run_dir: Path) -> str:
        run_dir = Path(run_dir)
        root = self._real_roots.get(os.path.realpath(run_dir.parent))
        return self.run_key(root, run_dir.name) if root is not None else str(run_dir.absolute())

    def path_of(self, key: str) -> Path | None:
        if key in self.tails:
            return self.tails[key].dir
        if key in self.rows:
            return Path(self.rows[key]["path"])
        return self.resolved.get(key)

    def resolve(self, run: str) -> str:
        """The key of a run given as a key, a run directory's path (in a root or not), an id or a
        name one run has (store.layout.find_run). RunError saying why not."""
        if run in self.rows or run in self.tails:
            return run
        run_dir = find_run(self.roots, run)
        key = self.key_of(run_dir)
        self.resolved[key] = Path(run_dir)
        if self._real_roots.get(os.path.realpath(run_dir.parent)) is None:
            self.outside[key] = Path(run_dir).absolute()
        return key

    # -- status

    def status(self, key: str) -> str:
        if key in self.tails:
            return self.tails[key].status(process_alive=self.alive.get(key))
        row = self.rows.get(key)
        return row["status"] if row else "damaged"

    def starting_pid(self, key: str) -> int | None:
        """The pid of a trainer this process launched that has not written meta.json yet."""
        for proc in reversed(launch.STARTED):
            if self.alive.get(key) and self.key_of(proc.run_dir) == key and proc.poll() is None:
                return proc.pid
        return None

    # -- following

    def follow(self, key: str) -> RunTail:
        """Start following a run (its key from resolve): read at once, then at every refresh."""
        tail = self.tails.get(key)
        if tail is None:
            tail = self.tails[key] = RunTail(self.path_of(key) or Path(key), key)
        self.followed.add(key)
        tail.poll()  # a normal run is read at once; a long one shows its end now, the rest behind
        return tail

    def unfollow(self, key: str) -> None:
        """Stop reading a run whose live screen closed, unless it is running or starting (those
        are followed while the dashboard runs). A run outside the roots stays in `rows`."""
        if key in self.tails and self.status(key) not in ("running", "starting"):
            self.followed.discard(key)
            self.tails.pop(key, None)

    def launched(self, run_dir: Path) -> str:
        """A trainer this process just started in run_dir: followed (`starting` until meta.json)."""
        key = self.key_of(run_dir)
        self.alive[key] = True
        self.tails.setdefault(key, RunTail(run_dir, key))
        self.followed.add(key)
        self._list_due = 0.0
        return key

    # -- reading

    def refresh(self, force: bool = False) -> set[str] | None:
        """List the roots (when due: a big listing is paced to LIST_CPU_SHARE of a core) and read
        what is new in every followed run. The keys of followed runs that changed, or None when the
        previous refresh is still running."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            self.alive = {self.key_of(d): alive for d, alive in launch.reap().items()}
            self.queue.poll_runner()
            if force or time.monotonic() >= self._list_due:
                self._list()
            for key in [k for k, t in self.tails.items() if not os.path.isdir(t.dir)]:
                self.tails.pop(key)  # deleted
                self.followed.discard(key)
            return {key for key in list(self.followed) if key in self.tails and self.tails[key].poll()}
        finally:
            self._lock.release()

    def _list(self) -> None:
        start = time.thread_time()
        rows = list_all(self.roots, self.caches)
        for row in rows:
            row["key"] = self.run_key(Path(row["root"]), row["id"])  # "root" is the root as given
        for key, path in self.outside.items():
            entry, _ = update_entry(path, self._outside_entries.get(key))
            self._outside_entries[key] = entry
            rows.append({**summary(path, entry), "key": key})
        rows.sort(key=lambda r: (r["started"] or 0, r["id"]), reverse=True)
        out = {}
        for row in rows:
            key = row["key"]
            if row["status"] == "damaged" and key in self.alive and (row["problem"] or "").startswith(MISSING_META):
                # launched here, no meta.json yet: not damaged, starting (or it died first)
                row["status"] = "starting" if self.alive[key] else "not started"
                row["problem"] = None if self.alive[key] else "the trainer exited before writing meta.json"
            out[key] = row
            if row["status"] == "running" and key not in self.tails:
                self.tails[key] = RunTail(Path(row["path"]), key)  # re-attach: every running run
                self.followed.add(key)
        self.queue.annotate(out)
        self.rows, self.listed = out, True
        self._list_due = time.monotonic() + (time.thread_time() - start) * (1 / LIST_CPU_SHARE - 1)
