"""Widgets of the live screen: three charts of one run and its header line."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from textual_plotext import PlotextPlot

from app.runs import RunTail, Smoother, downsample

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


class RunChart(PlotextPlot):
    """A chart of one run. The figure is rebuilt inside render(): plotext's log scale breaks if a
    figure is built twice without re-plotting (textual-notes.md), and a resize renders again.

    The screen calls refresh() when the data or the view changed; render() copies what it needs
    under the tail's lock and plots at most a few points per column (downsample).
    """

    TITLE = ""

    def __init__(self, tail: RunTail, view: ChartView, **kwargs):
        super().__init__(**kwargs)
        self.tail, self.view = tail, view
        self.points = 0  # how many points the last render plotted (the tests look at it)

    def render(self):
        plt = self.plt
        plt.clear_figure()
        plt.title(self.TITLE)
        plt.xlabel(X_LABELS[self.view.x_axis])
        buckets = max(10, self.size.width - 12)
        with self.tail.lock:
            series, generation = self.tail.series, self.tail.generation
            train_n, evals_n = len(series.train), len(series.evals)
            system_ram = list(self.tail.system_ram)
        t0 = series.train.col("time")[0] if train_n else (system_ram[0][0] if system_ram else 0.0)
        self.points = self.draw(plt, series, generation, buckets, t0, system_ram)
        if not self.points:
            plt.title(f"{self.TITLE}: no data yet")
        return super().render()

    def draw(self, plt, series, generation, buckets: int, t0: float, system_ram) -> int:
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
        return sum(self.line(plt, *downsample(xs, y / div, buckets, keep_extremes=False), color=color, label=label)
                   for xs, y, label, color in lines)


def clock(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "–"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h < 100 else f"{h / 24:.0f} days"
