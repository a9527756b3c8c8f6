"""Chart math of the dashboard: debiased EMA smoothing (whole or incremental) and downsampling to a
few points per terminal column. numpy only: no Textual, no run files."""
from __future__ import annotations

import math

import numpy as np


def _ema_block(x: np.ndarray, weight: float, acc: float, t: int) -> tuple[np.ndarray, float, int]:
    """Debiased EMA of x (no NaNs) continuing from state (acc, t): (smoothed, acc, t)."""
    smooth = np.empty(len(x))
    # Vectorised per block: acc_i = w^(i+1) acc0 + (1-w) w^i sum_{j<=i} x_j w^-j. Blocks keep
    # w^-j below 1e100, so the scaled cumulative sum stays exact enough in float64.
    block = max(1, min(4096, int(100 / -math.log10(weight))))
    for start in range(0, len(x), block):
        chunk = x[start:start + block]
        i = np.arange(len(chunk), dtype=np.float64)
        acc_i = weight ** (i + 1) * acc + (1 - weight) * weight ** i * np.cumsum(chunk * weight ** -i)
        smooth[start:start + len(chunk)] = acc_i / (1 - weight ** (t + i + 1))
        acc, t = float(acc_i[-1]), t + len(chunk)
    return smooth, acc, t


def debiased_ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average with the start-up bias removed (Adam's correction).

    TensorBoard's smoothing starts from the first point and drags early values; this one divides
    by 1 - weight**t, so each point is a proper weighted mean of the points up to it. NaNs are
    skipped (their positions stay NaN). weight is in [0, 1).
    """
    return Smoother(weight).update(values, 0)


class Smoother:
    """debiased_ema of a growing column, computing only the new points on each update.

    `generation` must change whenever earlier values changed (a resume cut, a reload).
    """

    def __init__(self, weight: float):
        self.weight, self.key = weight, None
        self.out, self.n, self.acc, self.t = np.empty(0), 0, 0.0, 0

    def update(self, values: np.ndarray, generation) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if self.key != (generation, self.weight) or len(values) < self.n:
            self.key, self.n, self.acc, self.t = (generation, self.weight), 0, 0.0, 0
        new = values[self.n:]
        ok = ~np.isnan(new)
        part = np.full(len(new), np.nan)
        if self.weight <= 0:
            part[ok] = new[ok]
        elif ok.any():
            part[ok], self.acc, self.t = _ema_block(new[ok], self.weight, self.acc, self.t)
        self.out = np.concatenate([self.out[:self.n], part])
        self.n = len(values)
        return self.out


def downsample(x: np.ndarray, y: np.ndarray, buckets: int, keep_extremes: bool = True):
    """At most ~2*buckets points: per bucket of consecutive points, its min and max (so spikes
    survive), or just its last point when keep_extremes is False. NaN y values are dropped."""
    ok = ~np.isnan(y) & ~np.isnan(x)
    x, y = x[ok], y[ok]
    if len(x) <= 2 * buckets:
        return x, y
    starts = np.linspace(0, len(x), buckets, endpoint=False).astype(np.int64)
    if not keep_extremes:
        ends = np.append(starts[1:], len(x)) - 1
        return x[ends], y[ends]
    lo = np.minimum.reduceat(y, starts)
    hi = np.maximum.reduceat(y, starts)
    xs = x[starts]
    return np.repeat(xs, 2), np.column_stack([lo, hi]).ravel()
