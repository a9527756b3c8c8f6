"""The sweep view (w on a run of a sweep, in the runs screen): the sweep's runs' loss curves
overlaid (the compare screen's chart), their final or best validation loss against the swept
value(s) (app/sweep_chart.py: log x for lr or values spanning 10x, one line per value of a second
key, the best run marked), and a table of the runs with the best one named.

The sweep's runs are the rows of the app's listing in the same runs root tagged `sweep:<id>`
whose meta.json's sweep names that id (its `values` are read once per run). Live: the table and
the plot follow every poll; a run's curves are read again (store.curves) when its row changes."""
from __future__ import annotations

import time
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from app.cells import MIN_CUT, Columns, cell, fit, fit_columns, run_status_cell, set_columns, short, table_space, write_rows
from app.messages import OpenRun, RunsChanged
from app.sweep_chart import BEST_MARKER, SweepChart, fmt_value, short_key, sort_value, sweep_plot, value_label
from app.widgets import RUN_COLORS, ChartKeys, ChartView, CompareChart
from gigagpt.listing import fmt_loss, fmt_step
from gigagpt.store.files import RunError
from gigagpt.store.meta import printable, read_meta

METRICS = {"best_val": "best val loss", "val_loss": "final val loss"}
RUNNING_RELOAD_SECONDS = 3.0  # a running run's curves are read again at most this often
NAME_WIDTH = (16, 36)  # the run column: its names cut in the middle to no fewer, no more characters
MIN_NAME = 10  # the header's best run name: cut to no fewer characters


class SweepScreen(ChartKeys, Screen):
    HELP = ("Left: each run's smoothed train loss (lines) and val loss (points), coloured as\n"
            "its name in the table. Right: each run's best (b: or final) val loss against the\n"
            "swept value; log x for lr and for values that span 10x; one line per value of a\n"
            "second swept key; ★ marks the best run. Runs without an eval yet are plotted by\n"
            "their last train loss. Enter opens the run under the cursor.")
    BINDINGS = [
        *ChartKeys.VIEW_BINDINGS,
        Binding("v", "curves", "Train/val", show=False),  # ChartKeys.CURVE_BINDINGS' key, in help: b fits instead
        Binding("b", "metric", "Best/final val"),
        Binding("q,escape", "back", "Back"),
        Binding("question_mark", "app.help", "Help"),
    ]
    DEFAULT_CSS = """
    #sweep-header { height: 1; background: $boost; }
    #sweep-charts { height: 1fr; min-height: 8; }
    #sweep-curves { width: 1fr; background: $surface; color: $foreground; }
    #sweep-plot { width: 1fr; background: $surface; color: $foreground; }
    #sweep-table { height: auto; max-height: 40%; min-height: 5; border: round $primary; }
    """

    def __init__(self, sweep_id: str, root: Path):
        super().__init__()
        self.sweep_id, self.root = sweep_id, str(root)
        self.view = ChartView()
        self.metric = "best_val"
        self.values: dict[str, dict | None] = {}  # run key -> its swept values (None: not of this sweep)
        self.keys: list[str] = []  # the swept keys, in the sweep's order
        self.members: list[dict] = []  # the sweep's rows, by their values
        self.curves: dict[str, dict] = {}  # run key -> store.curves.load_curves
        self.loaded: dict[str, tuple] = {}  # run key -> (its row's state, when) at its last curves read
        self.loading = False
        self.best: str | None = None  # the best run's key
        self.losses: dict[str, float | None] = {}  # run key -> the plotted loss
        self.table_layout = None
        self.drawn: dict[str, list] = {}  # run key -> its cells as drawn: a tick writes only the changed ones

    def compose(self) -> ComposeResult:
        yield Static(id="sweep-header")
        with Horizontal(id="sweep-charts"):
            yield CompareChart(self.view, id="sweep-curves")
            yield SweepChart(id="sweep-plot")
        yield DataTable(id="sweep-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#sweep-table").focus()
        self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    def on_runs_changed(self, message: RunsChanged) -> None:
        self.reload()

    def on_resize(self) -> None:
        self.fill_table()
        self.show_header()

    # -- the sweep's runs

    def sweep_values(self, row: dict) -> dict | None:
        if row["key"] not in self.values:
            try:
                sweep = read_meta(Path(row["path"])).sweep
            except RunError:
                sweep = None
            ok = bool(sweep) and sweep.get("id") == self.sweep_id
            self.values[row["key"]] = dict(sweep["values"]) if ok else None
        return self.values[row["key"]]

    def reload(self) -> None:
        tag = f"sweep:{self.sweep_id}"
        rows = [r for r in self.app.tracker.rows.values() if r["root"] == self.root and tag in r["tags"]]
        members = [r for r in rows if self.sweep_values(r) is not None]
        keys: list[str] = []
        for r in members:
            keys += [k for k in self.values[r["key"]] if k not in keys]
        self.keys = keys
        self.members = sorted(members, key=lambda r: (tuple(sort_value(self.values[r["key"]].get(k)) for k in keys),
                                                      r["id"]))
        self.show_plot()
        self.fill_table()
        self.show_header()
        self.load_changed()

    def metric_name(self) -> tuple[str, str]:
        """(the row key plotted, its name): the chosen val loss, or the last train loss in a sweep
        whose runs have no eval yet."""
        if any(r[self.metric] is not None for r in self.members):
            return self.metric, METRICS[self.metric]
        return "loss", "last train loss"

    def show_plot(self) -> None:
        key, what = self.metric_name()
        self.losses = {r["key"]: r[key] for r in self.members}
        runs = [(r["key"], self.values[r["key"]], self.losses[r["key"]]) for r in self.members]
        plot = sweep_plot(runs, self.keys)
        self.best = plot.best[2] if plot.best else None
        self.query_one(SweepChart).set_plot(plot, what)

    def label(self, row: dict) -> str:
        return value_label(self.values[row["key"]], self.keys)

    def fill_table(self) -> None:
        """The sweep's runs, laid out to the width (cells.fit_columns): the swept values and the
        plotted val loss always; the other val loss and the train loss while they fit. Only the
        cells that changed are written (cells.write_rows)."""
        table = self.query_one("#sweep-table", DataTable)
        headers = {"best": " ", "name": "run", **{k: short_key(k) for k in self.keys}, "status": "status",
                   "step": "step", "best_val": "best val", "val_loss": "val", "loss": "loss"}
        every = []
        for row in self.members:
            style = "bold" if row["key"] == self.best else ""
            every.append({"name": printable(row["name"]), "best": Text(BEST_MARKER, style="bold red") if style else Text(" "),
                          **{k: cell(fmt_value(self.values[row["key"]].get(k)), style) for k in self.keys},
                          "status": run_status_cell(row), "step": cell(fmt_step(row)),
                          **{k: cell(fmt_loss(row[k]), style) for k in ("best_val", "val_loss", "loss")}})
        other = "val_loss" if self.metric == "best_val" else "best_val"
        shape = Columns(headers, ("best", "name", *self.keys, "status", "step", self.metric), (other, "name", "loss"),
                        NAME_WIDTH)
        columns, widths, every = fit_columns(shape, every, table_space(table, len(every)))
        layout = set_columns(table, columns, [headers[c] for c in columns], widths, self.table_layout)
        rebuild, self.table_layout = layout != self.table_layout, layout
        rows = {}
        for i, (row, cells) in enumerate(zip(self.members, every)):
            style = f"{RUN_COLORS[i % len(RUN_COLORS)][1]} {'bold' if row['key'] == self.best else ''}"
            cells["name"] = cell(cells["name"], style.strip())
            rows[row["key"]] = [cells[c] for c in columns]
        current = table.cursor_row
        self.drawn = write_rows(table, columns, rows, self.drawn, rebuild)
        if self.members and table.cursor_row != current:  # rows written again: the cursor where it was
            table.move_cursor(row=min(max(current, 0), len(self.members) - 1))

    def show_header(self) -> None:
        """` sweep  ★ best: NAME (lr=0.01) · best val loss 2.81 · 3 runs: 3 completed · ID` in one
        line: the best run's loss whole at any width; its name cut in the middle to what is left
        (at least MIN_NAME; `best val` when even that leaves no room), the (lr=...) only when the
        name does not say it, the counts whole (or only the run count, or none), the sweep id when
        there is room. Narrower (40 columns): ` sweep  ★ lr=0.01 · best val 2.81`, then without
        `· best val`, the values cut at their end when they must be."""
        counts: dict[str, int] = {}
        for r in self.members:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        done = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no runs found"
        count = f" · {len(self.members)} runs"
        tail, sweep_id = f"{count}: {done}", f" · {printable(self.sweep_id)}"
        room = self.size.width - len(" sweep  ")
        best = next((r for r in self.members if r["key"] == self.best), None)
        if best is None:
            lead = "no loss yet"
        else:  # what it is first: at 80 columns the rest is cut
            name, values = printable(best["name"]), self.label(best)
            named = all(f"{short_key(k)}=" in name for k in self.keys)  # `tiny lr=1e-3`: gigagpt sweep's names
            prefix, full, loss = f"{BEST_MARKER} best: ", self.metric_name()[1], fmt_loss(self.losses[best["key"]])
            for what in (full, full.removesuffix(" loss")):  # `best val` when `best val loss` leaves no room
                suffix = f"{'' if named else f' ({values})'} · {what} {loss}"
                if len(prefix) + min(MIN_NAME, len(name)) + len(suffix) + len(tail) <= room:
                    break
            lead = prefix + fit(name, max(MIN_NAME, room - len(prefix) - len(suffix) - len(tail))) + suffix
            for narrow in (f" · {what} {loss}", f" {loss}"):  # a narrow terminal: the best run's values, its loss
                if len(lead) > room:
                    lead = f"{BEST_MARKER} {short(values, max(room - 2 - len(narrow), MIN_CUT))}{narrow}"
        room -= len(lead)
        tail = tail + sweep_id if len(tail) + len(sweep_id) <= room else tail if len(tail) <= room else (
            count if len(count) <= room else "")  # whole or not at all: never `· 2` of `· 2 runs: ...`
        parts = [Text(" sweep ", style="bold reverse"), Text(" "),
                 Text(lead, style="dim" if best is None else "bold"), Text(tail, style="dim")]
        self.query_one("#sweep-header", Static).update(Text.assemble(*parts, no_wrap=True, overflow="ellipsis"))

    # -- curves

    def load_changed(self) -> None:
        """Read the curves of runs whose row changed since (a running one at most every few seconds)."""
        if self.loading:
            return
        now, todo = time.monotonic(), []
        for r in self.members:
            state = (r["status"], r["step"], r["loss"], r["val_loss"])
            seen = self.loaded.get(r["key"])
            if seen and (seen[0] == state or (r["status"] == "running" and now - seen[1] < RUNNING_RELOAD_SECONDS)):
                continue
            self.loaded[r["key"]] = (state, now)
            todo.append((r["key"], Path(r["path"])))
        if todo:
            self.loading = True
            self.load_curves(todo, self.view.x_axis)

    @work(thread=True, exit_on_error=False, group="sweep-curves")
    def load_curves(self, todo: list[tuple[str, Path]], x_axis: str) -> None:
        from gigagpt.store.curves import load_curves

        keys, got = (() if x_axis == "step" else (x_axis,)), {}
        try:
            for key, path in todo:
                got[key] = load_curves(path, keys)
        finally:
            self.app.call_from_thread(self.curves_loaded, got)

    def curves_loaded(self, got: dict) -> None:
        self.loading = False
        self.curves.update(got)
        self.query_one(CompareChart).set_curves(
            [(self.label(r), self.curves[r["key"]]) for r in self.members if r["key"] in self.curves])

    # -- keys

    def action_x_axis(self) -> None:
        self.view.next_x_axis()
        if self.view.x_axis != "step":
            self.loaded.clear()  # read again with the new axis's column
            self.curves = {k: c for k, c in self.curves.items() if self.view.x_axis in c["train"]}
            self.load_changed()
        self.view_changed()

    def action_metric(self) -> None:
        self.metric = "val_loss" if self.metric == "best_val" else "best_val"
        self.reload()
        self.notify(f"plotted: {self.metric_name()[1]}", timeout=2)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.post_message(OpenRun(event.row_key.value))
