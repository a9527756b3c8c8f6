"""The compare screen: 2-8 runs' loss curves overlaid, and the config keys that differ."""
from __future__ import annotations

import json
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from app.cells import cell, fit_all, short
from app.widgets import RUN_COLORS, ChartKeys, ChartView, CompareChart
from gigagpt.listing import fmt_loss, fmt_step, human_count
from gigagpt.store.curves import config_diff, load_curves
from gigagpt.store.meta import printable
from gigagpt.store.summary import run_summary

LABEL_WIDTH = 18


def config_value(value) -> str:
    """A config value as one line: JSON (strings quoted, escapes written out), or – when absent."""
    return "–" if value is None else printable(json.dumps(value, default=str))


class CompareScreen(ChartKeys, Screen):
    HELP = ("Each run in its own colour: smoothed train loss (lines), val loss (points).\n"
            "Smoothing is the debiased EMA of the live screen. The table lists each run's\n"
            "results, then every config key whose value differs between the runs.")
    BINDINGS = [
        *ChartKeys.VIEW_BINDINGS,
        *ChartKeys.CURVE_BINDINGS,
        Binding("q,escape", "back", "Back"),
        Binding("question_mark", "app.help", "Help"),
    ]

    def __init__(self, run_dirs: list[Path], names: list[str]):
        super().__init__()
        self.run_dirs, self.names = list(run_dirs), list(names)
        # each name as the legend, the table and the header show it: cut together, never two alike
        self.labels = fit_all([printable(n) for n in names], LABEL_WIDTH)
        self.view = ChartView()

    def compose(self) -> ComposeResult:
        yield Static(id="compare-header")
        yield CompareChart(self.view, id="compare-chart")
        yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#compare-table").border_title = "Results and config keys that differ"
        self.query_one("#compare-header", Static).update(self.header("loading the runs' metrics…"))
        self.load()

    @work(thread=True, exit_on_error=False, group="compare")
    def load(self) -> None:
        summaries = [run_summary(d) for d in self.run_dirs]
        diff = config_diff(self.run_dirs)
        self.app.call_from_thread(self.fill_table, summaries, diff)
        self.load_curves(self.view.x_axis)

    def load_curves(self, x_axis: str) -> None:
        """Each run's curves, shown as each arrives (a 100,000-step log takes ~0.2 s). Only the
        columns of the chosen x axis are read: tokens and time are read when x asks for them."""
        keys = () if x_axis == "step" else (x_axis,)
        curves = []
        for run_dir, label in zip(self.run_dirs, self.labels):
            curves.append((label, load_curves(run_dir, keys)))
            self.app.call_from_thread(self.query_one(CompareChart).set_curves, list(curves))

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare-x")
    def reload_for_axis(self, x_axis: str) -> None:
        self.load_curves(x_axis)

    def fill_table(self, summaries, diff) -> None:
        table = self.query_one("#compare-table", DataTable)
        table.add_column("", key="key")
        for i, label in enumerate(self.labels):
            table.add_column(Text(label, style=f"bold {RUN_COLORS[i % len(RUN_COLORS)][1]}"), key=str(i))
        results = [("status", lambda r: r["status"]), ("step", fmt_step),
                   ("tokens", lambda r: human_count(r["tokens"])), ("loss", lambda r: fmt_loss(r["loss"])),
                   ("best val", lambda r: fmt_loss(r["best_val"])),
                   ("tok/s", lambda r: human_count(r["tok_s"])), ("device", lambda r: r["device"] or "–")]
        for name, value in results:
            table.add_row(Text(name, style="bold"), *[cell(value(s)) for s in summaries])
        problems = [s["problem"] or s["failure"] for s in summaries]
        if any(problems):
            table.add_row(Text("problem", style="bold red"),
                          *[cell(p and short(printable(p), 60), "red") for p in problems])
        for key, values in diff:
            table.add_row(cell(key), *[cell(config_value(v)) for v in values])
        if not diff:
            table.add_row(Text("config", style="dim"), *[cell("same") for _ in summaries])
        self.query_one("#compare-header", Static).update(self.header(
            f"{len(diff)} config key(s) differ" if diff else "same config"))

    def header(self, note: str) -> Text:
        parts = [Text(" compare ", style="bold reverse")]
        for i, label in enumerate(self.labels):
            parts.append(Text(f" ■ {label}", style=RUN_COLORS[i % len(RUN_COLORS)][1]))
        parts.append(Text(f"   {note}", style="dim"))
        return Text.assemble(*parts)

    # -- keys

    def action_x_axis(self) -> None:
        self.view.next_x_axis()
        chart = self.query_one(CompareChart)
        if any(self.view.x_axis not in curves["train"] for _, curves in chart.curves):
            self.reload_for_axis(self.view.x_axis)  # redraws as the column arrives
        else:
            self.view_changed()
