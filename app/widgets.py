"""Charts: three of one run (the live screen) and the runs overlaid (the compare screen)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from plotext import _utility as plotext_utility
from rich.style import Style
from rich.text import Span, Text
from textual.binding import Binding
from textual_plotext import PlotextPlot

from app.chart_math import Smoother, downsample
from app.follow import RunTail

X_AXES = ("step", "tokens", "time")
SMOOTHING = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


@dataclass
class ChartView:
    """What the user chose for every chart of a screen."""
    x_axis: str = "step"
    smoothing: float = 0.6
    log_y: bool = False

    def next_x_axis(self) -> None:
        self.x_axis = X_AXES[(X_AXES.index(self.x_axis) + 1) % len(X_AXES)]

    def smoother(self, up: bool) -> None:
        i = min(range(len(SMOOTHING)), key=lambda j: abs(SMOOTHING[j] - self.smoothing))
        self.smoothing = SMOOTHING[max(0, min(len(SMOOTHING) - 1, i + (1 if up else -1)))]


class ChartKeys:
    """The chart view keys of a screen with a `view` (ChartView) and a `view_changed()` redraw:
    l log-y, +/- smoothing, x the x axis. Screens list VIEW_BINDINGS among their BINDINGS, and
    CURVE_BINDINGS (v: train, val or both) where they draw a CompareChart."""

    VIEW_BINDINGS = [
        Binding("l", "log_y", "Log-y"),
        Binding("plus,equals_sign", "smoothing(True)", "Smooth+"),
        Binding("minus", "smoothing(False)", "Smooth-"),
        Binding("x", "x_axis", "X axis", show=False),  # in help: the footer fits 80 columns
    ]
    CURVE_BINDINGS = [Binding("v", "curves", "Train/val")]

    def view_changed(self) -> None:
        self.query_one(CompareChart).refresh()  # a screen with other charts redraws its own

    def action_curves(self) -> None:
        chart = self.query_one(CompareChart)
        chart.show_curves = SHOW_CURVES[(SHOW_CURVES.index(chart.show_curves) + 1) % len(SHOW_CURVES)]
        self.view_changed()

    def action_log_y(self) -> None:
        self.view.log_y = not self.view.log_y
        self.view_changed()

    def action_smoothing(self, up: bool) -> None:
        self.view.smoother(up)
        self.view_changed()

    def action_x_axis(self) -> None:
        self.view.next_x_axis()
        self.view_changed()

    def action_back(self) -> None:
        self.app.pop_screen()


def x_values(columns, axis: str, t0: float) -> np.ndarray:
    if axis == "time":
        return (columns.col("time") - t0) / 60.0
    return columns.col("step" if axis == "step" else "tokens").copy()


X_LABELS = {"step": "step", "tokens": "tokens", "time": "minutes"}


def byte_unit(peak: float) -> tuple[float, str]:
    for div, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB")):
        if peak >= div:
            return div, unit
    return 2**10, "KiB"


class MatrixPlot(PlotextPlot):
    """A plotext chart whose figure is rebuilt inside render(): plotext's log scale breaks if a
    figure is built twice without re-plotting (textual-notes.md), and a resize renders again.
    Subclasses plot in `figure(plt)`, at most a few points per column (downsample)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.points = 0  # how many points the last render plotted (the tests look at it)
        self.render_seconds = 0.0  # CPU time spent drawing since the screen last looked (it paces redraws)

    def render_lines(self, crop):
        start = time.thread_time()  # the UI thread's time: plotext and Textual's own conversion
        lines = super().render_lines(crop)
        self.render_seconds += time.thread_time() - start
        return lines

    def render(self) -> Text:
        plt = self.plt
        plt.clear_figure()
        self.points = self.figure(plt)
        # What PlotextPlot.render does, minus plotext's ANSI string and rich's parsing of it
        # (two thirds of the time on a big chart): read plotext's cell matrix directly.
        plt.plotsize(self.size.width, self.size.height)
        plt._set_size(self.size.width, self.size.height)
        plt.theme(self._get_plotext_theme_name(self.app.theme))
        plt._set_sizes()
        plt._build_matrix()
        return matrix_text(plt.monitor.matrix)

    def figure(self, plt) -> int:
        raise NotImplementedError

    @staticmethod
    def line(plt, x: np.ndarray, y: np.ndarray, scatter: bool = False, **kwargs) -> int:
        """Plot a series if it has points (plotext's legend breaks on a labelled empty series)."""
        if len(x):
            if scatter:
                plt.scatter(x.tolist(), y.tolist(), marker="●", **kwargs)
            else:
                plt.plot(x.tolist(), y.tolist(), marker="braille", **kwargs)
        return len(x)


class RunChart(MatrixPlot):
    """A chart of one run. The screen calls refresh() when the data or the view changed; render()
    copies what it needs under the tail's lock."""

    TITLE = ""

    def __init__(self, tail: RunTail, view: ChartView, **kwargs):
        super().__init__(**kwargs)
        self.tail, self.view = tail, view

    def figure(self, plt) -> int:
        plt.title(self.TITLE)
        plt.xlabel(X_LABELS[self.view.x_axis])
        buckets = max(10, self.size.width - 12)
        with self.tail.lock:
            series, generation = self.tail.series, self.tail.generation
            train_n = len(series.train)
            system_ram = list(self.tail.system_ram)
        t0 = series.train.col("time")[0] if train_n else (system_ram[0][0] if system_ram else 0.0)
        points = self.draw(plt, series, generation, buckets, t0, system_ram)
        if not points:
            plt.title(f"{self.TITLE}: no data yet")
        return points

    def draw(self, plt, series, generation, buckets: int, t0: float, system_ram) -> int:
        raise NotImplementedError


class LossChart(RunChart):
    TITLE = "loss"

    def __init__(self, tail: RunTail, view: ChartView, **kwargs):
        super().__init__(tail, view, **kwargs)
        self._smoother = Smoother(view.smoothing)

    def draw(self, plt, series, generation, buckets, t0, system_ram) -> int:
        x = x_values(series.train, self.view.x_axis, t0)
        loss = series.train.col("loss")
        points = 0
        if len(loss):
            self._smoother.weight = self.view.smoothing
            smooth = self._smoother.update(loss, generation)[:len(loss)]
            points += self.line(plt, *downsample(x, loss, buckets), color="gray", label="raw")
            if self.view.smoothing > 0:
                points += self.line(plt, *downsample(x, smooth, buckets, keep_extremes=False),
                                    color="cyan", label=f"smoothed {self.view.smoothing:g}")
        val = series.evals.col("val_loss")
        if len(val) and len(loss):
            # eval lines carry only the step: place them on the x axis through the train lines
            vx = np.interp(series.evals.col("step"), series.train.col("step"), x)
            vx, vy = downsample(vx, val, buckets, keep_extremes=False)
            points += self.line(plt, vx, vy, scatter=True, color="orange", label="val")
        if points and self.view.log_y:
            plt.yscale("log")
        plt.title(f"loss · smoothing {self.view.smoothing:g}" + (" · log-y" if self.view.log_y else ""))
        return points


class ThroughputChart(RunChart):
    TITLE = "tokens/s · MFU"

    def draw(self, plt, series, generation, buckets, t0, system_ram) -> int:
        x = x_values(series.train, self.view.x_axis, t0)
        tok_s, mfu = series.train.col("tok_s"), series.train.col("mfu") * 100
        return (self.line(plt, *downsample(x, tok_s, buckets, keep_extremes=False), color="green", label="tok/s")
                + self.line(plt, *downsample(x, mfu, buckets, keep_extremes=False), color="magenta",
                            label="MFU %", yside="right"))


class MemoryChart(RunChart):
    TITLE = "memory"

    def draw(self, plt, series, generation, buckets, t0, system_ram) -> int:
        x = x_values(series.train, self.view.x_axis, t0)
        lines = [(x, series.train.col(k), label, color) for k, label, color in (
            ("rss", "process RSS", "blue"), ("mem_alloc", "device alloc", "green"),
            ("mem_peak", "device peak", "red"))]
        if system_ram and len(x):
            # The dashboard samples system RAM itself, by wall time; put it on the run's x axis.
            times, used = np.array(system_ram).T
            lines.append((np.interp(times, series.train.col("time"), x), used, "system RAM used", "yellow"))
        peak = max([np.nanmax(y) for _, y, _, _ in lines if len(y) and not np.isnan(y).all()], default=0.0)
        if not peak:
            return 0
        div, unit = byte_unit(peak)
        plt.title(f"{self.TITLE} ({unit})")
        plt.ylim(0, 1.1 * peak / div)  # from zero: a flat RSS should look flat, not like a cliff
        return sum(self.line(plt, *downsample(xs, y / div, buckets, keep_extremes=False), color=color, label=label)
                   for xs, y, label, color in lines)


# One colour per compared run: plotext's name, and rich's name for the same colour in the table.
RUN_COLORS = (("cyan", "cyan"), ("orange", "dark_orange"), ("green", "green"), ("magenta", "magenta"),
              ("blue", "dodger_blue1"), ("red", "red"), ("yellow", "yellow"), ("white", "white"))
SHOW_CURVES = ("train+val", "train", "val")
CURVE_TITLES = {"train+val": ("loss (lines) and val loss (points)", "loss, val loss ●"),  # ● as the points are drawn
                "train": ("loss", "loss"), "val": ("val loss", "val loss")}
TITLE_MARGIN = 8  # a title is centred on the plot, right of the y ticks (5-7 wide): this much narrower than the chart


class CompareChart(MatrixPlot):
    """Loss of several runs overlaid: each run's smoothed train loss as a line and its val loss as
    points, in the run's colour, on the x axis and smoothing of the ChartView."""

    def __init__(self, view: ChartView, **kwargs):
        super().__init__(**kwargs)
        self.view = view
        self.curves: list[tuple[str, dict]] = []  # (label, store.curves.load_curves output) per run
        self.show_curves = "train+val"
        self._smoothers: list[Smoother] = []
        self.loaded = 0  # runs whose curves arrived

    def set_curves(self, curves: list[tuple[str, dict]]) -> None:
        self.curves = curves
        self._smoothers = [Smoother(self.view.smoothing) for _ in curves]
        self.refresh()
        self.loaded = len(curves)

    def figure(self, plt) -> int:
        plt.xlabel(X_LABELS[self.view.x_axis])
        buckets = max(10, (self.size.width - 12) // 2)  # several runs share the width
        points = 0
        for i, (label, curves) in enumerate(self.curves):
            color = RUN_COLORS[i % len(RUN_COLORS)][0]
            train, evals = curves["train"], curves["eval"]
            if not len(train["step"]):
                continue
            if self.view.x_axis != "step" and self.view.x_axis not in train:
                continue  # its column is being read
            x = self.x_of(train)
            if self.show_curves != "val":
                smoother = self._smoothers[i]
                smoother.weight = self.view.smoothing
                y = smoother.update(train["loss"], 0)[:len(x)]
                points += self.line(plt, *downsample(x, y, buckets, keep_extremes=False), color=color, label=label)
            if self.show_curves != "train" and len(evals["step"]):
                vx = np.interp(evals["step"], train["step"], x)
                vx, vy = downsample(vx, evals["val_loss"], buckets, keep_extremes=False)
                if self.show_curves == "val":
                    points += self.line(plt, vx, vy, color=color, label=f"{label} val")
                else:
                    points += self.line(plt, vx, vy, scatter=True, color=color)
        if points and self.view.log_y:
            plt.yscale("log")
        plt.title(self.title() if points else "no metrics yet")
        return points

    def title(self) -> str:
        """What is drawn and how, in the chart's width (plotext draws no title that does not fit):
        shorter words, then no smoothing, then no log-y, in a narrow chart (the sweep view's at 80
        columns)."""
        long, short = CURVE_TITLES[self.show_curves]
        smoothing, log_y = f"{self.view.smoothing:g}", " · log-y" if self.view.log_y else ""
        titles = (f"{long} · smoothing {smoothing}{log_y}", f"{short} · smoothing {smoothing}{log_y}",
                  f"{short} · smooth {smoothing}{log_y}", f"{short}{log_y}", short)
        return next((t for t in titles if len(t) <= self.size.width - TITLE_MARGIN), short)

    def x_of(self, train: dict) -> np.ndarray:
        if self.view.x_axis == "time":
            return (train["time"] - train["time"][0]) / 60.0
        return train[self.view.x_axis]


_styles: dict[tuple, Style] = {}


def cell_style(fg, style, bg) -> Style:
    """The rich Style of a plotext cell's colours, through plotext's own ANSI codes (cached)."""
    key = (repr(fg), repr(style), repr(bg))
    if key not in _styles:
        spans = Text.from_ansi(plotext_utility.colors_to_ansi(fg, style, bg) + "x").spans
        _styles[key] = spans[0].style if spans else Style()
    return _styles[key]


def matrix_text(matrix) -> Text:
    """A plotext matrix (rows bottom-up; a char, fore/background and style per cell) as rich Text.

    One span per run of equal colours, runs going on across line ends; the canvas colours (the
    commonest) get no span at all: the widget's own background and colour are the same.
    """
    chars, colors = [], []
    for row in reversed(matrix.Rows):
        chars.extend(matrix.marker[row])
        chars.append("\n")
        colors.extend(zip(matrix.fullground[row], matrix.style[row], matrix.background[row]))
        colors.append(colors[-1])
    canvas = max(set(colors[::7]), key=colors[::7].count) if colors else None
    spans, start = [], 0
    for i in range(1, len(colors) + 1):
        if i == len(colors) or colors[i] != colors[start]:
            if colors[start] != canvas:
                spans.append(Span(start, i, cell_style(*colors[start])))
            start = i
    return Text("".join(chars[:-1]), spans=spans, no_wrap=True, overflow="crop")


def clock(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "–"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h < 100 else f"{h / 24:.0f} days"
