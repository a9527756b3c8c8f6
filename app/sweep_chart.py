"""The sweep view's second chart: each run's final (or best) validation loss against its swept
value, one line per value of the other swept key(s), the best run marked. The points are
computed without Textual (sweep_plot, tested on its own); the widget only draws them with the
charts' own plotext code (app/widgets.py MatrixPlot)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from app.widgets import RUN_COLORS, MatrixPlot
from gigagpt.store.meta import printable
from gigagpt.store.metrics import number as finite_number

BEST_MARKER = "★"
BEST_COLOR = "red"


def is_number(v) -> bool:
    return finite_number(v) is not None


def fmt_value(v) -> str:
    """A swept value as the view names it: floats by %g (0.0003, 1e-05), true/false, text as is."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return printable(str(v))


def short_key(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def value_label(values: dict, keys: list[str]) -> str:
    """`lr=0.001 batch_size=8`: a run of the sweep by its values."""
    return " ".join(f"{short_key(k)}={fmt_value(values.get(k))}" for k in keys)


def sort_value(v) -> tuple:
    return (0, float(v), "") if is_number(v) else (1, 0.0, fmt_value(v))


def log_scale(key: str, values: list) -> bool:
    """A log x axis for a learning rate, or for any positive numbers that span 10x or more."""
    if not values or not all(is_number(v) and v > 0 for v in values):
        return False
    return short_key(key).endswith("lr") or max(values) / min(values) >= 10


@dataclass
class SweepPlot:
    x_key: str | None = None
    log_x: bool = False
    categories: list[str] | None = None  # an x key whose values are not numbers: its values in order
    series: list[tuple[str, list[tuple[float, float, str]]]] = field(default_factory=list)  # label, (x, y, run)
    best: tuple[float, float, str] | None = None  # x, y, run key of the lowest y
    ticks: list[float] = field(default_factory=list)  # the numeric x values swept

    def series_y(self) -> list[float]:
        return [q[1] for _, pts in self.series for q in pts]


def choose_x(keys: list[str], values: list[dict]) -> str | None:
    """The x key: a numeric one with the most distinct values (the first such), else the first key."""
    if not keys:
        return None
    distinct = {k: len({fmt_value(v.get(k)) for v in values}) for k in keys}
    numeric = [k for k in keys if all(is_number(v.get(k)) for v in values)]
    return max(numeric or keys, key=lambda k: (distinct[k], -keys.index(k)))


def sweep_plot(runs: list[tuple[str, dict, float | None]], keys: list[str]) -> SweepPlot:
    """runs: (run key, its swept values, its loss or None). One series per combination of the
    keys other than x (the x key's values along each); the best run is the lowest loss."""
    x_key = choose_x(keys, [v for _, v, _ in runs])
    plot = SweepPlot(x_key)
    if x_key is None:
        return plot
    xs_all = [v.get(x_key) for _, v, _ in runs]
    if not all(is_number(x) for x in xs_all):
        plot.categories = sorted({fmt_value(x) for x in xs_all}, key=lambda t: sort_value(
            next(x for x in xs_all if fmt_value(x) == t)))
    else:
        plot.log_x = log_scale(x_key, xs_all)
        plot.ticks = sorted(set(xs_all))
    others = [k for k in keys if k != x_key]
    groups: dict[str, list[tuple[float, float, str]]] = {}
    order: dict[str, tuple] = {}
    for run_key, values, loss in runs:
        label = value_label(values, others) if others else "all runs"
        order.setdefault(label, tuple(sort_value(values.get(k)) for k in others))
        points = groups.setdefault(label, [])
        if loss is None or not math.isfinite(loss):
            continue
        x = values.get(x_key)
        points.append((plot.categories.index(fmt_value(x)) if plot.categories else float(x), float(loss), run_key))
        if plot.best is None or loss < plot.best[1]:
            plot.best = points[-1]
    plot.series = [(label, sorted(groups[label])) for label in sorted(groups, key=order.get)]
    return plot


class SweepChart(MatrixPlot):
    """The loss of each run of a sweep against its swept value (SweepPlot), the best one marked."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.plot = SweepPlot()
        self.what = "best val loss"

    def set_plot(self, plot: SweepPlot, what: str) -> None:
        self.plot, self.what = plot, what
        self.refresh()

    def figure(self, plt) -> int:
        p = self.plot
        points = 0
        if len(p.ticks) > 1 and p.series_y():  # the whole swept range, before its runs have losses
            plt.scatter([p.ticks[0], p.ticks[-1]], [p.series_y()[0]] * 2, marker=" ")
        for i, (label, pts) in enumerate(p.series):
            if not pts:
                continue
            color = RUN_COLORS[i % len(RUN_COLORS)][0]
            x, y = np.array([q[0] for q in pts]), np.array([q[1] for q in pts])
            many = len(p.series) > 1
            if len(pts) > 1:
                points += self.line(plt, x, y, color=color, label=label if many else None)
            points += self.line(plt, x, y, scatter=True, color=color, label=label if many and len(pts) == 1 else None)
        if not points:
            plt.title(f"{self.what}: none yet")
            return 0
        if p.best:  # no legend entry: it would cover the top-left point; the header names the best run
            plt.scatter([p.best[0]], [p.best[1]], marker=BEST_MARKER, color=BEST_COLOR)
        if p.log_x:
            plt.xscale("log")
        if p.categories:
            plt.xticks(list(range(len(p.categories))), p.categories)
            plt.xlim(-0.5, len(p.categories) - 0.5)
        elif len(p.ticks) <= max(2, self.size.width // 8):  # the swept values themselves, when they fit
            plt.xticks(p.ticks, [fmt_value(t) for t in p.ticks])
        plt.xlabel(f"{p.x_key}{' (log)' if p.log_x else ''}")
        plt.title(f"{self.what} by {short_key(p.x_key)}")
        return points
