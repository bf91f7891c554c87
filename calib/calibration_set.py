"""INT8 calibration sets: greedy k-center selection over 2D poses from training subjects, saved as npz."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from hipart.atomic_write import write_bytes_atomic

DEFAULT_SIZE = 512
META_PREFIX = "__"  # npz keys starting with this are metadata, not model inputs


class CalibrationDataError(ValueError):
    """Calibration data is missing, malformed, from the wrong split, or too small."""


def greedy_k_center(points: np.ndarray, k: int, first: int | None = None) -> np.ndarray:
    """Indices of `k` rows of `points` [N, F] chosen farthest-first (2-approximation of k-center coverage).

    Starts from the row nearest the mean (deterministic) unless `first` is given.
    """
    x = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    n = len(x)
    if not 0 < k <= n:
        raise CalibrationDataError(f"cannot select {k} samples from {n}")
    start = int(np.argmin(((x - x.mean(0)) ** 2).sum(1))) if first is None else first
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = start
    dist = ((x - x[start]) ** 2).sum(1)
    for i in range(1, k):
        nxt = int(np.argmax(dist))  # ties -> lowest index, deterministic
        chosen[i] = nxt
        dist = np.minimum(dist, ((x - x[nxt]) ** 2).sum(1))
    return chosen


def coverage_radius(points: np.ndarray, chosen: np.ndarray) -> float:
    """max over all rows of the distance to the nearest chosen row (the k-center objective)."""
    x = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    c = x[chosen]
    d = ((x[:, None, :] - c[None]) ** 2).sum(-1).min(1)
    return float(np.sqrt(d.max()))


def select_training(
    x_s: np.ndarray, subjects: Sequence[str], training_subjects: Iterable[str], size: int = DEFAULT_SIZE
) -> np.ndarray:
    """Indices (into x_s) of a k-center calibration set drawn only from `training_subjects`."""
    train = set(training_subjects)
    pool = np.flatnonzero(np.isin(np.asarray(subjects), list(train)))
    if len(pool) == 0:
        raise CalibrationDataError(f"no poses from training subjects {sorted(train)} in the calibration source")
    if len(pool) < size:
        raise CalibrationDataError(
            f"calibration data too small: {len(pool)} training poses < requested {size} (use --calib-size)"
        )
    return pool[greedy_k_center(x_s[pool], size)]


def save_calibration(path: str | Path, inputs: dict[str, np.ndarray], **meta: str) -> Path:
    """Write an npz keyed by model input name (+ `__key` metadata strings), atomically."""
    sizes = {len(v) for v in inputs.values()}
    if len(sizes) != 1:
        raise CalibrationDataError(f"inputs disagree on sample count: { {k: len(v) for k, v in inputs.items()} }")
    buf = io.BytesIO()
    np.savez(buf, **inputs, **{META_PREFIX + k: np.asarray(v) for k, v in meta.items()})
    return write_bytes_atomic(path, buf.getvalue())


def load_calibration(path: str | Path, input_names: Sequence[str], min_size: int = 1) -> dict[str, np.ndarray]:
    """Read a calibration npz, checking every needed input is present with at least `min_size` samples."""
    path = Path(path)
    if not path.exists():
        raise CalibrationDataError(f"calibration data not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files if not k.startswith(META_PREFIX)}
    except Exception as e:
        raise CalibrationDataError(f"{path} is not a readable calibration npz: {e}") from None
    missing = [n for n in input_names if n not in data]
    if missing:
        raise CalibrationDataError(f"{path} lacks inputs {missing} (has {sorted(data)})")
    for n in input_names:
        if len(data[n]) < min_size:
            raise CalibrationDataError(f"calibration data too small: {n} has {len(data[n])} samples < {min_size}")
    return {n: data[n] for n in input_names}
