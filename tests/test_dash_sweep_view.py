"""The sweep view (w on a run of a sweep) as it is drawn and kept up to date: a poll tick writes
only the table cells that changed; the curves chart has a title at 80 columns; the header keeps
the best loss at 40 columns."""
import json

import pytest
from test_dash_app import run, wait_for
from test_dash_browse import browser
from test_dash_small import SWEPT, open_sweep, screen_lines, shown, sweep_runs
from textual.widgets import DataTable


def count_writes(table: DataTable) -> list[tuple]:
    """The table's add_row and update_cell calls from now on (each still done): (what, row key)."""
    calls = []
    add_row, update_cell = table.add_row, table.update_cell

    def counted_add_row(*cells, key=None, **kw):
        calls.append(("add_row", key))
        return add_row(*cells, key=key, **kw)

    def counted_update_cell(row_key, column_key, value, **kw):
        calls.append(("update_cell", row_key))
        return update_cell(row_key, column_key, value, **kw)

    table.add_row, table.update_cell = counted_add_row, counted_update_cell
    return calls


def test_a_poll_tick_writes_only_the_changed_cells(tmp_path):
    root = tmp_path / "runs"
    sweep_runs(root)

    async def go():
        app = browser(root)
        async with app.run_test(size=(160, 48)) as pilot:
            view = await open_sweep(app, pilot)
            table = view.query_one("#sweep-table", DataTable)
            ticks = []
            view.reload = lambda reload=view.reload: (ticks.append(1), reload())[1]  # counts the poll ticks
            calls = count_writes(table)
            await wait_for(pilot, lambda: len(ticks) >= 3, "three poll ticks")
            assert calls == [], calls  # nothing changed: nothing written
            first = SWEPT[0][0]
            with open(root / first / "metrics.jsonl", "a") as f:  # a lower val loss: its best val changes
                f.write(json.dumps({"kind": "eval", "step": 3, "val_loss": 3.05, "time": 1_700_000_300}) + "\n")
            await wait_for(pilot, lambda: next(r for r in view.members if r["id"] == first)["best_val"] == 3.05,
                           "the new eval")
            await pilot.pause()
            assert calls and set(calls) <= {("update_cell", first)}, calls
            assert "best_val" in view.table_layout[0]
            assert table.get_cell(first, "best_val").plain == "3.0500"
            assert table.get_cell(first, "val_loss").plain == "3.0500"
    run(go())


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_the_curves_chart_has_a_title_in_its_width(tmp_path, size):
    """At 80 columns the curves chart is 40 wide: its title shortened to fit (plotext draws none
    that does not), saying log-y when l is on; at 160 the whole title."""
    root = tmp_path / "runs"
    sweep_runs(root)

    async def go():
        app = browser(root)
        async with app.run_test(size=size) as pilot:
            view = await open_sweep(app, pilot)
            chart = view.query_one("#sweep-curves")

            def title() -> str:
                return shown(app, chart)[0].strip()  # plotext's top line: the title, centred

            smoothing = f"{view.view.smoothing:g}"
            if size[0] == 160:
                assert title() == f"loss (lines) and val loss (points) · smoothing {smoothing}", title()
            else:
                assert title() == f"loss, val loss ● · smoothing {smoothing}", shown(app, chart)
            await pilot.press("l")
            await pilot.pause()
            assert title().startswith("loss") and title().endswith(" · log-y"), title()
            await pilot.press("v")  # train curves only
            await pilot.pause()
            assert title().startswith("loss · smooth") and title().endswith(" · log-y"), title()
    run(go())


@pytest.mark.parametrize("width", [40, 30])
def test_the_header_keeps_the_best_loss_in_a_narrow_terminal(tmp_path, width):
    """At 40 columns the header names the best run by its swept value and keeps its loss whole
    (the run's name, `best:` and the counts go first); at 30 `· best val` goes too."""
    root = tmp_path / "runs"
    sweep_runs(root)

    async def go():
        app = browser(root)
        async with app.run_test(size=(width, 20)) as pilot:
            await open_sweep(app, pilot)
            header = screen_lines(app)[0].rstrip()
            want = "★ lr=0.01 · best val 2.9000" if width == 40 else "★ lr=0.01 2.9000"
            assert header == f" sweep  {want}", header
    run(go())
