"""The dashboard in small and big terminals (issue 16), read off the screen as drawn: the presets'
fits column and a few recent runs at 80x24, nothing lost at 200x60; cut run names that never look
alike in the compare legend; the Cerebras-only fields only for backend cerebras."""
import pytest
from test_dash_app import run, wait_for
from test_dash_browse import synthetic_run
from textual.widgets import DataTable, Select

from app.main import DashApp
from app.screens.compare import CompareScreen
from app.screens.home import HomeScreen

STAMPS = ["tiny-20261129-0930" + f"{s:02d}" for s in range(0, 48, 6)]  # 8 runs, named as the CLI does


def screen_lines(app) -> list[str]:
    """The screen as the terminal shows it, one string per row."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def shown(app, widget) -> list[str]:
    """The rows of the screen inside a widget's region (what of it is visible)."""
    r = widget.content_region
    return [line[r.x:r.right] for line in screen_lines(app)[r.y:r.bottom]]


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_presets_fit_and_recent_runs_are_visible(tmp_path, size):
    root = tmp_path / "runs"
    for i, name in enumerate(STAMPS):
        synthetic_run(root, name, created=1_700_000_000 + i)

    async def go():
        app = DashApp(root, probe=False, refresh=0.2)
        async with app.run_test(size=size) as pilot:
            home = app.screen
            runs = home.query_one("#runs", DataTable)
            await wait_for(pilot, lambda: runs.row_count == len(STAMPS), "the recent runs")
            await pilot.pause()
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
