"""The dashboard (the real Textual app through its Pilot) on a runs root holding every kind of
damaged run of tests/damaged.py beside good runs made by real trainers (tests/conftest.py).

- The runs screen loads ALL kinds: every run a row (good ones with the cells a clean root gives
  them, damaged ones with their status and problem), nothing that is not a run, no crash, no worker
  dying in silence, no FIFO blocking the app.
- Opening and comparing run on SUBSET (14 kinds: each way a run file breaks, each run file, a
  name the terminal must not see raw), the actions (resume, rename, tag, delete) on ACTION_SUBSET
  (8, the symlinks in the root among them), sample on every damaged-checkpoint kind: a live
  screen mounts in ~0.5-1 s on this machine, so every kind would take minutes.
- `gigagpt dash --run PATH` opens a run directory outside the runs roots (issue 12).

What the app tells the user is read from its notifications (a message hook on Notify) and its
screens; an exception in a handler fails the test with the app's traceback, and one in a worker
(exit_on_error=False hides it from the user: an empty screen) is collected from Worker.StateChanged.
"""
from __future__ import annotations

import asyncio
import os
import re
import time
import traceback
from pathlib import Path

import pytest
from conftest import REPO, reap_started
from damaged import GOOD, KINDS, build_good_root, build_root, build_whole_root, copy_run, fifo_watch, tree
from textual.notifications import Notify
from textual.widgets import DataTable, Input, Static
from textual.worker import Worker, WorkerState

from app import launch
from app.main import DashApp

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
WAIT = 30  # seconds before a wait gives up (a net: conditions are awaited)
WIDE = (200, 50)  # every column of the runs table
SMALL = (100, 30)  # a smaller screen renders faster: for the loops that open and close screens

SUBSET = (  # one of each way a run file breaks, each run file, names in the root: 14 kinds, 2 compares
    "meta_missing", "meta_deep_nesting", "meta_is_directory", "meta_fifo", "meta_created_str",
    "meta_heartbeat_hugeint", "meta_name_ansi_escapes", "metrics_binary", "metrics_step_string",
    "metrics_val_loss_infinity", "metrics_10mb_line", "metrics_fifo", "log_fifo", "root_name_not_utf8",
)
ACTION_SUBSET = ("meta_missing", "meta_binary", "meta_fifo", "meta_created_str", "checkpoint_not_a_zip",
                 "root_symlink_to_a_run_outside", "root_symlink_to_a_sibling", "root_name_control_chars")
CHECKPOINT_DAMAGED = [k.name for k in KINDS.values() if k.source == "stopped" and k.part == "checkpoint"]
assert set(SUBSET + ACTION_SUBSET) <= set(KINDS)


def plain(value) -> str:
    return getattr(value, "plain", str(value))


# ---------------------------------------------------------------------------- driving the app

class Seen:
    """What the app told the user (notifications) and what failed behind its back (workers)."""

    def __init__(self):
        self.notes: list[str] = []
        self.worker_errors: list[str] = []

    def hook(self, message) -> None:
        if isinstance(message, Notify):
            self.notes.append(str(message.notification.message))
        elif isinstance(message, Worker.StateChanged) and message.state == WorkerState.ERROR:
            error = message.worker.error
            where = ""
            if error is not None and error.__traceback__ is not None:
                frame = traceback.extract_tb(error.__traceback__)[-1]
                where = f" at {os.path.relpath(frame.filename, REPO)}:{frame.lineno}"
            self.worker_errors.append(f"worker {message.worker.name or message.worker.group}: "
                                      f"{type(error).__name__}: {str(error)[:160]}{where}")


def browser(root: Path, **kw) -> DashApp:
    return DashApp(root, probe=False, refresh=3.0, browse=kw.pop("browse", True), **kw)


async def wait_for(pilot, condition, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await pilot.pause(0.05)
    return True


def run_app(app: DashApp, body, faults: list[str], size=SMALL) -> Seen:
    """Run `body(pilot, seen)` in the app; an exception the app raised (a crash the user would see
    as a traceback and a dead dashboard) becomes a fault, as do failed workers and FIFO hangs."""
    seen, watch = Seen(), fifo_watch()
    hangs = watch.hangs

    async def go():
        async with app.run_test(size=size, message_hook=seen.hook) as pilot:
            await body(pilot, seen)

    try:
        asyncio.run(go())
    except Exception as e:  # noqa: BLE001 - the app's own exception, re-raised by run_test
        frames = [f for f in traceback.extract_tb(e.__traceback__) if "/tests/" not in f.filename]
        at = f" at {os.path.relpath(frames[-1].filename, REPO)}:{frames[-1].lineno}" if frames else ""
        faults.append(f"the dashboard crashed: {type(e).__name__}: {str(e)[:200]}{at}")
    faults += seen.worker_errors
    if watch.hangs > hangs:
        faults.append("the dashboard blocked opening a FIFO (open() of a named pipe waits for a writer for ever)")
    return seen


def fail(faults: list[str]) -> None:
    if faults:
        pytest.fail("\n".join(dict.fromkeys(faults)), pytrace=False)


async def runs_screen(app, pilot, faults):
    from app.screens.runs import RunsScreen

    ok = await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
    if not ok:
        faults.append(f"the runs screen did not load in {WAIT} s")
        return None
    return app.screen


def table_of(screen) -> DataTable:
    return screen.query_one("#runs-table", DataTable)


def row_keys(screen) -> list[str]:
    return [str(k.value) for k in table_of(screen).rows]


def cells(screen, key) -> dict[str, str]:
    table = table_of(screen)
    values = table.get_row(key)
    return {str(c.key.value): plain(v) for c, v in zip(table.ordered_columns, values)}


async def go_to(pilot, screen, key) -> bool:
    keys = row_keys(screen)
    if key not in keys:
        return False
    table_of(screen).move_cursor(row=keys.index(key))
    await pilot.pause()
    return True


def key_of(screen, kind) -> str | None:
    """The row key of a kind (a name that is not UTF-8 may be shown made printable)."""
    return next(iter(kind.ids & set(row_keys(screen))), None)


async def go_to_kind(pilot, screen, kind) -> bool:
    key = key_of(screen, kind)
    return key is not None and await go_to(pilot, screen, key)


def detail(screen) -> str:
    return plain(screen.query_one("#run-detail", Static).content)


@pytest.fixture(scope="module", autouse=True)
def isolated_settings(tmp_path_factory):
    settings = tmp_path_factory.mktemp("dash-settings") / "gigagpt.toml"
    settings.write_text("")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIGAGPT_SETTINGS", str(settings))
        yield


@pytest.fixture(autouse=True)
def no_leftover_processes():
    """Whatever a test did, no trainer or sampler it started outlives it."""
    yield
    reap_started()


@pytest.fixture(scope="module")
def whole_root(tmp_path_factory, past_runs):
    return build_whole_root(tmp_path_factory, past_runs, "dash-all")


@pytest.fixture(scope="module")
def subset_root(tmp_path_factory, past_runs):
    """The good runs and the SUBSET kinds: a small table (the live screen and compare loops run
    here: each return to the runs screen redraws the table)."""
    root = tmp_path_factory.mktemp("dash-subset") / "runs"
    fifo_watch().watch_dir(root.parent)
    return build_root(root, past_runs, [KINDS[n] for n in SUBSET])


@pytest.fixture(scope="module")
def clean_cells(tmp_path_factory, past_runs):
    """The good runs' cells on the runs screen of a root holding only them."""
    root = build_good_root(tmp_path_factory.mktemp("dash-clean") / "runs", past_runs)
    faults, out = [], {}

    async def body(pilot, seen):
        screen = await runs_screen(pilot.app, pilot, faults)
        if screen:
            out.update({key: cells(screen, key) for key in GOOD if key in row_keys(screen)})

    run_app(browser(root), body, faults, size=WIDE)
    fail(faults)
    assert set(out) == set(GOOD), out
    return out


# ---------------------------------------------------------------------------- the runs screen

def test_runs_screen_loads_every_kind(whole_root, clean_cells):
    """Every kind at once: one row per run (none for what is not a run), good rows as in a clean
    root, each damaged row with its status and, under the table, its problem (read for every kind
    but the meta.json field variants: one per field; the CLI tests check each); no control
    character reaches the screen."""
    faults: list[str] = []

    async def body(pilot, seen):
        screen = await runs_screen(pilot.app, pilot, faults)
        if screen is None:
            return
        keys, fields_seen = set(row_keys(screen)), set()
        for key in GOOD:
            got = cells(screen, key) if key in keys else None
            if got != clean_cells[key]:
                faults.append(f"good run {key}: cells {got} (clean root: {clean_cells[key]})")
        for kind in KINDS.values():
            if kind.root_scoped or kind.skip:
                continue
            key = next(iter(kind.ids & keys), None)
            if kind.listed is False and key is not None:
                faults.append(f"{kind.name}: {kind.entry!r} is not a run, yet it has a row")
            if key is None:
                if kind.listed:
                    faults.append(f"{kind.name}: no row")
                continue
            row = cells(screen, key)
            bad = [c for c in row.values() if CONTROL.search(c)]
            if bad:
                faults.append(f"{kind.name}: a cell shows control characters: {bad[0][:60]!r}")
            if kind.status and row.get("status") not in kind.status:
                faults.append(f"{kind.name}: status {row.get('status')!r}, expected {' or '.join(kind.status)}")
            if kind.problem and (kind.part != "field" or kind.problem not in fields_seen):
                fields_seen.add(kind.problem)  # the line under the table: one kind per field of meta.json
                await go_to(pilot, screen, key)
                text = detail(screen)
                missing = [w for w in kind.problem if w.lower() not in text.lower()]
                if missing:
                    faults.append(f"{kind.name}: the line under the table ({text[:160]!r}) does not name "
                                  f"{', '.join(missing)}")
                if CONTROL.search(text.replace("\n", "")):
                    faults.append(f"{kind.name}: the line under the table shows control characters")

    run_app(browser(whole_root), body, faults, size=WIDE)
    fail(faults)


# ---------------------------------------------------------------------------- open, compare, sample

def test_open_each_damaged_run(subset_root):
    """enter on a damaged run: the live screen (or a message), never a crash; a damaged run says
    what is wrong (the live screen's failure line or a notification); q goes back."""
    from app.screens.live import LiveScreen
    from app.screens.runs import RunsScreen

    faults: list[str] = []

    async def body(pilot, seen):
        app = pilot.app
        screen = await runs_screen(app, pilot, faults)
        if screen is None:
            return
        for name in SUBSET:
            kind = KINDS[name]
            if not await go_to_kind(pilot, screen, kind):
                continue  # no row: test_runs_screen_loads_every_kind says so
            notes = len(seen.notes)
            await pilot.press("enter")
            opened = await wait_for(pilot, lambda n=notes: isinstance(app.screen, LiveScreen) or len(seen.notes) > n, 10)
            if not opened:
                faults.append(f"{name}: enter neither opened the live screen nor said why")
                continue
            if isinstance(app.screen, LiveScreen):
                live = app.screen
                await pilot.pause(0.1)
                header = plain(live.query_one("#run-header", Static).content)
                failure = plain(live.query_one("#failure", Static).content)
                if CONTROL.search(header + failure):
                    faults.append(f"{name}: the live screen shows control characters: {header[:80]!r}")
                said = failure + " ".join(seen.notes[notes:])
                if kind.status == ("damaged",) and not all(w.lower() in said.lower() for w in kind.problem):
                    faults.append(f"{name}: a damaged run opened without saying what is wrong "
                                  f"({', '.join(kind.problem)}): {said[:160]!r}")
                await pilot.press("q")
                if not await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), 10):
                    faults.append(f"{name}: q did not go back to the runs screen")
                    return

    run_app(browser(subset_root), body, faults)
    fail(faults)


def test_compare_good_with_damaged(subset_root):
    """`done` and 7 damaged runs at a time (space, space, ..., c): the compare screen loads every
    run's curves (none for what has none) and shows no control character."""
    from app.screens.compare import CompareScreen
    from app.screens.runs import RunsScreen

    faults: list[str] = []
    groups = [SUBSET[:7], SUBSET[7:]]

    async def body(pilot, seen):
        app = pilot.app
        screen = await runs_screen(app, pilot, faults)
        if screen is None:
            return
        for group in groups:
            chosen = ["done"] + [k for k in (key_of(screen, KINDS[n]) for n in group) if k]
            for key in chosen:
                await go_to(pilot, screen, key)
                await pilot.press("space")
            await pilot.press("c")
            if not await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), 10):
                faults.append(f"compare of done, {', '.join(group)}: no compare screen")
            else:
                compare = app.screen
                chart = compare.query_one("#compare-chart")
                n = len(chosen)
                if not await wait_for(pilot, lambda c=chart, n=n: c.loaded == n, 20):
                    faults.append(f"compare of done, {', '.join(group)}: {chart.loaded} of {len(chosen)} runs' "
                                  "curves loaded")
                table = compare.query_one("#compare-table", DataTable)
                text = " ".join(plain(v) for i in range(table.row_count) for v in table.get_row_at(i))
                text += plain(compare.query_one("#compare-header", Static).content)
                if CONTROL.search(text):
                    faults.append(f"compare of done, {', '.join(group)}: control characters on the screen")
                await pilot.press("q")
                await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), 10)
            for key in chosen:  # space again: the next group starts with nothing selected
                await go_to(pilot, screen, key)
                await pilot.press("space")

    run_app(browser(subset_root), body, faults)
    fail(faults)


def test_sample_on_damaged_checkpoints(past_runs, tmp_path):
    """g on a run whose only checkpoint is damaged: a message naming the checkpoint and no sampler
    started (it would load a garbage file with torch); g on a run with a damaged meta.json and a
    good checkpoint: no crash."""
    from app.screens.runs import RunsScreen
    from app.screens.sample import SampleScreen

    names = CHECKPOINT_DAMAGED + ["meta_binary", "meta_created_str", "metrics_fifo"]
    root = build_root(tmp_path / "runs", past_runs, [KINDS[n] for n in names])
    fifo_watch().watch_dir(tmp_path)
    faults: list[str] = []

    async def body(pilot, seen):
        app = pilot.app
        screen = await runs_screen(app, pilot, faults)
        if screen is None:
            return
        for name in names:
            kind = KINDS[name]
            if not await go_to_kind(pilot, screen, kind):
                continue
            notes = len(seen.notes)
            await pilot.press("g")
            if name in CHECKPOINT_DAMAGED:
                said = " ".join(seen.notes[notes:])
                if isinstance(app.screen, SampleScreen):
                    faults.append(f"{name}: the sample window opened on a damaged checkpoint")
                elif "checkpoint" not in said.lower():
                    faults.append(f"{name}: g said {said[:160]!r}, not what is wrong with the checkpoint")
                if launch.HELPERS:
                    faults.append(f"{name}: a sampler was started")
            if isinstance(app.screen, SampleScreen):
                await pilot.press("escape")
                await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), 10)

    run_app(browser(root), body, faults)
    fail(faults)


# ---------------------------------------------------------------------------- actions on a copy

def test_actions_on_damaged_runs(past_runs, tmp_path):
    """resume, rename, tag and delete on damaged runs (a fresh root): a message or the action,
    never a crash; no trainer started; a damaged meta.json is never rewritten by a rename or a tag
    (what it held would be lost); delete never reaches outside the root or through a symlink, and
    leaves the good runs."""
    from app.screens.dialogs import AskScreen, ConfirmScreen
    from app.screens.runs import RunsScreen

    root = build_root(tmp_path / "runs", past_runs, [KINDS[n] for n in ACTION_SUBSET])
    fifo_watch().watch_dir(tmp_path)
    good = {name: tree(root / name) for name in GOOD}
    kept = {}  # before the deletes (a rename of a symlinked run renames the run it points at)
    faults: list[str] = []

    def meta_bytes(kind):
        path = root / kind.entry / "meta.json"
        try:
            return path.read_bytes() if path.is_file() and not path.is_symlink() else os.lstat(path).st_mode
        except OSError as e:
            return type(e).__name__

    async def answer(pilot, app, text) -> None:
        app.screen.query_one("#ask-input", Input).value = text
        await pilot.press("enter")
        if isinstance(app.screen, AskScreen):  # refused in place: close it
            await pilot.press("escape")

    async def body(pilot, seen):
        app = pilot.app
        screen = await runs_screen(app, pilot, faults)
        if screen is None:
            return
        for name in ACTION_SUBSET:
            kind = KINDS[name]
            damaged = kind.status == ("damaged",)
            if not await go_to_kind(pilot, screen, kind):
                continue
            for key in ("r", "n", "t"):
                before, notes = meta_bytes(kind), len(seen.notes)
                await pilot.press(key)
                if isinstance(app.screen, AskScreen):
                    if key == "r":
                        if damaged:
                            faults.append(f"{name}: resume of a damaged run asks for steps instead of refusing")
                        await pilot.press("escape")
                    else:
                        await answer(pilot, app, "renamed" if key == "n" else "tagged")
                elif len(seen.notes) == notes:
                    faults.append(f"{name}: {key} did nothing and said nothing")
                await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), 10)
                if damaged and meta_bytes(kind) != before:
                    faults.append(f"{name}: {key} rewrote the damaged meta.json (what it held is lost)")
            if launch.STARTED:
                faults.append(f"{name}: a trainer was started")
                break
        kept.update({p.name: tree(p) for p in tmp_path.iterdir() if p.name != "runs"})
        kept["runs/root-symlink-to-a-sibling-target"] = tree(root / "root-symlink-to-a-sibling-target")
        for name in ACTION_SUBSET:  # then delete each, one by one
            kind = KINDS[name]
            if not await go_to_kind(pilot, screen, kind):
                continue
            was_link = os.path.islink(root / kind.entry)
            notes = len(seen.notes)
            await pilot.press("d")
            if isinstance(app.screen, ConfirmScreen):
                await pilot.press("y")
            elif len(seen.notes) == notes:
                faults.append(f"{name}: d did nothing and said nothing")
            await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), 10)
            if was_link and not os.path.islink(root / kind.entry):
                faults.append(f"{name}: delete removed a symlink's run (docs/run-format.md: a symlink is refused)")
        await pilot.pause(0.3)

    run_app(browser(root), body, faults)
    if not root.is_dir():
        faults.append("the runs root is gone")
    for name, before in good.items():
        if tree(root / name) != before:
            faults.append(f"the good run {name} changed")
    for name, before in kept.items():
        if tree(tmp_path / name) != before:
            faults.append(f"{name} changed: a delete reached a symlink's target or went outside the runs root")
    fail(faults)


# ---------------------------------------------------------------------------- dash --run PATH

def test_run_outside_the_roots(past_runs, tmp_path):
    """`gigagpt dash --run PATH` (DashApp(open_run=PATH), as app.main builds it) opens a run
    directory outside every runs root: one started with `train --run-dir`, by torchrun or Slurm.
    A damaged one opens too, or says why; a path that is no run says so; none crashes."""
    from app.screens.live import LiveScreen

    root = build_good_root(tmp_path / "runs", past_runs)
    elsewhere = tmp_path / "scratch" / "job-1234"
    copy_run(past_runs / "done", elsewhere)
    broken = copy_run(past_runs / "done", tmp_path / "scratch" / "job-5678")
    (broken / "meta.json").write_text('{"id": "job-5678", "status": ')
    nothing = tmp_path / "scratch" / "not-a-run"
    nothing.mkdir()
    faults: list[str] = []

    def opened(path: Path, must_open: bool):
        async def body(pilot, seen):
            app = pilot.app
            ok = await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen) or seen.notes, 15)
            if must_open:
                if not ok or not isinstance(app.screen, LiveScreen):
                    faults.append(f"--run {path}: no live screen ({'; '.join(seen.notes)[:200]})")
                    return
                live = app.screen
                header = plain(live.query_one("#run-header", Static).content)
                if path.name not in header:
                    faults.append(f"--run {path}: the header {header[:120]!r} does not name the run")
                chart = live.query_one("#loss-chart")
                if not await wait_for(pilot, lambda: chart.points > 0, 15):
                    faults.append(f"--run {path}: no loss curve")
            elif not ok:
                faults.append(f"--run {path}: neither a live screen nor a message")
        return body

    for path, must_open in ((elsewhere, True), (broken, False), (nothing, False)):
        run_app(browser(root, browse=False, open_run=str(path)), opened(path, must_open), faults)
    fail(faults)
