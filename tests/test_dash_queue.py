"""Queues and sweeps in the dashboard (issue 16), driven with Pilot on the real app: the launch
screen's queue and sweep form run the real `gigagpt queue add` / `gigagpt sweep`, the runs
screen moves and cancels through `gigagpt queue move|cancel`, ctrl+g starts the real (detached)
queue runner, which runs real tiny trainings; the sweep view reads what they wrote."""
import os
import signal
import time

import pytest
from conftest import gigagpt
from test_dash_app import no_leftover_processes, run, wait_for  # noqa: F401 - an autouse fixture
from test_dash_browse import browser, cell, go_to, open_browser, table_ids
from test_queue import sets
from textual.content import Content
from textual.widgets import DataTable, Input, Select, Static

from app.main import DashApp
from app.screens.dialogs import ConfirmScreen, HelpScreen
from app.screens.home import HomeScreen
from app.screens.sweep import SweepScreen
from app.screens.sweep_form import SweepForm
from app.sweep_chart import SweepChart, sweep_plot
from gigagpt.store.meta import read_meta
from gigagpt.store.queue import queued_runs, runner_state
from gigagpt.store.summary import run_status

SIZES = [(80, 24), (200, 60)]
LRS = (1e-3, 3e-3, 1e-2)


@pytest.fixture
def roots():
    """Runs roots a test's runner works in: at teardown their runner and its trainers (each in its
    own session: detached from the dashboard on purpose) are killed if still alive."""
    used = []
    yield used
    for root in used:
        state = runner_state(root) or {}
        pids = [state["pid"]] if isinstance(state.get("pid"), int) else []
        for run_dir in root.iterdir() if root.is_dir() else ():
            try:
                meta = read_meta(run_dir)
            except Exception:
                continue
            if meta.status == "running" and meta.pid and run_status(run_dir) == "running":
                pids.append(meta.pid)
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + 30
        while runner_state(root) is not None and time.monotonic() < deadline:
            time.sleep(0.1)


def wait_until(predicate, what, timeout=240):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def queued_ids(root):
    return [p.name for p, _ in queued_runs(root)]


# ---------------------------------------------------------------------------- the sweep plot, alone

def test_sweep_plot_lines_log_axis_and_best():
    runs = [(f"r{i}", {"train.lr": lr, "train.batch_size": bs}, loss)
            for i, (lr, bs, loss) in enumerate([(1e-3, 8, 3.0), (1e-2, 8, 2.5), (1e-3, 16, 2.9), (1e-2, 16, None)])]
    plot = sweep_plot(runs, ["train.lr", "train.batch_size"])
    assert plot.x_key == "train.lr" and plot.log_x and plot.ticks == [1e-3, 1e-2]
    assert [label for label, _ in plot.series] == ["batch_size=8", "batch_size=16"]
    assert [len(pts) for _, pts in plot.series] == [2, 1]  # a run without a loss yet is no point
    assert plot.best == (1e-2, 2.5, "r1")
    plot = sweep_plot([("a", {"train.dtype": "float32"}, 2.0), ("b", {"train.dtype": "bfloat16"}, 1.0)], ["train.dtype"])
    assert plot.categories == ["bfloat16", "float32"] and plot.best == (0, 1.0, "b") and not plot.log_x
    plot = sweep_plot([("a", {"train.batch_size": 4}, 2.0), ("b", {"train.batch_size": 8}, 1.0)], ["train.batch_size"])
    assert not plot.log_x  # 2x: a linear axis
    assert sweep_plot([("a", {"train.seed": 1}, 2.0), ("b", {"train.seed": 100}, 1.0)], ["train.seed"]).log_x


# ---------------------------------------------------------------------------- the launch screen

@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_queue_and_sweep_from_the_launch_screen(tmp_path, dataset, size):
    root = tmp_path / "runs"

    async def go():
        app = DashApp(root, probe=False, refresh=0.2)
        async with app.run_test(size=size) as pilot:
            home = app.screen
            assert isinstance(home, HomeScreen) and home.preset.name == "tiny"
            home.query_one("#dataset", Select).value = "walk"
            home.query_one("#f-train-max_steps", Input).value = "7"
            await pilot.pause()
            await pilot.press("ctrl+n")  # queue: `gigagpt queue add` with the launch's --set list
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the offer to start a runner")
            await pilot.pause()
            assert "No queue runner is running" in str(app.screen.query_one(Static).content)
            await pilot.press("n")
            (run_dir, meta), = queued_runs(root)
            assert meta.status == "queued" and "max_steps = 7" in (run_dir / "config.toml").read_text()
            assert 'dataset = "walk"' in (run_dir / "config.toml").read_text()
            await wait_for(pilot, lambda: "not running · 1 queued" in app.sub_title, "the header's queue state")

            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, SweepForm), "the sweep form")
            form = app.screen
            assert form.query_one("#key1", Input).value == "train.lr"
            for key, values, error in (("train.lr", "1e-3,nan", "train.lr = nan: must be a finite number"),
                                       ("train.nope", "1,2", "unknown key train.nope"),
                                       ("train.warmup_steps", "1,9", "train.warmup_steps = 9")):
                form.query_one("#key1", Input).value = key
                form.query_one("#values1", Input).value = values
                form.query_one("#values1", Input).focus()
                await pilot.press("enter")
                await wait_for(pilot, lambda: not form.busy, "the sweep's checks")
                shown = str(form.query_one("#sweep-error", Static).content)
                assert error in shown, shown
                assert app.screen is form and len(queued_runs(root)) == 1  # nothing queued
            assert form.query_one("#values1").has_class("-invalid")
            form.query_one("#key1", Input).value = "train.lr"
            form.query_one("#values1", Input).value = "1e-3, 3e-4,1e-4"
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the sweep queued")
            await pilot.press("n")
            queued = queued_runs(root)
            sweep = [m for _, m in queued if m.sweep]
            assert [m.sweep["values"]["train.lr"] for m in sweep] == [1e-3, 3e-4, 1e-4]
            assert all(m.max_steps == 7 for m in sweep)  # the launch form's values under the sweep
            await wait_for(pilot, lambda: "4 queued" in app.sub_title, "the header's queue count")

            await pilot.press("question_mark")
            help_text = str(app.screen.query_one("#help-text", Static).content)
            assert "Queue" in help_text and "Sweep" in help_text and "queue runner" in help_text
            await pilot.press("escape")
    run(go())


# ---------------------------------------------------------------------------- the runs screen

@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_reorder_and_cancel_queued_runs(tmp_path, dataset, size):
    root = tmp_path / "runs"
    for name in ("a", "b", "c"):
        gigagpt("queue", "add", "tiny", *sets(dataset), "--name", name, "--runs-root", root)
    a, b, c = queued_ids(root)

    async def go():
        app = browser(root)
        async with app.run_test(size=size) as pilot:
            runs = await open_browser(app, pilot)
            def status(run_id):  # once the change is made (the next key is not refused as too early)
                return cell(runs, run_id, "status") if not runs.queue_busy else "busy"
            await wait_for(pilot, lambda: [status(i) for i in (a, b, c)] == ["queued #1", "queued #2", "queued #3"],
                           "the queue positions")
            table = runs.query_one("#runs-table", DataTable)
            assert "queue runner: not running · 3 queued" in str(table.border_subtitle)
            await go_to(pilot, runs, c)
            await pilot.press("left_square_bracket")  # earlier
            await wait_for(pilot, lambda: status(c) == "queued #2" and status(b) == "queued #3", "c moved up")
            assert queued_ids(root) == [a, c, b]
            await pilot.press("shift+up")
            await wait_for(pilot, lambda: status(c) == "queued #1", "c first")
            assert queued_ids(root) == [c, a, b]
            await pilot.press("left_square_bracket")  # first already: nothing to do
            await pilot.press("right_square_bracket")  # later
            await wait_for(pilot, lambda: status(c) == "queued #2", "c moved down")
            assert queued_ids(root) == [a, c, b]

            await go_to(pilot, runs, a)
            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the cancel question")
            await pilot.press("y")
            await wait_for(pilot, lambda: status(a) == "cancelled" and status(c) == "queued #1", "a cancelled")
            assert run_status(root / a) == "cancelled" and queued_ids(root) == [c, b]
            await pilot.press("x")  # a is cancelled: nothing to cancel
            assert not isinstance(app.screen, ConfirmScreen)
            await wait_for(pilot, lambda: "2 queued" in str(table.border_subtitle), "the count")

            await pilot.press("question_mark")
            help_text = Content.from_markup(str(app.screen.query_one("#help-text", Static).content)).plain
            assert "[, shift+up  Queued run: start earlier" in help_text  # `[` shown as a key, not read as markup
            assert "Cancel queued runs" in help_text and "Sweep" in help_text
            await pilot.press("escape")
    run(go())


# ---------------------------------------------------------------------------- the runner and the sweep view

def test_runner_outlives_the_dashboard_and_the_sweep_view(tmp_path, dataset, roots):
    root = tmp_path / "runs"
    roots.append(root)
    gigagpt("sweep", "tiny", "--grid", "train.lr=" + ",".join(map(str, LRS)), *sets(dataset), "--runs-root", root)

    async def start_runner():
        app = DashApp(root, probe=False, refresh=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: "not running · 3 queued" in app.sub_title, "the header")
            await pilot.press("ctrl+g")
            await wait_for(pilot, lambda: app.sub_title.startswith("queue runner pid"), "the runner in the header")
            assert f"pid {runner_state(root)['pid']} · 1 slot" in app.sub_title
            await app.workers.wait_for_complete()  # `gigagpt queue run` has said what it started
    run(start_runner())
    state = runner_state(root)  # the dashboard has quit: the runner goes on
    assert state and os.getsid(state["pid"]) == state["pid"]
    wait_until(lambda: runner_state(root) is None, "the runner to finish the sweep")
    runs = sorted(queued for queued in root.iterdir() if not queued.name.startswith("."))
    assert [run_status(d) for d in runs] == ["completed"] * 3

    async def sweep_view(size):
        app = browser(root)
        async with app.run_test(size=size) as pilot:
            screen = await open_browser(app, pilot)
            await go_to(pilot, screen, table_ids(screen)[0])
            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen), "the sweep view")
            view = app.screen
            chart = view.query_one("#sweep-curves")
            await wait_for(pilot, lambda: len(view.members) == 3 and chart.loaded == 3 and chart.points > 0,
                           "the sweep's curves")
            table = view.query_one("#sweep-table", DataTable)
            rows = [[getattr(c, "plain", str(c)) for c in table.get_row_at(i)] for i in range(table.row_count)]
            losses = [float(r[list(view.table_layout[0]).index("best_val")]) for r in rows]  # the columns shown
            assert len(rows) == 3 and [r[2] for r in rows] == ["0.001", "0.003", "0.01"]  # by lr
            best = losses.index(min(losses))
            assert [r[0] for r in rows] == ["★" if i == best else " " for i in range(3)]
            best_row = view.members[best]
            assert best_row["best_val"] == min(r["best_val"] for r in view.members)
            header = str(view.query_one("#sweep-header", Static).content)
            assert f"best: {best_row['name']}" in header and "3 runs: 3 completed" in header
            plot = view.query_one(SweepChart)
            await pilot.pause()
            assert plot.plot.log_x and plot.plot.best[2] == best_row["key"]
            assert [len(pts) for _, pts in plot.plot.series] == [3] and plot.points == 6  # a line and its points
            await pilot.press("b")  # final instead of best val loss: the same at the last step here
            await pilot.pause()
            assert plot.what == "final val loss" and plot.points == 6
            await pilot.press("enter")  # opens the run under the cursor
            await wait_for(pilot, lambda: type(app.screen).__name__ == "LiveScreen", "the live screen")
            await pilot.press("q")
            assert app.screen is view
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            assert "Best/final val" in str(app.screen.query_one("#help-text", Static).content)
            await pilot.press("escape")
            await pilot.press("q")
            assert app.screen is screen
    for size in SIZES:
        run(sweep_view(size))
