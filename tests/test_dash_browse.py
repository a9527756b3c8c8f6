"""The runs screen, the compare screen and the sample modal, driven with Pilot on real run
directories from real tiny trainings (tests/conftest.py: past_runs)."""
import csv
import json
import re
import shutil
import signal
import subprocess
import sys

from damaged import four_damaged_runs
from test_dash_app import SAFETY_TIMEOUT, no_leftover_processes, run, wait_for  # noqa: F401 - an autouse fixture
from textual.widgets import DataTable, Input, Static

from app import launch
from app.main import DashApp
from app.screens.compare import CompareScreen
from app.screens.dialogs import AskScreen, ConfirmScreen, HelpScreen
from app.screens.live import LiveScreen
from app.screens.runs import RunsScreen
from app.screens.sample import SampleScreen
from gigagpt.store.meta import read_meta
from gigagpt.store.metrics import load_metrics

LOCK_HOLDER = """
import sys, time
from gigagpt.store.lock import RunLock
RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def copy_runs(past_runs, tmp_path, *names):
    root = tmp_path / "runs"
    for name in names:
        shutil.copytree(past_runs / name, root / name)
    return root


def hold_lock(run_dir, fakes) -> subprocess.Popen:
    """A process that holds the run's lock as its trainer would (the run is `running` while it lives)."""
    proc = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    fakes.append(proc)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def synthetic_run(root, run_id, loss=2.5, created=1_700_000_000, **meta):
    """A run directory written directly: meta.json and one train line (enough to list it)."""
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    meta = {"id": run_id, "name": run_id, "status": "completed", "preset": "tiny", "created": created,
            "updated": created + 10, "step": 3, "max_steps": 3, "device": "cpu", **meta}
    (run_dir / "meta.json").write_text(json.dumps(meta))
    (run_dir / "config.toml").write_text(f"[train]\nlr = {loss / 1000}\n")
    (run_dir / "metrics.jsonl").write_text(json.dumps(
        {"kind": "train", "step": 3, "loss": loss, "tokens": 30, "tok_s": 5.0, "time": created + 10}) + "\n")
    return run_dir


def browser(root):
    return DashApp(root, probe=False, refresh=0.2, browse=True)


async def open_browser(app, pilot) -> RunsScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, "the runs screen")
    return app.screen


def table_ids(screen) -> list[str]:
    return [r["id"] for r in screen.shown]


def cell(screen, run_id, column) -> str:
    value = screen.query_one("#runs-table", DataTable).get_cell(run_id, column)
    return getattr(value, "plain", value)


async def go_to(pilot, screen, run_id):
    screen.query_one("#runs-table", DataTable).move_cursor(row=table_ids(screen).index(run_id))
    await pilot.pause()


async def answer(pilot, app, text):
    """Put text in the open AskScreen's box (typed when short, pasted when long) and press enter."""
    assert isinstance(app.screen, AskScreen)
    box = app.screen.query_one("#ask-input", Input)
    box.value = "" if len(text) <= 20 else text
    if 0 < len(text) <= 20:
        await pilot.press(*text)
    await pilot.press("enter")
    await pilot.pause()


def test_browse_sort_filter_select_compare_open(past_runs, tmp_path):
    async def go():
        app = browser(past_runs)
        async with app.run_test(size=(100, 30)) as pilot:
            runs = await open_browser(app, pilot)
            assert sorted(table_ids(runs)) == ["crashed", "done", "failed", "stopped"]
            assert cell(runs, "crashed", "status") == "crashed" and cell(runs, "done", "step") == "6/6"
            assert cell(runs, "failed", "status") == "failed"
            await go_to(pilot, runs, "failed")
            assert "non-finite loss" in str(runs.query_one("#run-detail", Static).content)

            await pilot.press("f", "f")  # all -> running -> completed
            assert runs.status_filter == "completed" and table_ids(runs) == ["done"]
            await pilot.press(*["f"] * 7)  # on through the other statuses (queued, cancelled last), back to all
            assert runs.status_filter == "all" and len(table_ids(runs)) == 4
            await pilot.press("slash", *"stop")
            assert table_ids(runs) == ["stopped"]
            await pilot.press("escape")  # leaves the filter box, not the screen
            assert isinstance(app.screen, RunsScreen) and runs.focused.id == "runs-table"
            runs.query_one("#runs-filter", Input).value = ""
            await pilot.pause()

            while runs.sort_key != "step":
                await pilot.press("o")
            assert table_ids(runs)[0] == "done"  # most steps first
            await pilot.press("O")
            assert table_ids(runs).index("done") > table_ids(runs).index("stopped")

            await go_to(pilot, runs, "done")
            await pilot.press("space")
            await go_to(pilot, runs, "stopped")
            await pilot.press("space")
            assert runs.selected == {"done", "stopped"} and cell(runs, "done", "mark") == "✓"
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), "the compare screen")
            compare = app.screen
            chart = compare.query_one("#compare-chart")
            await wait_for(pilot, lambda: chart.loaded == 2 and chart.points > 0, "curves")
            table = compare.query_one("#compare-table", DataTable)
            keys = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
            assert "train.max_steps" in keys and "best val" in keys
            for key in ("x", "x", "l", "plus", "v", "v"):
                await pilot.press(key)
                await app.workers.wait_for_complete()  # x reads the tokens / time columns
                await pilot.pause()
                assert chart.points > 0, key
            assert compare.view.x_axis == "time" and compare.view.log_y and chart.show_curves == "val"
            await pilot.press("q")
            assert app.screen is runs

            await pilot.press("a")  # all shown
            assert len(runs.selected) == 4
            await pilot.press("a")
            assert not runs.selected
            await pilot.press("c")  # nothing selected: a message, no screen
            assert app.screen is runs

            await go_to(pilot, runs, "crashed")
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen), "the live screen")
            assert "is gone" in str(app.screen.query_one("#failure", Static).content)
            await pilot.press("q")
            assert app.screen is runs

            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            help_text = str(app.screen.query_one("#help-text", Static).content)
            for word in ("Compare", "Resume", "Sample", "Export", "Rename", "Tags", "Delete", "Status filter"):
                assert word in help_text, word
            await pilot.press("escape")
    run(go())


def test_rename_tags_and_delete(past_runs, tmp_path, no_leftover_processes):  # noqa: F811 - the fixture imported above
    root = copy_runs(past_runs, tmp_path, "done", "failed", "crashed")
    # made to look alive: a process holding its lock is its "trainer" (meta.json says running)
    sleeper = hold_lock(root / "crashed", no_leftover_processes)

    async def go():
        app = browser(root)
        async with app.run_test(size=(100, 30)) as pilot:
            runs = await open_browser(app, pilot)
            await go_to(pilot, runs, "done")
            await pilot.press("n")
            await answer(pilot, app, "")  # refused in place
            assert isinstance(app.screen, AskScreen)
            assert "must be" in str(app.screen.query_one("#ask-error", Static).content)
            await answer(pilot, app, "baseline run")
            await wait_for(pilot, lambda: cell(runs, "done", "name") == "baseline run", "the new name")
            assert read_meta(root / "done").name == "baseline run"

            await pilot.press("t")
            await answer(pilot, app, "bad tag!")
            assert isinstance(app.screen, AskScreen)  # refused: a space and a '!'
            await answer(pilot, app, "ablation lr-sweep")
            await wait_for(pilot, lambda: read_meta(root / "done").tags == ["ablation", "lr-sweep"], "the tags")

            await go_to(pilot, runs, "crashed")  # running: no rename, no delete
            await pilot.press("n")
            await answer(pilot, app, "other")
            assert read_meta(root / "crashed").name in (None, "crashed")
            await pilot.press("d")
            assert not isinstance(app.screen, ConfirmScreen) and (root / "crashed").is_dir()

            await pilot.press("s")  # stop: SIGTERM to its "trainer"
            assert sleeper.wait(timeout=30) == -signal.SIGTERM
            await wait_for(pilot, lambda: cell(runs, "crashed", "status") == "crashed", "status crashed")

            await go_to(pilot, runs, "failed")
            await pilot.press("space")
            await go_to(pilot, runs, "crashed")
            await pilot.press("space", "d")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")
            assert (root / "failed").is_dir()
            await pilot.press("d", "y")
            await wait_for(pilot, lambda: sorted(table_ids(runs)) == ["done"], "the rows to go")
            assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["done"]
    run(go())


def test_resume_asks_for_steps_and_runs_on(past_runs, tmp_path):
    root = copy_runs(past_runs, tmp_path, "stopped", "done")

    async def go():
        app = browser(root)
        async with app.run_test(size=(100, 30)) as pilot:
            runs = await open_browser(app, pilot)
            await go_to(pilot, runs, "done")
            await pilot.press("r")
            assert app.screen.query_one("#ask-input", Input).value == "12"  # completed: twice as far
            await answer(pilot, app, "6")  # a completed run needs more steps than it has
            assert "must be more than 6" in str(app.screen.query_one("#ask-error", Static).content)
            await pilot.press("escape")
            assert app.screen is runs and not launch.STARTED

            await go_to(pilot, runs, "stopped")
            await pilot.press("r")
            assert app.screen.query_one("#ask-input", Input).value == "20"
            await answer(pilot, app, "6")
            await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen), "the live screen")
            live = app.screen
            await wait_for(pilot, lambda: live.tail.field("status") == "completed", "status completed")
            assert live.tail.meta.step == 6 and live.tail.meta.max_steps == 6
            (proc,) = launch.STARTED
            assert proc.wait(timeout=SAFETY_TIMEOUT) == 0
            events = [r["event"] for r in load_metrics(root / "stopped") if r["kind"] == "event"]
            assert "resume" in events and events[-1] == "completed"
            await pilot.press("q")
            await wait_for(pilot, lambda: cell(runs, "stopped", "status") == "completed", "the row to follow")
    run(go())


def test_export_csv_and_tensorboard(past_runs, tmp_path):
    async def go():
        app = browser(past_runs)
        async with app.run_test(size=(100, 30)) as pilot:
            runs = await open_browser(app, pilot)
            await go_to(pilot, runs, "done")
            await pilot.press("e")
            assert app.screen.query_one("#ask-input", Input).value.endswith(".csv")
            await answer(pilot, app, str(tmp_path / "nowhere" / "x.csv"))
            assert "no such directory" in str(app.screen.query_one("#ask-error", Static).content)
            await answer(pilot, app, str(past_runs / "done" / "checkpoints"))  # never into a run
            assert "inside run done" in str(app.screen.query_one("#ask-error", Static).content)
            await answer(pilot, app, str(tmp_path / "done.csv"))
            await app.workers.wait_for_complete()
            with open(tmp_path / "done.csv") as f:
                rows = list(csv.DictReader(f))
            assert {r["run"] for r in rows} == {"done"} and any(r["metric"] == "val_loss" for r in rows)

            await go_to(pilot, runs, "stopped")
            await pilot.press("space")
            await go_to(pilot, runs, "done")
            await pilot.press("space", "e")
            await answer(pilot, app, str(tmp_path / "tb"))
            await wait_for(pilot, lambda: (tmp_path / "tb" / "done").is_dir() and (tmp_path / "tb" / "stopped").is_dir()
                           and any((tmp_path / "tb" / "stopped").iterdir()), "the event files")
    run(go())


def test_sample_generates_and_cancels(past_runs, tmp_path, gpt2_ready):
    async def go():
        app = browser(past_runs)
        async with app.run_test(size=(100, 30)) as pilot:
            runs = await open_browser(app, pilot)
            await go_to(pilot, runs, "failed")
            await pilot.press("g")  # its only checkpoint's weights overflow (conftest.overflow_checkpoint)
            failed = app.screen
            assert isinstance(failed, SampleScreen)
            await pilot.press("ctrl+r")
            status = failed.query_one("#sample-status", Static)
            await wait_for(pilot, lambda: "failed" in str(status.content), "the refusal")
            assert "its outputs are not finite" in str(status.content)
            await pilot.press("escape")
            assert app.screen is runs
            await go_to(pilot, runs, "done")
            await pilot.press("g")
            assert isinstance(app.screen, SampleScreen)
            sample = app.screen
            sample.query_one("#s-max-new-tokens", Input).value = "many"
            await pilot.press(*"Hello", "enter")
            assert "new tokens = 'many'" in str(sample.query_one("#sample-status", Static).content)
            assert not launch.HELPERS
            sample.query_one("#s-max-new-tokens", Input).value = "12"
            await pilot.press("ctrl+r")
            status = sample.query_one("#sample-status", Static)
            await wait_for(pilot, lambda: "done in" in str(status.content) or "failed" in str(status.content),
                           "the sample")
            assert "done in" in str(status.content), status.content
            text = str(sample.query_one("#sample-output", Static).content)
            assert text.startswith("Hello") and len(text) > len("Hello")
            # repeatable by its seed, and the next sample gets the next seed
            assert "seed 1337" in str(status.content) and sample.query_one("#s-seed", Input).value == "1338"

            sample.query_one("#s-max-new-tokens", Input).value = "100000"
            await pilot.press("ctrl+r")
            proc = launch.HELPERS[-1]
            await wait_for(pilot, lambda: "gigagpt sample" in str(status.content), "progress")
            # the text streams in while it is generated
            output = sample.query_one("#sample-output", Static)
            await wait_for(pilot, lambda: len(str(output.content)) > len("Hello") + 20
                           and "generating:" in str(status.content), "streamed text")
            assert proc.poll() is None
            await pilot.press("escape")  # cancels
            assert proc.poll() is not None and "cancelled" in str(status.content)
            assert isinstance(app.screen, SampleScreen)
            await pilot.press("escape")  # closes
            assert app.screen is runs
    run(go())


def test_damaged_runs_never_break_the_screen(past_runs, tmp_path):
    root = copy_runs(past_runs, tmp_path, "done")
    four_damaged_runs(root, past_runs)

    async def go():
        app = browser(root)
        async with app.run_test(size=(100, 30)) as pilot:
            runs = await open_browser(app, pilot)
            assert sorted(table_ids(runs)) == ["bad-ckpt", "bad-meta", "done", "garbage", "no-meta"]
            assert cell(runs, "bad-meta", "status") == "damaged" and cell(runs, "no-meta", "status") == "damaged"
            detail = runs.query_one("#run-detail", Static)
            for run_id, problem in (("bad-meta", "not valid JSON"), ("no-meta", "meta.json: missing"),
                                    ("garbage", "3 lines are not JSON"), ("bad-ckpt", "not a torch checkpoint")):
                await go_to(pilot, runs, run_id)
                assert problem in str(detail.content), (run_id, detail.content)
            await go_to(pilot, runs, "bad-ckpt")
            for key in ("g", "r"):  # refused with the reason, no subprocess
                await pilot.press(key)
                assert app.screen is runs and not launch.HELPERS and not launch.STARTED
            for run_id in ("bad-meta", "garbage", "done", "no-meta"):
                await go_to(pilot, runs, run_id)
                await pilot.press("space")
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), "the compare screen")
            chart = app.screen.query_one("#compare-chart")
            await wait_for(pilot, lambda: chart.points > 0, "curves")
            await pilot.press("q")
            await go_to(pilot, runs, "bad-meta")
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen), "the live screen")
            assert "not valid JSON" in str(app.screen.query_one("#failure", Static).content)
            await pilot.press("q")
            await pilot.resize_terminal(200, 60)
            await pilot.pause()
            assert "duration" in runs.columns and cell(runs, "done", "device") == "cpu"
    run(go())


def test_runs_of_every_settings_root_are_listed_and_opened(past_runs, tmp_path, monkeypatch):
    main = tmp_path / "main"
    synthetic_run(main, "done", created=1_600_000_000)  # the same id as a run of the extra root
    synthetic_run(main, "mine")
    extra = copy_runs(past_runs, tmp_path, "done", "stopped")
    settings = tmp_path / "gigagpt.toml"
    settings.write_text(f'[runs]\nroots = ["{extra}", "{tmp_path / "gone"}"]\n')
    monkeypatch.setenv("GIGAGPT_SETTINGS", str(settings))

    async def go():
        app = browser(main)
        assert app.runs_roots == [main, extra] and len(app.root_problems) == 1
        assert "gone" in app.root_problems[0] and "not found" in app.root_problems[0]
        async with app.run_test(size=(100, 30)) as pilot:
            runs = await open_browser(app, pilot)
            extra_done = str(extra / "done")
            assert sorted(r["key"] for r in runs.shown) == sorted(["done", "mine", extra_done, str(extra / "stopped")])
            assert cell(runs, extra_done, "root") == extra.name and cell(runs, "done", "root") == "main"
            assert cell(runs, extra_done, "step") == "6/6" and cell(runs, "done", "step") == "3/3"
            assert "+ 1 more root" in runs.query_one("#runs-table").border_title

            table = runs.query_one("#runs-table", DataTable)
            table.move_cursor(row=[r["key"] for r in runs.shown].index(extra_done))
            await pilot.pause()
            assert f"root {extra}" in str(runs.query_one("#run-detail", Static).content)
            await pilot.press("t")  # an action on a run of the extra root
            await answer(pilot, app, "kept")
            await wait_for(pilot, lambda: next(r for r in runs.rows if r["key"] == extra_done)["tags"] == ["kept"],
                           "the tag")
            assert read_meta(extra / "done").tags == ["kept"] and read_meta(main / "done").tags == []

            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen), "the live screen")
            live = app.screen
            assert live.tail.dir == extra / "done" and live.tail.key == extra_done
            assert app.status(extra_done) == "completed" and app.status("done") == "completed"
            await wait_for(pilot, lambda: live.query_one("#loss-chart").points > 0, "the extra run's curve")
            await pilot.press("q")
            await go_to(pilot, runs, "mine")
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen), "the live screen")
            assert app.screen.tail.dir == main / "mine"

    run(go())


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def shown_text(screen) -> list[str]:
    """What the runs screen shows as text: every cell of the table and the lines around it."""
    table = screen.query_one("#runs-table", DataTable)
    out = [str(screen.query_one(w, Static).content) for w in ("#run-detail", "#runs-state")]
    for i in range(table.row_count):
        out += [getattr(c, "plain", str(c)) for c in table.get_row_at(i)]
    return out


def test_a_root_of_every_kind_of_damaged_run(past_runs, tmp_path):
    """tests/damaged.py's kinds in one root beside the good runs: every run that is one is a row,
    each damaged one with its problem under the table; nothing shown holds a control character;
    a damaged run opens its live screen with the problem line; compare takes damaged runs.
    (tests/test_damaged_dash.py goes through every kind and action; this is the quick look.)"""
    import damaged

    root = damaged.build_root(tmp_path / "runs", past_runs)
    watch = damaged.fifo_watch()
    watch.watch_dir(root)
    hangs = watch.hangs
    kinds = [k for k in damaged.KINDS.values() if not k.root_scoped and not k.skip]

    async def go():
        app = DashApp(root, probe=False, refresh=0.5, browse=True)
        async with app.run_test(size=(160, 48)) as pilot:
            runs = await open_browser(app, pilot)
            ids = set(table_ids(runs))
            for kind in kinds:
                if kind.listed is True:
                    assert kind.entry in ids, kind.name
                elif kind.listed is False:
                    assert kind.entry not in ids, kind.name
            assert set(damaged.GOOD) <= ids
            table = runs.query_one("#runs-table", DataTable)
            for i, row in enumerate(list(runs.shown)):
                table.move_cursor(row=i)  # the cursor moves at once; the line under the table follows
                runs.show_detail()
                detail = str(runs.query_one("#run-detail", Static).content)
                assert not CONTROL.search(detail.replace("\n", " ")), (row["id"], detail)
                if row["status"] == "damaged":
                    assert row["problem"] and detail.splitlines()[-1], row["id"]
            bad = [t for t in shown_text(runs) if CONTROL.search(t)]
            assert not bad, bad[:5]
            # the live screen of one run per kind of part (meta.json, its fields, metrics, log, ...)
            parts = {}
            for kind in kinds:
                if kind.entry in ids and kind.status == ("damaged",):
                    parts.setdefault(kind.part, kind.entry)
            for row in [r for r in runs.shown if r["id"] in parts.values()]:
                app.open_run(row["key"])
                await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen), f"the live screen of {row['id']}")
                live = app.screen
                await pilot.pause()
                header = str(live.query_one("#run-header", Static).content)
                failure = str(live.query_one("#failure", Static).content)
                assert not CONTROL.search(header + failure), (row["id"], header, failure)
                if row["status"] == "damaged" and row["problem"].startswith("meta.json"):
                    assert "damaged" in failure, (row["id"], failure)
                assert not any(CONTROL.search(line) for line in live.query_one("#log").lines), row["id"]
                app.pop_screen()
                await pilot.pause()
            damaged_rows = [r for r in runs.shown if r["status"] == "damaged"][:6] + \
                [r for r in runs.shown if r["id"] in ("done", "stopped")]
            runs.selected = {r["key"] for r in damaged_rows}
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), "the compare screen")
            chart = app.screen.query_one("#compare-chart")
            await wait_for(pilot, lambda: chart.loaded == len(damaged_rows), "every run's curves")
            assert chart.points > 0
            await pilot.press("q")
            assert app.screen is runs
    run(go())
    assert watch.hangs == hangs, "a FIFO blocked the dashboard"


def test_names_that_look_like_markup_or_escapes(tmp_path):
    """Run names and ids are shown as text: `[/]` (which Textual markup would refuse), `[b]`,
    escapes and bidi overrides never garble or break a table, a dialog, a header or a toast."""
    root = tmp_path / "runs"
    synthetic_run(root, "markup", name="[/] [b]loud[/b] [link=x]", created=1_700_000_000)
    synthetic_run(root, "escapes", name="\x1b[2J\x1b]0;title\x07 \u202egnp.exe", created=1_700_000_100)
    synthetic_run(root, "[b]odd-id", created=1_700_000_200)

    async def go():
        app = browser(root)
        async with app.run_test(size=(120, 30)) as pilot:
            runs = await open_browser(app, pilot)
            assert cell(runs, "markup", "name") == "[/] [b]loud[/b] [link=x]"
            assert cell(runs, "escapes", "name") == "[2J]0;title gnp.exe"
            assert cell(runs, "[b]odd-id", "name") == "[b]odd-id"
            for run_id in ("markup", "escapes", "[b]odd-id"):
                await go_to(pilot, runs, run_id)
                assert not CONTROL.search(str(runs.query_one("#run-detail", Static).content).replace("\n", " "))
                await pilot.press("n")  # the rename dialog's title quotes the id
                assert isinstance(app.screen, AskScreen)
                await pilot.press("escape")
                await pilot.press("d")  # the question quotes it too
                assert isinstance(app.screen, ConfirmScreen)
                await pilot.press("n")
                await pilot.press("r")  # refused (no checkpoint): a toast that quotes it
                await pilot.press("enter")
                await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen), "the live screen")
                assert not CONTROL.search(str(app.screen.query_one("#run-header", Static).content))
                await pilot.press("q")
            await pilot.press("q")  # the launch screen's recent runs
            table = app.screen.query_one("#runs", DataTable)
            assert table.get_cell("markup", "run").plain.startswith("[/] [b]loud[/b]")
    run(go())


def test_a_runs_root_that_is_a_file_says_so(tmp_path):
    (tmp_path / "runs").write_text("not a directory")

    async def go():
        app = browser(tmp_path / "runs")
        async with app.run_test(size=(100, 30)) as pilot:
            runs = await open_browser(app, pilot)
            assert "runs root" in str(runs.query_one("#run-detail", Static).content)
            assert "not a directory" in str(runs.query_one("#run-detail", Static).content)
    run(go())
