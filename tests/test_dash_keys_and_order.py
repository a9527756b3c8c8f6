"""The footer of every screen that has one at 80 columns (every key it shows, whole), and the order
of the launch screen's recent runs (queued ones in queue order, first to start first; then the
others, newest first). Read off the screen as drawn."""
import pytest
from test_dash_app import run, wait_for
from test_dash_browse import browser, go_to, open_browser, synthetic_run
from test_dash_small import SWEPT, open_sweep, recent_runs, screen_lines, shown, sweep_runs
from textual.widgets import DataTable, Footer, Select, Static

from app.main import DashApp
from app.screens.compare import CompareScreen
from app.screens.dialogs import HelpScreen
from app.screens.live import LiveScreen


async def open_launch(app, pilot, backend="torch"):
    await recent_runs(app, pilot, 4)
    app.screen.query_one("#f-train-backend", Select).value = backend  # cerebras: ctrl+t Check CSX too
    await pilot.pause()


async def open_runs(app, pilot):
    await pilot.press("b")
    await open_browser(app, pilot)


async def open_live(app, pilot):
    await open_runs(app, pilot)
    await go_to(pilot, app.screen, "done")
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, LiveScreen), "the live screen")


async def open_compare(app, pilot):
    await open_runs(app, pilot)
    for run_id, _ in SWEPT[:2]:
        await go_to(pilot, app.screen, run_id)
        await pilot.press("space")
    await pilot.press("c")
    await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), "the compare screen")


async def open_sweep_view(app, pilot):
    await pilot.press("b")
    await open_sweep(app, pilot)


SCREENS = {  # how to get there, and the keys its footer keeps
    "launch": (open_launch, ["^r Launch", "^n Queue", "b Browse runs", "q Quit", "? Help"]),
    "launch, cerebras": (lambda app, pilot: open_launch(app, pilot, "cerebras"), ["^r Launch", "q Quit", "? Help"]),
    "runs": (open_runs, ["space Select", "c Compare", "w Sweep", "? Help"]),
    "live": (open_live, ["s Stop", "k Kill", "l Log-y", "q Back", "? Help"]),
    "compare": (open_compare, ["l Log-y", "v Train/val", "q Back", "? Help"]),
    "sweep": (open_sweep_view, ["l Log-y", "b Best/final val", "q Back", "? Help"]),
}


@pytest.mark.parametrize("name", SCREENS)
def test_footer_keys_fit_80_columns(tmp_path, name):
    root = tmp_path / "runs"
    sweep_runs(root)
    synthetic_run(root, "done")
    opener, kept = SCREENS[name]

    async def go():
        app = DashApp(root, probe=False, refresh=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await opener(app, pilot)
            await pilot.pause()
            screen = app.screen
            footer = screen_lines(app)[screen.query_one(Footer).region.y]
            keys = {}  # the footer shows the first key of each action (+ of "plus,equals_sign")
            for active in screen.active_bindings.values():
                if active.binding.show and active.enabled:
                    keys.setdefault(active.binding.action, active.binding)
            for binding in keys.values():
                assert f" {app.get_key_display(binding)} {binding.description} " in footer, (binding, footer)
            for key in kept:  # the most used ones stay in the footer
                assert f" {key} " in footer, footer
    run(go())


def test_recent_runs_queued_first_in_queue_order_then_newest_first(tmp_path):
    """Two runs queued, the later-made one second in the queue; a completed run made after them
    and one made before: queued #1, queued #2, then the completed ones newest first."""
    root = tmp_path / "runs"
    synthetic_run(root, "old-done", created=1_700_000_000)
    synthetic_run(root, "first-queued", created=1_700_000_100, status="queued", step=0, queue_order=1.0)
    synthetic_run(root, "second-queued", created=1_700_000_200, status="queued", step=0, queue_order=2.0)
    synthetic_run(root, "new-done", created=1_700_000_300)

    async def go():
        app = DashApp(root, probe=False, refresh=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            runs = await recent_runs(app, pilot, 4)
            lines = [line for line in shown(app, runs)[1:] if line.strip()]
            assert [line.split()[0] for line in lines] == ["first-queued", "second-queued", "new-done", "old-done"]
            assert "queued #1" in lines[0] and "queued #2" in lines[1], lines
    run(go())


def read_help(tmp_path, opener, size) -> tuple[list[str], list[str], int]:
    """`?` over the screen `opener` goes to, as drawn: its key rows, its note lines, the text's width."""
    root = tmp_path / "runs"
    sweep_runs(root)
    synthetic_run(root, "done")
    drawn = {}

    async def go():
        app = DashApp(root, probe=False, refresh=0.2)
        async with app.run_test(size=size) as pilot:
            await opener(app, pilot)
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
            await pilot.pause()
            text = app.screen.query_one("#help-text", Static)
            drawn["lines"], drawn["width"] = [line.rstrip() for line in shown(app, text)], text.content_region.width
    run(go())
    lines = drawn["lines"]
    blank = next(i for i, line in enumerate(lines) if not line.strip())  # between the keys and the notes
    return lines[:blank], lines[blank + 1:], drawn["width"]


@pytest.mark.parametrize("name", ["launch", "runs", "sweep"])
def test_help_notes_wrap_only_where_the_box_is_full_at_80_columns(tmp_path, name):
    """The notes under `?`'s keys are hand-wrapped in the source; at 80 columns the box is narrower
    than those lines, so each broke in two (a full line, then a stub mid-sentence). A line that
    runs on now breaks only where the next word would not fit."""
    _, notes, width = read_help(tmp_path, SCREENS[name][0], (80, 48))
    assert len(notes) > 2, notes
    for line, after in zip(notes, notes[1:]):
        if line and after and not line.endswith("."):  # a sentence that runs on to the next line
            assert len(line) + 1 + len(after.split()[0]) > width, (line, after)


def test_help_keys_line_up_whatever_their_width(tmp_path):
    """`[, shift+up` (11 wide) pushed its description out of the column the 9-wide keys made."""
    rows, _, _ = read_help(tmp_path, open_runs, (100, 60))
    assert any("[, shift+up" in row for row in rows) and len(rows) > 10, rows
    starts = {len(row) - len(row.split("  ")[-1]) for row in rows}  # where each description starts
    assert len(starts) == 1, rows


def test_a_poll_tick_leaves_the_runs_table_where_the_user_scrolled_it(tmp_path):
    """Every tick moved the cursor to its own row again, which scrolled the table back to it: a
    table scrolled away from the cursor (the wheel, the scrollbar) jumped back within a second."""
    root = tmp_path / "runs"
    for i in range(60):
        synthetic_run(root, f"run-{i:02d}", created=1_700_000_000 + i)

    async def go():
        app = browser(root)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_browser(app, pilot)
            table = screen.query_one("#runs-table", DataTable)
            table.scroll_to(y=30, animate=False)
            await pilot.pause()
            assert table.scroll_y == 30 and table.cursor_row == 0
            await pilot.pause(1.0)  # five polls at refresh 0.2
            assert table.scroll_y == 30 and table.cursor_row == 0
    run(go())
