"""The dashboard in small and big terminals (issue 16), read off the screen as drawn: the presets'
fits column and a few recent runs at 80x24, nothing lost at 200x60; the runs table and the sweep
view whole in 80 columns (no sideways scrolling); cut run names that never look alike in the
compare legend; queue positions on the launch screen; the runner of each runs root in the header;
the Cerebras-only fields only for backend cerebras."""
import json
import time

import pytest
from conftest import gigagpt
from test_dash_app import run, wait_for
from test_dash_browse import browser, cell, go_to, open_browser, synthetic_run
from test_dash_queue import roots, wait_until  # noqa: F401 - roots: a fixture (kills the runners it lists)
from test_queue import sets
from textual.notifications import Notify
from textual.widgets import DataTable, Select, Static

from app.main import DashApp
from app.screens.compare import CompareScreen
from app.screens.home import HomeScreen
from app.screens.runs import COLUMNS
from app.screens.sweep import SweepScreen
from gigagpt.store.queue import runner_state

STAMPS = ["tiny-20261129-0930" + f"{s:02d}" for s in range(0, 48, 6)]  # 8 runs, named as the CLI does


def screen_lines(app) -> list[str]:
    """The screen as the terminal shows it, one string per row."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def shown(app, widget) -> list[str]:
    """The rows of the screen inside a widget's region (what of it is visible)."""
    r = widget.content_region
    return [line[r.x:r.right] for line in screen_lines(app)[r.y:r.bottom]]


async def recent_runs(app, pilot, count: int) -> DataTable:
    """The launch screen's recent runs table, once it lists `count` runs and is drawn."""
    runs = app.screen.query_one("#runs", DataTable)
    await wait_for(pilot, lambda: runs.row_count == count, "the recent runs")
    await pilot.pause()
    return runs


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_presets_fit_and_recent_runs_are_visible(tmp_path, size):
    root = tmp_path / "runs"
    for i, name in enumerate(STAMPS):
        synthetic_run(root, name, created=1_700_000_000 + i)

    async def go():
        app = DashApp(root, probe=False, refresh=0.2)
        async with app.run_test(size=size) as pilot:
            home = app.screen
            runs = await recent_runs(app, pilot, len(STAMPS))
            presets = shown(app, home.query_one("#presets"))
            header = presets[0].split()
            assert header[:2] == ["preset", "params"] and "fits" in header, presets
            if size == (200, 60):
                assert header == ["preset", "params", "mem/device", "fits", "FLOP/tok"]
            for name in ("tiny", "nano", "124m", "175b"):  # each with its answer, in the fits column
                line = next(line for line in presets if line.split()[:1] == [name])
                fits = line[presets[0].index("fits"):].split()[0]
                assert fits == ("no" if name == "175b" else "yes"), line
            rows = [line for line in shown(app, runs) if "tiny-2026" in line]
            assert len(rows) >= (5 if size == (80, 24) else len(STAMPS)), shown(app, runs)
            assert all("completed" in line for line in rows)
    run(go())


def test_compare_legend_tells_runs_a_second_apart_apart(tmp_path):
    root = tmp_path / "runs"
    a = synthetic_run(root, "tiny-20261129-093012", loss=2.5)
    b = synthetic_run(root, "tiny-20261129-091544", loss=3.0, created=1_700_000_100)

    async def go():
        app = DashApp(root, probe=False, refresh=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            app.push_screen(CompareScreen([a, b], [a.name, b.name]))
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.query("#compare-chart"),
                           "the compare screen")
            compare = app.screen
            chart = compare.query_one("#compare-chart")
            await wait_for(pilot, lambda: chart.loaded == 2 and chart.points > 0, "the curves")
            await pilot.pause()
            first, second = compare.labels
            assert first != second and len(first) <= 18 and first.endswith("093012") and second.endswith("091544")
            assert [label for label, _ in chart.curves] == [first, second]
            screen = "\n".join(screen_lines(app))
            header = screen_lines(app)[0]
            assert f"■ {first}" in header and f"■ {second}" in header
            assert screen.count(first) >= 3 and screen.count(second) >= 3  # header, legend, table
    run(go())


def test_cerebras_fields_only_for_the_cerebras_backend(tmp_path):
    async def go():
        app = DashApp(tmp_path / "runs", probe=False, refresh=0.2)
        async with app.run_test(size=(100, 30)) as pilot:
            home = app.screen
            assert isinstance(home, HomeScreen)
            target = home.query_one("#f-cerebras-target").parent  # the field's row: label and choice
            backend = home.query_one("#f-train-backend", Select)
            form = home.query_one("#form")

            def offered() -> bool:
                lines = shown(app, form)
                return any(line.split()[:1] == ["cerebras"] for line in lines)

            await pilot.pause()
            assert backend.value == "torch" and not target.display and not offered()
            assert not home.check_action("check_csx", ())  # ctrl+t is not in the footer either
            backend.value = "cerebras"
            await pilot.pause()
            assert target.display and offered() and home.check_action("check_csx", ())
            backend.value = "torch"
            await pilot.pause()
            assert not target.display and not offered()
    run(go())


SWEEP_ID = "tiny-sweep-20261130-101010"
SWEPT = [(f"tiny-lr{lr:g}-sweep-20261130-1010{i}0", lr) for i, lr in enumerate((1e-3, 3e-3, 1e-2))]


def sweep_runs(root):
    """Three runs of one sweep with long names alike but at their ends (meta.json's sweep and tag as
    `gigagpt sweep` writes them), each with an eval: the best val loss is lr 0.01's, 2.9000."""
    for i, (name, lr) in enumerate(SWEPT):
        run_dir = synthetic_run(root, name, loss=3.0 - i / 10, created=1_700_000_100 + i,
                                tags=[f"sweep:{SWEEP_ID}"], sweep={"id": SWEEP_ID, "values": {"train.lr": lr}})
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"kind": "eval", "step": 3, "val_loss": 3.1 - i / 10, "time": 1_700_000_200}) + "\n")


async def open_sweep(app, pilot) -> SweepScreen:
    """The sweep view of sweep_runs' runs (w on the first, from the runs screen), its curves loaded."""
    runs = await open_browser(app, pilot)
    await go_to(pilot, runs, SWEPT[0][0])
    await pilot.press("w")
    await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen) and len(app.screen.members) == 3,
                   "the sweep view")
    await wait_for(pilot, lambda: app.screen.query_one("#sweep-curves").loaded == 3, "the curves")
    await pilot.pause()
    return app.screen


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_runs_table_shows_name_status_step_and_best_val_without_scrolling(tmp_path, size):
    root = tmp_path / "runs"
    for i, name in enumerate(STAMPS):
        synthetic_run(root, name, created=1_700_000_000 + i)
    sweep_runs(root)

    async def go():
        app = browser(root)
        async with app.run_test(size=size) as pilot:
            runs = await open_browser(app, pilot)
            table = runs.query_one("#runs-table", DataTable)
            await pilot.pause()
            lines = shown(app, table)
            assert ["run", "status", "step"] == [w for w in lines[0].split() if w in ("run", "status", "step")]
            assert "best val" in lines[0] and table.max_scroll_x == 0, lines[0]
            for name, _ in SWEPT:
                row = next(r for r in runs.shown if r["id"] == name)
                label = runs.labels[name]
                line = next(line for line in lines if f" {label} " in line)  # its row, as drawn
                assert "completed" in line and "3/3" in line and f"{row['best_val']:.4f}" in line, line
                if size[0] == 80:  # cut in the middle: the start and the end, where these differ
                    assert "…" in label and label.startswith("tiny-lr") and label.endswith(name[-6:]), label
                else:
                    assert label == name
            assert len(set(runs.labels.values())) == len(runs.labels)
            if size[0] == 160:
                assert set(runs.columns) == set(COLUMNS) - {"root"}  # every column: one root
            else:
                assert "duration" not in runs.columns
                await pilot.press("o")  # sorted by the next column: duration, shown now
                await pilot.pause()
                assert runs.sort_key == "duration" and "duration" in runs.columns and "best_val" in runs.columns
                assert table.max_scroll_x == 0 and "duration ▲" in shown(app, table)[0]
    run(go())


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_sweep_view_header_and_table_whole_in_the_width(tmp_path, size):
    root = tmp_path / "runs"
    sweep_runs(root)

    async def go():
        app = browser(root)
        async with app.run_test(size=size) as pilot:
            view = await open_sweep(app, pilot)
            header = screen_lines(app)[0].rstrip()
            assert header.startswith(" sweep  ★ best: tiny-") and not header.endswith("…"), header
            assert " 2.9000 · 3 runs: 3 completed" in header, header
            if size[0] == 160:
                assert f"best: {SWEPT[2][0]} (lr=0.01) · best val loss 2.9000" in header
                assert header.endswith(f" · {SWEEP_ID}"), header
            table = view.query_one("#sweep-table", DataTable)
            lines = shown(app, table)
            assert "best val" in lines[0] and table.max_scroll_x == 0, lines
            best = next(line for line in lines if "★" in line).split()
            assert best[2:4] == ["0.01", "completed"] and best[5] == "2.9000", best  # ★, run, lr, ..., best val
            await pilot.press("v")  # the curves' key (ChartKeys, as in the compare screen)
            assert view.query_one("#sweep-curves").show_curves == "train"
    run(go())


def test_runs_that_never_started_show_no_start_time(tmp_path):
    """A queued and a cancelled run show "–" as started (their created time is only when they were
    made) and as duration, on the launch screen and in the runs screen, whose detail line says
    "not started"; a completed run shows its own."""
    root = tmp_path / "runs"
    synthetic_run(root, "done", created=1_700_000_000)
    synthetic_run(root, "waiting", created=1_700_000_100, status="queued", step=0, queue_order=1)
    synthetic_run(root, "dropped", created=1_700_000_200, status="cancelled", step=0)

    async def go():
        app = DashApp(root, probe=False, refresh=0.2)
        async with app.run_test(size=(160, 48)) as pilot:
            recent = await recent_runs(app, pilot, 3)
            assert [recent.get_cell(k, "started").plain for k in ("done", "waiting", "dropped")] == [
                started_text(1_700_000_000), "–", "–"]
            await pilot.press("b")
            runs = await open_browser(app, pilot)
            detail = runs.query_one("#run-detail", Static)
            for run_id in ("done", "waiting", "dropped"):
                await go_to(pilot, runs, run_id)
                await pilot.pause()
                ran = (cell(runs, run_id, "started"), cell(runs, run_id, "duration"))
                if run_id == "done":
                    assert ran == (started_text(1_700_000_000), "0m10s"), ran
                    assert " · started 20" in str(detail.content) and " · 0m10s · " in str(detail.content)
                else:
                    assert ran == ("–", "–"), (run_id, ran)
                    assert " · not started · val" in str(detail.content) and "started 20" not in str(detail.content)
    run(go())


def test_recent_runs_show_queue_positions(tmp_path, dataset):
    root = tmp_path / "runs"
    for name in ("first", "second"):
        gigagpt("queue", "add", "tiny", *sets(dataset), "--name", name, "--runs-root", root)
    second = next(p for p in root.iterdir() if p.name.startswith("second"))
    gigagpt("queue", "move", second, "1", "--runs-root", root)

    async def go():
        app = DashApp(root, probe=False, refresh=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            runs = await recent_runs(app, pilot, 2)
            lines = shown(app, runs)
            assert "queued #1" in next(line for line in lines if "second-" in line)
            assert "queued #2" in next(line for line in lines if "first-" in line)
    run(go())


def test_the_runner_of_each_runs_root(tmp_path, dataset, roots, monkeypatch):  # noqa: F811 - roots
    """The header and the runs table's border say each root's runner (the runs root's always,
    another's when it has a runner or queued runs); ctrl+g in the runs screen is for the root of
    the run under the cursor."""
    main, other = tmp_path / "main", tmp_path / "other"
    gigagpt("queue", "add", "tiny", *sets(dataset), "--name", "waiting", "--runs-root", main)
    synthetic_run(other, "there")
    settings = tmp_path / "gigagpt.toml"
    settings.write_text(f'[runs]\nroots = ["{other}"]\n')
    monkeypatch.setenv("GIGAGPT_SETTINGS", str(settings))
    roots += [main, other]
    gigagpt("queue", "run", "--follow", "--runs-root", other)  # detached; idle: nothing is queued there
    wait_until(lambda: (runner_state(other) or {}).get("pid"), "the other root's runner", timeout=60)
    pid = runner_state(other)["pid"]
    notes = []

    def hook(message):
        if isinstance(message, Notify):
            notes.append(str(message.notification.message))

    async def go():
        app = browser(main)
        async with app.run_test(size=(160, 48), message_hook=hook) as pilot:
            runs = await open_browser(app, pilot)
            table = runs.query_one("#runs-table", DataTable)
            mine = f"queue runner: not running · 1 queued · ^g starts it │ other: runner pid {pid} · 1 slot · idle"
            await wait_for(pilot, lambda: str(table.border_subtitle).startswith(mine), "both roots' runners")
            assert f"other: runner pid {pid}" in app.sub_title
            await go_to(pilot, runs, "there")
            await pilot.press("ctrl+g")  # that root's runner runs already: said, nothing started
            await wait_for(pilot, lambda: any(n.startswith(f"other: runner pid {pid}") for n in notes), "the answer")
            await pilot.pause(0.5)
            assert runner_state(main) is None and not any("starting the queue runner" in n for n in notes)
            await pilot.resize_terminal(80, 24)  # fewer words for each root
            await wait_for(pilot, lambda: str(table.border_subtitle) ==
                           "main: no runner · 1 queued │ other: runner idle", "the short form")
    run(go())


def test_runs_table_sorted_by_a_long_runs_root_cuts_it_in_the_middle(tmp_path, monkeypatch):
    """Sorted by root, with roots named longer than the table has room for: the root column is cut
    in the middle (no two alike), and run, status, step and best val stay whole, at 80 and 100."""
    main = tmp_path / "main"
    synthetic_run(main, STAMPS[0])
    others = [tmp_path / f"other-root-with-a-long-directory-name-{i}" for i in range(6)]
    for i, other in enumerate(others):
        synthetic_run(other, STAMPS[i + 1], step=600000, max_steps=600000, preset="124m")
    settings = tmp_path / "gigagpt.toml"
    settings.write_text("[runs]\nroots = [" + ", ".join(json.dumps(str(o)) for o in others) + "]\n")
    monkeypatch.setenv("GIGAGPT_SETTINGS", str(settings))

    async def go():
        app = browser(main)
        async with app.run_test(size=(80, 24)) as pilot:
            runs = await open_browser(app, pilot)
            table = runs.query_one("#runs-table", DataTable)
            while runs.sort_key != "root":
                await pilot.press("o")
            for size in ((80, 24), (100, 30)):
                await pilot.resize_terminal(*size)
                await pilot.pause()
                await pilot.pause()
                lines = shown(app, table)
                assert table.max_scroll_x == 0 and "root" in runs.columns, (size, lines[0])
                assert ["run", "root", "▲", "status", "step", "best", "val"] == lines[0].split()[:7], lines[0]
                roots = [line.split()[1] for line in lines[1:8]]
                assert roots[0] == "main" and len(set(roots)) == 7, lines
                for i, root in enumerate(roots[1:]):
                    assert root.startswith("other-r") and "…" in root and root.endswith(f"-{i}"), root
                assert all("completed" in line and "600000/600000" in line for line in lines[2:8]), lines
    run(go())


def test_runs_table_whole_at_60_columns(tmp_path):
    """At 60x20 the sort column (started) yields, said in the bar; a 600000-step run's step shows
    only the current step; run, status, step and best val never scroll sideways."""
    root = tmp_path / "runs"
    for i, name in enumerate(STAMPS[:3]):
        synthetic_run(root, name, created=1_700_000_000 + i)

    async def go():
        app = browser(root)
        async with app.run_test(size=(60, 20)) as pilot:
            runs = await open_browser(app, pilot)
            table = runs.query_one("#runs-table", DataTable)
            state = runs.query_one("#runs-state")
            for big in (False, True):
                if big:
                    synthetic_run(root, "124m-20261129-100000", created=1_700_000_100, step=600000,
                                  max_steps=600000, preset="124m")
                    await wait_for(pilot, lambda: len(runs.shown) == 4, "the 124m run")
                await pilot.pause()
                lines = shown(app, table)
                assert table.max_scroll_x == 0 and "started" not in runs.columns, lines
                assert lines[0].split()[:3] == ["run", "status", "step"] and "  best val " in lines[0], lines[0]
                assert "sort: started ▼ (o)" in str(state.render()), state.render()
                row = next(line for line in lines if STAMPS[0] in line).split()
                assert row[1:3] == ["completed", "3" if big else "3/3"], row
                if big:
                    assert next(line for line in lines if "124m-2026" in line).split()[1:3] == ["completed", "600000"]
    run(go())


@pytest.mark.parametrize("size", [(80, 24), (60, 20)])
def test_recent_runs_fit_80_columns_with_a_long_step(tmp_path, size):
    """The launch screen's recent runs at 80x24 and 60x20 (where the launch screen scrolls and its
    own scrollbar takes a column), one of them at the 124m preset's 600000 steps: laid out like the
    runs table (no sideways scrolling); at 80 columns run, status, step and started whole."""
    root = tmp_path / "runs"
    for i, name in enumerate(STAMPS):
        synthetic_run(root, name, created=1_700_000_000 + i)
    synthetic_run(root, "124m-20261129-100000", created=1_700_000_100, step=600000, max_steps=600000, preset="124m")

    async def go():
        app = DashApp(root, probe=False, refresh=0.2)
        async with app.run_test(size=size) as pilot:
            runs = await recent_runs(app, pilot, len(STAMPS) + 1)
            lines = shown(app, runs)
            assert runs.max_scroll_x == 0, lines
            if size[0] < 80:
                return
            assert ["run", "status", "step", "loss", "started"] == [w for w in lines[0].split() if w != "preset"]
            big = next(line for line in lines if "124m-20261129-100000" in line)
            assert "completed  600000/600000" in big and big.rstrip()[-11:] == started_text(1_700_000_100), big
    run(go())


def started_text(created) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(created))
