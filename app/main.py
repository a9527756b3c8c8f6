"""`gigagpt dash` / `python -m app`: the Textual dashboard. Never imports torch."""
from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding

from app import launch
from app.runs import RunTail
from gigagpt.config import runs_root
from gigagpt.runs import run_dirs, runs_roots


class DashApp(App):
    TITLE = "gigagpt"
    CSS_PATH = Path(__file__).with_name("dash.tcss")  # absolute: subclasses may live elsewhere
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False)]

    def __init__(self, runs_root: Path, config_dirs: list[Path] = (), refresh: float = 1.0,
                 probe: bool = True, open_run: str | None = None, browse: bool = False):
        super().__init__()
        self.runs_root = Path(runs_root)  # where new runs go
        # ... and every root browsed: it, then the settings file's [runs] roots that can be read
        self.runs_roots, self.root_problems = runs_roots(self.runs_root)
        self._real_roots = {os.path.realpath(r): r for r in self.runs_roots}
        self.config_dirs = list(config_dirs)
        self.refresh_seconds = refresh
        self.probe = probe
        self.first_run = open_run
        self.first_browse = browse
        self.devices = [launch.cpu_device()]
        # Runs are keyed by run_key(): their id in the runs root, their path in an extra root.
        self.tails: dict[str, RunTail] = {}  # every run dir under the roots; only `followed` are read
        self.followed: set[str] = set()  # running runs, and runs opened in this session
        self.alive: dict[str, bool] = {}  # runs started by this process: is the trainer alive?
        self._poll_lock = threading.Lock()

    def on_mount(self) -> None:
        from app.screens.home import HomeScreen

        for problem in self.root_problems:
            self.notify(problem, severity="warning", timeout=10, markup=False)
        self.scan()  # meta.json of every run, before the first frame: the runs table is not empty
        self.push_screen(HomeScreen())
        if self.first_browse:
            self.browse_runs()
        if self.first_run:
            self.open_run(self.first_run)
        if self.probe:
            self.probe_devices()
        self.poll_runs()
        self.set_interval(self.refresh_seconds, self.poll_runs)

    # -- runs

    def run_key(self, root: Path, run_id: str) -> str:
        """What the dashboard calls a run: its id in the runs root; in an extra root, its path
        (two roots may hold the same id)."""
        return run_id if root == self.runs_root else str(Path(root) / run_id)

    def key_of(self, run_dir: Path) -> str:
        run_dir = Path(run_dir)
        root = self._real_roots.get(os.path.realpath(run_dir.parent))
        return self.run_key(root, run_dir.name) if root is not None else str(run_dir)

    def status(self, key: str) -> str:
        return self.tails[key].status(process_alive=self.alive.get(key))

    def starting_pid(self, key: str) -> int | None:
        """The pid of a trainer this process launched that has not written meta.json yet."""
        for proc in reversed(launch.STARTED):
            if self.alive.get(key) and self.key_of(proc.run_dir) == key and proc.poll() is None:
                return proc.pid
        return None

    def scan(self) -> None:
        """Find run dirs, re-read changed meta.json files, decide which runs to follow."""
        self.alive = {self.key_of(d): alive for d, alive in launch.reap().items()}
        for root in self.runs_roots:
            for run_dir in run_dirs(root):
                key = self.run_key(root, run_dir.name)
                if key not in self.tails:
                    self.tails[key] = RunTail(run_dir, key)
        for run_id, tail in list(self.tails.items()):
            if not tail.dir.exists():
                del self.tails[run_id]
                self.followed.discard(run_id)
                continue
            tail.poll_meta()
            if self.status(run_id) in ("running", "starting"):
                self.followed.add(run_id)  # re-attach: every running run is followed

    def roots_title(self) -> str:
        """`Runs in ROOT`, and how many more roots are browsed (a pane's title)."""
        more = len(self.runs_roots) - 1
        return f"Runs in {self.runs_root}" + (f" + {more} more root{'s' if more > 1 else ''}" if more else "")

    def find_key(self, run: str) -> str | None:
        """A run's key from its key, its path, or an id that only one extra root holds."""
        if run in self.tails:
            return run
        if os.sep in run and self.key_of(Path(run)) in self.tails:
            return self.key_of(Path(run))
        keys = [k for k, tail in self.tails.items() if tail.id == run]
        return keys[0] if len(keys) == 1 else None

    def open_run(self, run: str) -> None:
        """The live screen of a run, given as its key (run_key), or its path, or an unambiguous id."""
        from app.screens.live import LiveScreen

        key = self.find_key(run)
        if key is None:
            self.scan()
            key = self.find_key(run)
        if key is None:
            where = ", ".join(map(str, self.runs_roots))
            self.notify(f"no run {run!r} in {where}" if not any(t.id == run for t in self.tails.values())
                        else f"run {run!r} is in several runs roots: open it by its path", severity="error")
            return
        self.followed.add(key)
        tail = self.tails[key]
        tail.poll()  # a normal run is read at once; a long one shows its end now, the rest behind
        if tail.history_end:
            self.load_history(tail)
        self.push_screen(LiveScreen(tail))

    def browse_runs(self) -> None:
        from app.screens.runs import RunsScreen

        self.push_screen(RunsScreen())

    @work(thread=True, exit_on_error=False, group="poll")
    def poll_runs(self) -> None:
        if not self._poll_lock.acquire(blocking=False):
            return  # the previous poll is still reading: skip this tick
        try:
            self.scan()
            changed = {run_id for run_id in list(self.followed) if self.tails[run_id].poll()}
        finally:
            self._poll_lock.release()
        self.call_from_thread(self.polled, changed)

    def polled(self, changed: set[str]) -> None:
        for run_id in changed:
            tail = self.tails[run_id]
            if tail.history_end and not tail.history_loading:
                self.load_history(tail)
        if hasattr(self.screen, "runs_changed"):
            self.screen.runs_changed(changed)

    @work(thread=True, exit_on_error=False, group="history")
    def load_history(self, tail: RunTail) -> None:
        tail.history_loading = True
        try:
            tail.load_history()
        finally:
            tail.history_loading = False
        self.call_from_thread(self.polled, {tail.key})

    # -- devices

    @work(thread=True, exit_on_error=False, group="probe")
    def probe_devices(self) -> None:
        devices, problem = launch.probe_devices()
        self.call_from_thread(self.devices_found, devices, problem)

    def devices_found(self, devices, problem) -> None:
        self.devices = devices
        if problem:
            self.notify(problem, severity="warning")
        for screen in self.screen_stack:
            if hasattr(screen, "devices_changed"):
                screen.devices_changed()

    def action_help(self) -> None:
        from app.screens.dialogs import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gigagpt dash", description="Launch and watch training runs.")
    p.add_argument("--configs", action="append", default=[], metavar="DIR",
                   help="another directory of TOML configs to offer besides the presets (repeatable)")
    p.add_argument("--runs-root", help="where new runs go (default: $GIGAGPT_RUNS or ./runs); runs are "
                   "browsed there and in the settings file's [runs] roots (gigagpt.toml)")
    p.add_argument("--run", metavar="RUN", help="open this run's live screen at once (an id, or a path)")
    p.add_argument("--browse", action="store_true", help="open the runs screen (browse, compare, export) at once")
    p.add_argument("--refresh", type=float, default=1.0, metavar="SECONDS",
                   help="how often to read runs and redraw (default: 1)")
    p.add_argument("--no-probe", action="store_true", help="offer only the CPU (skip the torch device probe)")
    args = p.parse_args(argv)
    for d in args.configs:
        if not Path(d).is_dir():
            p.error(f"--configs {d}: not a directory")
    if args.refresh <= 0:
        p.error("--refresh must be > 0")
    app = DashApp(Path(args.runs_root) if args.runs_root else runs_root(), [Path(d) for d in args.configs],
                  refresh=args.refresh, probe=not args.no_probe, open_run=args.run,
                  browse=args.browse)
    app.run()
    return app.return_code or 0
