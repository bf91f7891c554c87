"""One-Euro filter for the 3D output (Casiez et al., CHI 2012); off by default.

Causal: it adds no frame of delay; its lag is the low-pass lag, which shrinks as motion speeds up
(cutoff = min_cutoff + beta * |velocity|). With the defaults (min_cutoff 1.0 Hz, beta 0.5) a joint at
rest is smoothed with a ~160 ms time constant and a fast joint with a few ms.

One filter per person: per track id when the frame is tracked (`edge.tracking`; a track's filter is dropped with
the track, or after `max_idle_s` without a sample), else per index in the detector output, all restarting when
the person count changes (the behaviour before tracking). Filtering each person alone gives exactly the output
of one filter per person run on that person only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from edge.tracking import unique_ids


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Vectorised One-Euro filter over arrays of any fixed shape."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.5, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        """Forget the state (next sample passes through unchanged)."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter sample `x` taken at time `t` (seconds)."""
        x = np.asarray(x, np.float32)
        if self._x is None or self._x.shape != x.shape or self._t is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        a = _alpha(cutoff, dt)
        self._x = (a * x + (1 - a) * self._x).astype(np.float32)
        self._t = t
        return self._x.copy()


class PoseSmoother:
    """One-Euro filter of [P,17,3] poses over time, one filter per track id (or per index: see the module doc)."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.5, max_idle_s: float = 10.0):
        self.min_cutoff, self.beta, self.max_idle_s = min_cutoff, beta, max_idle_s
        self.filters: dict[int, OneEuroFilter] = {}
        self._seen: dict[int, float] = {}  # track id -> time of its last sample
        self._count: int | None = None  # untracked: the person count of the last call

    def reset(self) -> None:
        """Forget every person's filter."""
        self.filters.clear()
        self._seen.clear()
        self._count = None

    def drop(self, track_ids: Iterable[int]) -> None:
        """Forget the filters of these (ended) tracks."""
        for i in track_ids:
            self.filters.pop(int(i), None)
            self._seen.pop(int(i), None)

    def forget(self, ended: Iterable[int] = (), restart: bool = False) -> None:
        """Before a frame: drop the ended tracks' filters, or every filter on a restart."""
        if restart:
            self.reset()
        else:
            self.drop(ended)

    def __call__(self, pose3d: np.ndarray, t: float, track_ids: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Smoothed copy of pose3d [P,17,3] at time t; track_ids [P] (None: persons matched by index)."""
        n = pose3d.shape[0]
        if track_ids is None:
            if n != self._count:
                self.reset()
            self._count = n
            ids = list(range(n))
        else:
            ids = unique_ids(track_ids, n)
        if n == 0:
            return pose3d
        out = np.empty(pose3d.shape, np.float32)
        for k, tid in enumerate(ids):
            f = self.filters.get(tid)
            if f is None:
                f = self.filters[tid] = OneEuroFilter(self.min_cutoff, self.beta)
            out[k] = f(pose3d[k], t)
            self._seen[tid] = t
        if track_ids is not None:  # bound the state when an end was missed (frames dropped by a live queue)
            self.drop([i for i, s in self._seen.items() if t - s > self.max_idle_s])
        return out
