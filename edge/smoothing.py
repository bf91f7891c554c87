"""One-Euro filter for the 3D output (Casiez et al., CHI 2012); off by default.

Causal: it adds no frame of delay; its lag is the low-pass lag, which shrinks as motion speeds up
(cutoff = min_cutoff + beta * |velocity|). With the defaults (min_cutoff 1.0 Hz, beta 0.5) a joint at
rest is smoothed with a ~160 ms time constant and a fast joint with a few ms. Persons are tracked by
their index in the detector output (BlazePose tracks one person); when the person count changes, the
filter restarts.
"""

from __future__ import annotations

import math

import numpy as np


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
    """One-Euro filter of [P,17,3] poses over time; restarts when the person count changes."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.5):
        self.filter = OneEuroFilter(min_cutoff, beta)

    def __call__(self, pose3d: np.ndarray, t: float) -> np.ndarray:
        """Smoothed copy of pose3d at time t."""
        if pose3d.shape[0] == 0:
            self.filter.reset()
            return pose3d
        return self.filter(pose3d, t)
