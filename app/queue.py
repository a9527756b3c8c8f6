"""Queues and sweeps in the dashboard, without Textual: the `gigagpt queue ...` and `gigagpt sweep`
command lines it runs (subprocesses, as app/launch.py starts trainers: the queue runner is a
detached process that outlives the dashboard), the sweep form's checks (the core's own), the
queue position of each queued run and the runner's state in one line. Never imports torch.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

from app import launch
from app.cells import short
from app.launch import Preset
from gigagpt.config import ConfigError, load_config
from gigagpt.queue_cli import MAX_SWEEP, parse_grid
from gigagpt.store.files import RunError
from gigagpt.store.meta import printable, read_meta
from gigagpt.store.queue import order_of, runner_state

CLI_TIMEOUT = 120  # seconds: queueing is checking a config and writing two files a run


# ---------------------------------------------------------------------------- the command lines

def cli(args: list[str]) -> tuple[bool, str]:
    return launch.cli(args, CLI_TIMEOUT)


def set_args(overrides: list[str]) -> list[str]:
    return [x for text in overrides for x in ("--set", text)]


def add_args(preset: Preset, overrides: list[str], name: str, root: Path) -> list[str]:
    """`gigagpt queue add` of the launch form's run (the --set list the launch uses)."""
    return ["queue", "add", str(preset.path.resolve()), *set_args(overrides), *(["--name", name] if name else []),
            "--runs-root", str(Path(root).absolute())]


def sweep_args(preset: Preset, overrides: list[str], grid: list[str], name: str, root: Path) -> list[str]:
    """`gigagpt sweep` of the launch form's config over the grid (`section.key=v1,v2,...` each)."""
    return ["sweep", str(preset.path.resolve()), *[x for g in grid for x in ("--grid", g)], *set_args(overrides),
            *(["--name", name] if name else []), "--runs-root", str(Path(root).absolute())]


def move_args(run_dir: Path, position: int) -> list[str]:
    return ["queue", "move", str(Path(run_dir).absolute()), str(position), "--runs-root",
            str(Path(run_dir).parent.absolute())]


def cancel_args(run_dirs: list[Path]) -> list[str]:
    """`gigagpt queue cancel` of runs of one root."""
    return ["queue", "cancel", *[str(Path(d).absolute()) for d in run_dirs], "--runs-root",
            str(Path(run_dirs[0]).parent.absolute())]


def runner_args(root: Path) -> list[str]:
    """`gigagpt queue run`: it detaches the runner (its own session, its log in the root) and returns."""
    return ["queue", "run", "--runs-root", str(Path(root).absolute())]


def check_sweep(preset: Preset, overrides: list[str], grid: list[str]) -> int:
    """The sweep form's checks before anything is queued, by the core's own rules (what `gigagpt
    sweep` checks: each --grid text, then the config of every combination, the form's values
    under it). The number of runs; ConfigError with the core's message."""
    parsed = parse_grid(grid)
    combos = list(itertools.islice(itertools.product(*[vs for _, vs in parsed]), MAX_SWEEP + 1))
    if len(combos) > MAX_SWEEP:
        raise ConfigError(f"more than {MAX_SWEEP} combinations; sweep fewer values")
    for combo in combos:
        try:
            load_config(preset.path, overrides + [f"{k}={v}" for (k, _), v in zip(parsed, combo)], check_data=True)
        except ConfigError as e:
            raise ConfigError(str(e).removeprefix("--set: ").removeprefix(f"{preset.path}: ")) from None
    return len(combos)


# ---------------------------------------------------------------------------- queue positions, the runners

class QueueWatch:
    """The queue as the dashboard shows it, read from the app's poll thread: each runs root's
    runner (store.queue.runner_state: a flock probe and a small JSON read, every tick; there is
    one runner per root) and each queued run's position in its root (meta.json's queue_order,
    read again only when the file changes)."""

    def __init__(self, runs_root: Path, roots: list[Path] = ()):
        self.runs_root = str(runs_root)  # where the launch screen queues, and ctrl+g starts a runner
        self.roots = list(dict.fromkeys([self.runs_root, *map(str, roots)]))  # as the rows' "root" says
        self.runners: dict[str, dict | None] = {}  # root -> runner_state(): None when no runner holds it
        self.queued: dict[str, int] = {}  # root -> its queued runs, at the last listing
        self._orders: dict[str, tuple] = {}  # run path -> (meta.json stamp, its order)

    def runner(self, root: Path | str | None = None) -> dict | None:
        """The runner state of a root (the runs root by default)."""
        return self.runners.get(str(root or self.runs_root))

    def poll_runner(self) -> None:
        for root in self.roots:
            try:
                self.runners[root] = runner_state(Path(root))
            except OSError:
                self.runners[root] = None

    def _order(self, row: dict) -> tuple:
        """What store.queue.queued_runs sorts by: queue_order, else created; then the id (queued_runs
        reads every run's meta.json; this reads only the queued ones', once per change)."""
        path = row["path"]
        try:
            st = os.stat(Path(path) / "meta.json")
            stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError:
            stamp = None
        cached = self._orders.get(path)
        if cached is None or cached[0] != stamp:
            try:
                meta = read_meta(Path(path))
                order = order_of(meta)
            except RunError:
                order = row["started"] or 0.0
            cached = self._orders[path] = (stamp, order)
        return cached[1], row["id"]

    def annotate(self, rows: dict[str, dict]) -> None:
        """row["queue_position"] = 1, 2, ... for the queued rows of each root, first to start first."""
        by_root: dict[str, list[dict]] = {}
        for row in rows.values():
            if row["status"] == "queued" and not os.path.islink(row["path"]):  # a link is that run again
                by_root.setdefault(row["root"], []).append(row)
        for queued in by_root.values():
            for i, row in enumerate(sorted(queued, key=self._order), 1):
                row["queue_position"] = i
        paths = {row["path"] for queued in by_root.values() for row in queued}
        self._orders = {p: v for p, v in self._orders.items() if p in paths}
        self.queued = {root: len(queued) for root, queued in by_root.items()}

    def root_line(self, root: str, compact: bool = False) -> str:
        """One root's runner in a few words; the runs root's says how to start one (ctrl+g).
        compact: named by the root's folder, in fewer words (several roots in 80 columns)."""
        state, queued = self.runners.get(root), self.queued.get(root, 0)
        main = root == self.runs_root
        if compact:
            name = printable(Path(root).name)
            running = [printable(str(r)) for r in (state or {}).get("running") or [] if isinstance(r, str)]
            if state is None:
                doing = "no runner"
            elif running:
                doing = f"running {short(running[0], 16)}" + (" …" if len(running) > 1 else "")
            else:
                doing = "runner idle" if state else "runner starting"
            return f"{name}: {doing}" + (f" · {queued} queued" if queued else "")
        who = "queue runner" if main else f"{printable(Path(root).name)}: runner"
        if state is None:
            hint = " · ^g starts it" if main else ""
            return f"{who}{':' if main else ''} not running" + (f" · {queued} queued{hint}" if queued else "")
        if not state:  # just started: no state file yet
            return f"{who}{':' if main else ''} starting · {queued} queued"
        running = [printable(str(r)) for r in state.get("running") or [] if isinstance(r, str)]
        slots = state.get("slots")
        doing = "running " + ", ".join(short(r, 28) for r in running[:2]) + (" …" if len(running) > 2 else "") \
            if running else "idle"
        return " · ".join([f"{who} pid {state.get('pid', '?')}", f"{slots} slot{'s' if slots != 1 else ''}",
                           doing, f"{queued} queued"])

    def line(self, width: int = 80) -> str:
        """The runners' state in one line (the header's subtitle, the runs table's border): the runs
        root's, then each other root's that has a runner or queued runs (compact when it is long)."""
        others = [r for r in self.roots[1:] if self.runners.get(r) is not None or self.queued.get(r)]
        text = " │ ".join(self.root_line(r) for r in [self.runs_root, *others])
        if len(text) > width and others:
            text = " │ ".join(self.root_line(r, compact=True) for r in [self.runs_root, *others])
        return short(text, width)
