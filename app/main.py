"""`gigagpt dash` / `python -m app`: the Textual dashboard. Never imports torch.

The app owns the RunTracker (app/tracker.py), polls it from a worker and tells its screens
(RunsChanged); screens ask it for things with messages (OpenRun, RunClosed, BrowseRuns, RefreshRuns)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from textual import on, work
from textual.app import App
from textual.binding import Binding

from app import launch
from app.follow import RunTail
from app.messages import BrowseRuns, DevicesChanged, OpenRun, RefreshRuns, RunClosed, RunsChanged
from app.tracker import RunTracker
from gigagpt.config import ConfigError
from gigagpt.settings import cache_dir, data_root, runs_root, settings_path
from gigagpt.store.files import RunError
from gigagpt.store.layout import find_run, root_problem, runs_roots
from gigagpt.store.meta import printable


class DashApp(App):
    TITLE = "gigagpt"
    CSS_PATH = Path(__file__).with_name("dash.tcss")  # absolute: subclasses may live elsewhere
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False),
                Binding("ctrl+g", "start_runner", "Start the queue runner", show=False)]

    def __init__(self, runs_root: Path, config_dirs: list[Path] = (), refresh: float = 1.0,
                 probe: bool = True, open_run: str | None = None, browse: bool = False):
        super().__init__()
        self.runs_root = Path(runs_root)  # where new runs go
        # ... and every root browsed: it, then the settings file's [runs] roots that can be read
        self.runs_roots, self.root_problems = runs_roots(self.runs_root)
        self.tracker = RunTracker(self.runs_root, self.runs_roots)
        self.config_dirs = list(config_dirs)
        self.refresh_seconds = refresh
        self.probe = probe
        self.first_run = open_run
        self.first_browse = browse
        self.devices = [launch.cpu_device()]

    def on_mount(self) -> None:
        from app.screens.home import HomeScreen

        problem = root_problem(self.runs_root)  # not found: a new setup, made at the first launch
        if problem and problem != "not found":
            self.notify(f"runs root {self.runs_root}: {problem}", severity="error", timeout=10)
        for problem in self.root_problems:
            self.notify(problem, severity="warning", timeout=10)
        self.push_screen(HomeScreen())
        if self.first_browse:
            self.browse_runs()
        if self.first_run:
            self.open_run(self.first_run)
        if self.probe:
            self.probe_devices()
        # The first listing behind the first frame: a cold summary cache or a huge metrics.jsonl
        # takes seconds to scan once (the screens say they are reading until it arrives).
        self.poll_runs(force=True)
        self.set_interval(self.refresh_seconds, self.poll_runs)

    # -- runs

    def status(self, key: str) -> str:
        return self.tracker.status(key)

    def roots_title(self) -> str:
        """`Runs in ROOT`, and how many more roots are browsed (a pane's title)."""
        more = len(self.runs_roots) - 1
        return f"Runs in {self.runs_root}" + (f" + {more} more root{'s' if more > 1 else ''}" if more else "")

    def open_run(self, run: str) -> None:
        """The live screen of a run given as its key, its path (in a runs root or not), its id or a
        name one run has; a message when there is no such run (or several)."""
        from app.screens.live import LiveScreen

        try:
            key = self.tracker.resolve(run)
            tail = self.tracker.follow(key)
        except RunError as e:
            self.notify(str(e), severity="error")
            return
        if tail.history_end:
            self.load_history(tail)
        self.push_screen(LiveScreen(tail))

    def follow_launched(self, run_dir: Path) -> str:
        """A trainer just started by a screen: followed at once (starting until meta.json)."""
        return self.tracker.launched(run_dir)

    def browse_runs(self) -> None:
        from app.screens.runs import RunsScreen

        self.push_screen(RunsScreen())

    @on(OpenRun)
    def _open_run(self, message: OpenRun) -> None:
        self.open_run(message.run)

    @on(RunClosed)
    def _run_closed(self, message: RunClosed) -> None:
        self.tracker.unfollow(message.key)

    @on(BrowseRuns)
    def _browse_runs(self, message: BrowseRuns) -> None:
        self.browse_runs()

    @on(RefreshRuns)
    def _refresh_runs(self, message: RefreshRuns) -> None:
        self.poll_runs(force=True)

    @work(thread=True, exit_on_error=False, group="poll")
    def poll_runs(self, force: bool = False) -> None:
        changed = self.tracker.refresh(force)
        if changed is not None:  # None: the previous poll is still reading
            self.call_from_thread(self.polled, changed)

    def polled(self, changed: set[str]) -> None:
        self.sub_title = self.tracker.queue.line(max(40, self.size.width - 20))  # the header's second part
        for key in changed:
            tail = self.tracker.tails.get(key)
            if tail is not None and tail.history_end and not tail.history_loading:
                self.load_history(tail)
        self.screen.post_message(RunsChanged(changed))

    @work(thread=True, exit_on_error=False, group="history")
    def load_history(self, tail: RunTail) -> None:
        tail.history_loading = True
        try:
            tail.load_history()
        finally:
            tail.history_loading = False
        self.call_from_thread(self.polled, {tail.key})

    # -- the queue runner

    def action_start_runner(self, root: str | None = None) -> None:
        """ctrl+g: the runner of the runs root, or of `root` (the runs screen's: its cursor's run's)."""
        root = str(root or self.runs_root)
        if self.tracker.queue.runner(root) is not None:  # one holds the root: say so, start nothing
            self.notify(self.tracker.queue.root_line(root), timeout=4)
            return
        where = "" if root == str(self.runs_root) else f" of {root}"
        self.notify(f"starting the queue runner{where} …", timeout=2)
        self.start_runner(Path(root))

    @work(thread=True, exit_on_error=False, group="runner")
    def start_runner(self, root: Path) -> None:
        """`gigagpt queue run` for a runs root: the runner detaches (it outlives the dashboard)."""
        from app import queue

        ok, said = queue.cli(queue.runner_args(root))
        self.call_from_thread(self.runner_started, ok, said)

    def runner_started(self, ok: bool, said: str) -> None:
        self.notify(said, severity="information" if ok else "error")
        self.poll_runs(force=True)

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
            screen.post_message(DevicesChanged())

    def notify(self, message: str, **kwargs) -> None:
        """Notifications are plain text, never markup: they quote run names, paths and errors,
        and a `[` in one would garble the toast or raise."""
        super().notify(message, **{**kwargs, "markup": False})

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
    p.add_argument("--run", metavar="RUN", help="open this run's live screen at once: an id or a name in the "
                   "runs roots, or the path of any run directory (one outside the roots too)")
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
    try:  # a $GIGAGPT_* path that cannot be used (~nouser) is one line, before the screen is taken
        root = Path(args.runs_root) if args.runs_root else runs_root()
        data_root(), cache_dir(), settings_path()
    except ConfigError as e:
        print(f"gigagpt dash: error: {printable(str(e))}", file=sys.stderr)
        return 2
    open_run = None
    if args.run is not None:  # a bad --run is one line and exit 2, before the screen is taken
        try:
            open_run = str(find_run(runs_roots(root)[0], args.run))
        except RunError as e:
            print(f"gigagpt dash: error: --run: {e}", file=sys.stderr)  # one line, as the CLI's errors
            return 2
    app = DashApp(root, [Path(d) for d in args.configs], refresh=args.refresh, probe=not args.no_probe,
                  open_run=open_run, browse=args.browse)
    app.run()
    return app.return_code or 0
