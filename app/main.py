"""`gigagpt dash` / `python -m app`: the Textual dashboard. Never imports torch."""
from __future__ import annotations

import argparse
import threading
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding

from app import launch
from app.runs import RunTail
from gigagpt.config import runs_root
from gigagpt.runs import run_dirs


class DashApp(App):
    TITLE = "gigagpt"
    CSS_PATH = Path(__file__).with_name("dash.tcss")  # absolute: subclasses may live elsewhere
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False)]

    def __init__(self, runs_root: Path, config_dirs: list[Path] = (), refresh: float = 1.0,
                 probe: bool = True, open_run: str | None = None, browse: bool = False):
        super().__init__()
        self.runs_root = Path(runs_root)
        self.config_dirs = list(config_dirs)
        self.refresh_seconds = refresh
        self.probe = probe
        self.first_run = open_run
        self.first_browse = browse
        self.devices = [launch.cpu_device()]
        self.tails: dict[str, RunTail] = {}  # every run dir under the root; only `followed` are read
        self.followed: set[str] = set()  # running runs, and runs opened in this session
        self.alive: dict[str, bool] = {}  # runs started by this process: is the trainer alive?
        self._poll_lock = threading.Lock()

    def on_mount(self) -> None:
        from app.screens.home import HomeScreen

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

    def status(self, run_id: str) -> str:
        return self.tails[run_id].status(process_alive=self.alive.get(run_id))

    def starting_pid(self, run_id: str) -> int | None:
        """The pid of a trainer this process launched that has not written meta.json yet."""
        for proc in reversed(launch.STARTED):
            if self.alive.get(run_id) and proc.run_dir.name == run_id and proc.poll() is None:
                return proc.pid
        return None

    def scan(self) -> None:
        """Find run dirs, re-read changed meta.json files, decide which runs to follow."""
        self.alive = launch.reap()
        for run_dir in run_dirs(self.runs_root):
            if run_dir.name not in self.tails:
                self.tails[run_dir.name] = RunTail(run_dir)
        for run_id, tail in list(self.tails.items()):
            if not tail.dir.exists():
                del self.tails[run_id]
                self.followed.discard(run_id)
                continue
            tail.poll_meta()
            if self.status(run_id) in ("running", "starting"):
                self.followed.add(run_id)  # re-attach: every running run is followed

    def open_run(self, run_id: str) -> None:
        from app.screens.live import LiveScreen

        if run_id not in self.tails:
            self.scan()
        if run_id not in self.tails:
            self.notify(f"no run {run_id!r} in {self.runs_root}", severity="error")
            return
        self.followed.add(run_id)
        tail = self.tails[run_id]
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
        self.call_from_thread(self.polled, {tail.id})

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
    p.add_argument("--runs-root", help="where runs live (default: $GIGAGPT_RUNS or ./runs)")
    p.add_argument("--run", metavar="RUN", help="open this run's live screen at once")
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
