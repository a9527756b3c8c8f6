"""The dashboard driven through Textual's Pilot, with real trainer subprocesses where it matters."""
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import reap_started
from textual.widgets import DataTable, Input, Log, Select, Static

from app import launch
from app.main import DashApp
from app.screens.dialogs import ConfirmScreen, HelpScreen
from app.screens.home import HomeScreen
from app.screens.live import LiveScreen
from gigagpt.store.files import write_json
from gigagpt.store.layout import checkpoints
from gigagpt.store.meta import read_meta
from gigagpt.store.metrics import load_metrics

SAFETY_TIMEOUT = 150  # a net for a hung test, not a speed requirement: conditions are awaited


@pytest.fixture(autouse=True)
def no_leftover_processes():
    """Kill every trainer, sampler (and stand-in process) a test started, whatever the test did."""
    fakes = []
    yield fakes
    reap_started(*fakes)


def run(coro):
    asyncio.run(coro)


async def wait_for(pilot, condition, what: str):
    deadline = time.monotonic() + SAFETY_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await pilot.pause(0.1)


def screen_text(widget) -> str:
    return str(widget.content)


def new_app(tmp_path, **kw):
    return DashApp(tmp_path / "runs", probe=False, refresh=0.2, **kw)


def only_run_dir(tmp_path):
    dirs = [d for d in (tmp_path / "runs").iterdir() if not d.name.startswith(".")]  # not .summaries.json
    assert len(dirs) == 1, dirs
    return dirs[0]


async def fill_form_and_launch(app, pilot, name):
    """As a user: tiny is preselected; pick the walk dataset, type a few values, press ctrl+r."""
    home = app.screen
    assert isinstance(home, HomeScreen) and home.preset.name == "tiny"
    home.query_one("#dataset", Select).value = "walk"
    home.query_one("#f-train-dtype", Select).value = "float32"
    for field, value in (("#f-train-max_steps", "5000"), ("#run-name", name)):
        box = home.query_one(field, Input)
        box.focus()
        box.value = ""
        await pilot.press(*value)
    await pilot.press("ctrl+r")
    await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen), "the live screen")
    return app.screen


async def wait_for_points(pilot, live, more_than=0):
    chart = live.query_one("#loss-chart")

    def arrived():
        status = live.app.status(live.tail.id)
        if status in ("failed", "crashed", "not started"):  # say why now, not after the timeout
            log = (live.tail.dir / "train.log").read_text()[-3000:]
            raise AssertionError(f"the trainer ended: {status}\n{log}")
        return chart.points > more_than

    await wait_for(pilot, arrived, f"more than {more_than} loss points")
    return chart.points


def test_form_refuses_invalid_values(tmp_path, dataset):
    async def go():
        app = new_app(tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            home = app.screen
            presets = home.query_one("#presets", DataTable)
            assert presets.get_cell("175b", "fits").plain == "no"  # instant, no torch
            lr = home.query_one("#f-train-lr", Input)
            lr.focus()
            lr.value = ""
            await pilot.press(*"fast")
            error = screen_text(home.query_one("#form-error", Static))
            assert "train.lr" in error and "must be a finite number" in error
            assert lr.has_class("-invalid")
            await pilot.press("ctrl+r")
            assert isinstance(app.screen, HomeScreen) and not (tmp_path / "runs").exists()
            lr.value = "3e-4"
            home.query_one("#f-train-batch_size", Input).value = "0"
            await pilot.pause()
            assert "train.batch_size = 0: must be in [1, " in screen_text(home.query_one("#form-error", Static))
            await pilot.press("ctrl+r")
            assert not (tmp_path / "runs").exists()
    run(go())


def test_launch_watch_and_stop(tmp_path, dataset):
    async def go():
        app = new_app(tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            live = await fill_form_and_launch(app, pilot, "watch")
            await wait_for_points(pilot, live)
            assert live.tail.id.startswith("watch-")
            assert app.status(live.tail.id) == "running"
            await pilot.press("s")
            await wait_for(pilot, lambda: app.status(live.tail.id) == "stopped", "status stopped")
            await pilot.pause(0.5)
            header = screen_text(live.query_one("#run-header", Static))
            assert "stopped" in header
            assert any("stopping after this step" in line for line in live.query_one("#log", Log).lines)
        run_dir = only_run_dir(tmp_path)
        assert read_meta(run_dir).status == "stopped"
        assert checkpoints(run_dir)
        (proc,) = launch.STARTED
        assert proc.wait(timeout=30) == 0
    run(go())


def test_quit_during_a_run_then_reattach(tmp_path, dataset):
    async def go():
        app = new_app(tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            live = await fill_form_and_launch(app, pilot, "attach")
            await wait_for_points(pilot, live)
            run_id = live.tail.id
        # The dashboard is gone; the trainer is not (its own session), and keeps training.
        (proc,) = launch.STARTED
        assert proc.poll() is None
        run_dir = tmp_path / "runs" / run_id
        lines = len(load_metrics(run_dir))
        deadline = time.monotonic() + SAFETY_TIMEOUT
        while len(load_metrics(run_dir)) <= lines and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(load_metrics(run_dir)) > lines, "the run stopped when the dashboard quit"

        launch.STARTED.clear()  # a new dashboard process would know nothing of its child
        app = new_app(tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: run_id in app.tracker.followed and run_id in app.screen.run_order,
                           "the running run, followed and in the table")
            assert app.status(run_id) == "running"
            runs = app.screen.query_one("#runs", DataTable)
            assert runs.get_cell(run_id, "status").plain == "running"
            runs.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen), "the live screen")
            before = await wait_for_points(pilot, app.screen)
            await wait_for_points(pilot, app.screen, more_than=before)  # still arriving
            await pilot.press("s")
            await wait_for(pilot, lambda: app.status(run_id) == "stopped", "status stopped")
        proc.wait(timeout=30)
        assert checkpoints(run_dir)
    run(go())


def fake_run(tmp_path, run_id, status="running", pid=None, n_lines=200, log="", **meta):
    run_dir = tmp_path / "runs" / run_id
    run_dir.mkdir(parents=True)
    with open(run_dir / "metrics.jsonl", "w") as f:
        for step in range(1, n_lines + 1):
            f.write(json.dumps({"kind": "train", "step": step, "loss": 5 / step ** 0.3, "lr": 1e-3,
                                "tokens": step * 512, "tok_s": 1000 + step, "mfu": 0.01, "rss": 3e8,
                                "mem_alloc": None, "mem_peak": None, "time": 1e9 + step}) + "\n")
            if step % 50 == 0:
                f.write(json.dumps({"kind": "eval", "step": step, "val_loss": 5 / step ** 0.3,
                                    "time": 1e9 + step}) + "\n")
    (run_dir / "train.log").write_text(log)
    write_json(run_dir / "meta.json", {
        "id": run_id, "name": run_id, "preset": "tiny", "status": status, "pid": pid or os.getpid(),
        "host": socket.gethostname(), "step": n_lines, "max_steps": 1000, "created": time.time() - 100,
        "updated": time.time(), "heartbeat": time.time(), "failure": None, **meta})
    return run_dir


def test_crashed_and_failed_runs_show_reason_and_log(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    fake_run(tmp_path, "crashed", pid=dead.pid, log="step 200/1000 | loss 1.2\nSegmentation fault\n")
    fake_run(tmp_path, "failed", status="failed", failure="ValueError: the data ran out",
             log="Traceback (most recent call last):\nValueError: the data ran out\n")

    async def go():
        app = new_app(tmp_path, open_run="crashed")
        async with app.run_test(size=(100, 30)) as pilot:
            live = app.screen
            await pilot.pause()
            assert live.has_class("-ended-badly")
            assert "crashed" in screen_text(live.query_one("#run-header", Static))
            assert "is gone" in screen_text(live.query_one("#failure", Static))
            assert "Segmentation fault" in live.query_one("#log", Log).lines[-1]
            await pilot.press("s")  # nothing to stop: says so, no traceback
            await pilot.press("q")
            assert isinstance(app.screen, HomeScreen)
            app.open_run("failed")
            await pilot.pause()
            assert "ValueError: the data ran out" in screen_text(app.screen.query_one("#failure", Static))
    run(go())


def test_kill_asks_first(tmp_path, no_leftover_processes):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    no_leftover_processes.append(sleeper)
    fake_run(tmp_path, "victim", pid=sleeper.pid)

    async def go():
        app = new_app(tmp_path, open_run="victim")
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("k")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")
            assert isinstance(app.screen, LiveScreen) and sleeper.poll() is None
            await pilot.press("k")
            await pilot.press("y")
            assert sleeper.wait(timeout=30) == -signal.SIGKILL
            await wait_for(pilot, lambda: app.status("victim") == "crashed", "status crashed")
    run(go())


def test_view_keys_and_help(tmp_path):
    fake_run(tmp_path, "done", status="completed", n_lines=3000)

    async def go():
        app = new_app(tmp_path, open_run="done")
        async with app.run_test(size=(100, 30)) as pilot:
            live = app.screen
            chart = live.query_one("#loss-chart")
            await pilot.pause()
            assert 0 < chart.points < 400  # 3000 steps drawn as a few points per column
            await pilot.press("l")
            await pilot.pause()
            await pilot.resize_terminal(200, 60)  # the log scale survives a rebuild on resize
            await pilot.pause()
            assert live.view.log_y and chart.points
            await pilot.press("plus", "plus")
            assert live.view.smoothing == 0.9
            await pilot.press("minus")
            assert live.view.smoothing == 0.8
            await pilot.press("x")
            assert live.view.x_axis == "tokens"
            await pilot.press("x")
            await pilot.pause()
            assert live.view.x_axis == "time" and chart.points
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            help_text = screen_text(app.screen.query_one("#help-text", Static))
            assert "Stop" in help_text and "Kill" in help_text
            await pilot.press("escape")
            assert app.screen is live
    run(go())


def test_long_metrics_file_opens_from_its_end(tmp_path, monkeypatch):
    from app import follow

    monkeypatch.setattr(follow, "TAIL_FIRST_BYTES", 20_000)
    fake_run(tmp_path, "long", status="completed", n_lines=5000)

    async def go():
        app = new_app(tmp_path, open_run="long")
        async with app.run_test(size=(100, 30)) as pilot:
            live = app.screen
            await wait_for(pilot, lambda: live.tail.history_end == 0, "the history to load")
            await pilot.pause()
            assert live.tail.series.train.col("step")[0] == 1
            assert len(live.tail.series.train) == 5000
            assert "loading history" not in screen_text(live.query_one("#run-header", Static))
    run(go())


def test_launch_with_two_processes(tmp_path, dataset):
    """The processes field launches through torchrun (2 CPU processes, gloo); the header shows x 2."""
    async def go():
        app = new_app(tmp_path)
        async with app.run_test(size=(120, 36)) as pilot:
            home = app.screen
            box = home.query_one("#nproc", Input)
            box.value = "3"  # tiny's batch of 8 does not split across 3
            await pilot.pause()
            assert "processes = 3" in screen_text(home.query_one("#form-error", Static)) and box.has_class("-invalid")
            box.value = "2"
            await pilot.pause()
            home.query_one("#f-train-parallel", Select).value = "fsdp"
            live = await fill_form_and_launch(app, pilot, "two")
            await wait_for_points(pilot, live)
            await wait_for(pilot, lambda: "x 2" in screen_text(live.query_one("#run-header", Static)), "x 2")
            await pilot.press("s")
            await wait_for(pilot, lambda: app.status(live.tail.id) == "stopped", "status stopped")
        run_dir = only_run_dir(tmp_path)
        meta = read_meta(run_dir)
        assert meta.world_size == 2 and meta.status == "stopped"
        assert checkpoints(run_dir)[-1].suffix == ".dcp"
        start = next(r for r in load_metrics(run_dir) if r.get("event") == "start")
        assert start["parallel"] == "fsdp"
    run(go())


def test_cli_passes_every_option_to_the_dashboard(tmp_path):
    """`gigagpt dash --runs-root DIR ...` reaches the dashboard's own parser (argparse's REMAINDER
    in a subcommand used to drop leading options: `unrecognized arguments: --runs-root`)."""
    r = subprocess.run([sys.executable, "-m", "gigagpt", "dash", "--runs-root", str(tmp_path), "--browse", "--bogus"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "gigagpt dash: error: unrecognized arguments: --bogus" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "gigagpt", "dash", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--runs-root" in r.stdout and "--browse" in r.stdout


def test_launch_screen_shows_the_loss_of_every_run(tmp_path):
    """The recent-runs table reads every run's summary (store.summary), not only the followed
    runs': a completed, a failed and a damaged run, none followed, show their loss and status."""
    from gigagpt.listing import fmt_loss

    fake_run(tmp_path, "done", status="completed", n_lines=300)
    fake_run(tmp_path, "broke", status="failed", failure="ValueError: boom", n_lines=40)
    bad = fake_run(tmp_path, "garbled", status="completed", n_lines=10)
    (bad / "meta.json").write_text('{"id": "garbled", "status": "completed", "created": "yesterday"}')

    async def go():
        app = new_app(tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: app.screen.query_one("#runs", DataTable).row_count == 3, "the rows")
            runs = app.screen.query_one("#runs", DataTable)
            assert not app.tracker.followed  # nothing running, nothing opened
            for run_id, steps in (("done", 300), ("broke", 40), ("garbled", 10)):
                assert runs.get_cell(run_id, "loss").plain == fmt_loss(5 / steps ** 0.3), run_id
            assert runs.get_cell("done", "status").plain == "completed"
            assert runs.get_cell("broke", "status").plain == "failed"
            assert runs.get_cell("garbled", "status").plain == "damaged"
            assert runs.get_cell("done", "step").plain == "300/1000"
    run(go())


def test_run_outside_the_roots_opens_by_its_path(tmp_path):
    """`gigagpt dash --run PATH`: a run directory outside every runs root (started with
    `train --run-dir`, by torchrun or Slurm) opens its live screen, and stays in the recent runs."""
    outside = tmp_path / "scratch"
    job = fake_run(outside, "job-1234", status="completed", n_lines=120)
    job = job.rename(outside / "job-1234-moved")  # not under a runs root, and not named as in meta.json

    async def go():
        app = new_app(tmp_path, open_run=str(job))
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen), "the live screen")
            live = app.screen
            assert live.tail.dir == job.absolute()
            await wait_for(pilot, lambda: live.query_one("#loss-chart").points > 0, "the curve")
            header = screen_text(live.query_one("#run-header", Static))
            assert "job-1234" in header and f"in {outside}" in header
            await pilot.press("q")
            assert isinstance(app.screen, HomeScreen)
            await wait_for(pilot, lambda: app.screen.query_one("#runs", DataTable).row_count == 1, "the row")
            runs = app.screen.query_one("#runs", DataTable)
            assert runs.get_cell(str(job.absolute()), "status").plain == "completed"
            app.open_run("nothing-here")  # an id no root holds: a message, no screen
            await pilot.pause()
            assert isinstance(app.screen, HomeScreen)
    run(go())


def test_a_bad_run_argument_is_one_line_before_the_screen(tmp_path):
    for arg, says in (("/no/such/run", "not a run directory"), (str(tmp_path), "not a run directory")):
        r = subprocess.run([sys.executable, "-m", "app", "--runs-root", str(tmp_path / "runs"), "--run", arg],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and says in lines[0], r.stderr
        assert lines[0].startswith("gigagpt dash: error: --run: run "), r.stderr
        assert "Traceback" not in r.stderr and not r.stdout


def test_two_launches_in_the_same_second_get_two_directories(tmp_path, dataset):
    """launch.launch makes its run directory with the store's new_run_dir (an exclusive mkdir):
    launched twice at once under one name, the trainers never share a directory."""
    tiny = next(p for p in launch.find_presets() if p.name == "tiny")
    overrides = launch.config_from_form(tiny, "walk", launch.form_values(tiny.cfg))[1]
    root = tmp_path / "runs"
    dirs = [launch.launch(tiny, overrides, "twin", launch.cpu_device(), root) for _ in range(3)]
    assert len(set(dirs)) == 3, dirs  # twin-<second>, twin-<second>-2, ... (or a new second)
    assert all(d.parent == root.resolve() and d.name.startswith("twin-") for d in dirs)
    assert all((d / "train.log").is_file() for d in dirs)  # each trainer's output goes to its own log
    assert [p.run_dir for p in launch.STARTED] == dirs
