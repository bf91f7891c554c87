"""2D/3D poses of one split of a dataset built by `hipart-data build`, for calibration and drift."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calib.calibration_set import CalibrationDataError
from hipart.camera import normalize_screen_coordinates
from hipart.data.dataset import DatasetFormatError, load_manifest, open_arrays


def split_poses(root: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(x_s [N,17,2] normalised ground-truth 2D, pose3d [N,17,3] root-relative metres) of `split`."""
    try:
        man = load_manifest(root)
        arrays = open_arrays(root, ["x_s_px", "p3d_s", "split"])
    except DatasetFormatError as e:
        raise CalibrationDataError(str(e)) from None
    if split not in man.get("splits", []):
        raise CalibrationDataError(f"{root}: no {split!r} split (has {man.get('splits')})")
    missing = {"x_s_px", "p3d_s", "split"} - set(arrays)
    if missing:
        raise CalibrationDataError(f"{root}: dataset lacks arrays {sorted(missing)}")
    sel = np.flatnonzero(np.asarray(arrays["split"]) == man["splits"].index(split))
    if len(sel) == 0:
        raise CalibrationDataError(f"{root}: the {split!r} split is empty")
    w, h = man["image_size"]
    x_s = normalize_screen_coordinates(np.asarray(arrays["x_s_px"][sel], np.float64), w, h).astype(np.float32)
    p3d = np.asarray(arrays["p3d_s"][sel], np.float32)
    return x_s, p3d - p3d[:, :1]
