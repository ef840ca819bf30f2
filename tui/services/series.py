"""Growable numeric series and the downsampling charts use before they draw.

The full series is kept (numpy arrays that double when full); drawing reduces any
window to at most two points per column (per-bucket min and max), so 100,000 points
cost about what 200 do.
"""
from __future__ import annotations

import math

# numpy is imported where it is used: the Train screen's first frame (no run yet) needs none of it.


class Series:
    """(step, value) pairs appended in step order; amortised O(1) append."""

    def __init__(self, name: str, capacity: int = 1024):
        import numpy as np

        self.name = name
        self._x = np.empty(capacity, dtype=np.float64)
        self._y = np.empty(capacity, dtype=np.float64)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def _grow(self, need: int) -> None:
        import numpy as np

        cap = len(self._x)
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        self._x = np.resize(self._x, cap)
        self._y = np.resize(self._y, cap)

    def append(self, x: float, y: float) -> None:
        import numpy as np

        # A resumed run repeats steps after its checkpoint: drop the superseded tail.
        if self.n and x <= self._x[self.n - 1]:
            self.n = int(np.searchsorted(self._x[: self.n], x, side="left"))
        self._grow(self.n + 1)
        self._x[self.n] = x
        self._y[self.n] = y
        self.n += 1

    def extend(self, xs, ys) -> None:
        for x, y in zip(xs, ys):
            self.append(x, y)

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self.n]

    def last(self) -> tuple[float, float] | None:
        return (float(self._x[self.n - 1]), float(self._y[self.n - 1])) if self.n else None

    def clear(self) -> None:
        self.n = 0


def window(x: np.ndarray, y: np.ndarray, last_steps: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The tail covering the last `last_steps` steps (all of it when None)."""
    import numpy as np

    if not last_steps or not len(x):
        return x, y
    start = int(np.searchsorted(x, x[-1] - last_steps, side="left"))
    return x[start:], y[start:]


def smooth(y: np.ndarray, span: int) -> np.ndarray:
    """Trailing moving average over `span` points (vectorised; NaNs stay local)."""
    import numpy as np

    if span <= 1 or len(y) < 2:
        return y
    finite = np.isfinite(y)
    vals = np.where(finite, y, 0.0)
    c = np.concatenate(([0.0], np.cumsum(vals)))
    k = np.concatenate(([0], np.cumsum(finite)))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(idx - span, 0)
    cnt = k[idx] - k[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (c[idx] - c[lo]) / cnt
    return np.where(cnt > 0, out, np.nan)


def downsample(x: np.ndarray, y: np.ndarray, x0: float, x1: float, columns: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of the x range [x0, x1]: (column index, min y, max y) for columns
    holding at least one finite point. At most two values per column survive."""
    import numpy as np

    if not len(x) or columns <= 0:
        e = np.empty(0)
        return e.astype(int), e, e
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if not len(x):
        e = np.empty(0)
        return e.astype(int), e, e
    span = (x1 - x0) or 1.0
    col = np.clip(((x - x0) / span * (columns - 1) + 0.5).astype(np.int64), 0, columns - 1)
    # x is sorted, so columns are non-decreasing: bucket boundaries are where col changes.
    starts = np.flatnonzero(np.concatenate(([True], col[1:] != col[:-1])))
    mins = np.minimum.reduceat(y, starts)
    maxs = np.maximum.reduceat(y, starts)
    return col[starts], mins, maxs


def nice_range(lo: float, hi: float) -> tuple[float, float]:
    """Pad a y range a little so lines do not sit on the frame."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.05 or 0.5
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.04
    # Non-negative data (loss, lr, norms) keeps a floor at 0 rather than a negative label.
    return (max(lo - pad, 0.0) if lo >= 0 else lo - pad), hi + pad
