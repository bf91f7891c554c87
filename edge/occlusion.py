"""Low-confidence, non-finite and out-of-frame joints: how they are masked before HiPART.

HiPART's input is a complete 17-joint pose, so a masked joint must still get a position. We use the
occlusion protocol of the lifting literature: a masked joint collapses onto its nearest *visible*
ancestor (a zero-length bone), the pelvis onto the hip midpoint (or the mean of visible joints).
The per-joint confidence is kept and written to the outputs so users see which joints were guessed.
"""

from __future__ import annotations

import numpy as np

from hipart import skeleton

DEFAULT_MIN_CONF = 0.3  # joints below this confidence are masked (`--min-conf`; every edge default refers here)
MIN_VISIBLE_JOINTS = 4  # fewer visible joints than this: the person is dropped (reported, not lifted)
OUT_OF_FRAME_MARGIN = 0.1  # joints further than 10% of the frame size outside it are masked


def visible_mask(kpts: np.ndarray, conf: np.ndarray, min_conf: float) -> np.ndarray:
    """[B,17] bool: joints with finite coordinates and confidence >= min_conf."""
    finite = np.isfinite(kpts).all(-1) & np.isfinite(conf)
    return finite & (np.nan_to_num(conf, nan=0.0) >= min_conf)


def mask_low_confidence(kpts: np.ndarray, conf: np.ndarray, min_conf: float) -> np.ndarray:
    """Replace masked joints of [B,17,2] by their nearest visible ancestor (pelvis: hip midpoint)."""
    out = np.array(kpts, dtype=np.float32, copy=True)
    vis = visible_mask(out, conf, min_conf)
    if vis.all():
        return out
    for b in np.nonzero(~vis.all(1))[0]:
        v = vis[b]
        pose = out[b]
        if not v.any():
            pose[:] = 0.0
            continue
        if not v[skeleton.ROOT]:
            hips = [j for j in (1, 4) if v[j]]
            pose[skeleton.ROOT] = pose[hips].mean(0) if hips else pose[v].mean(0)
        for j in range(1, skeleton.NUM_JOINTS):  # parents precede children in the joint order
            if not v[j]:
                pose[j] = pose[skeleton.PARENTS[j]]
    return out


def sanitize_keypoints(kpts_px: np.ndarray, conf: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero the confidence of NaN/inf and far out-of-frame joints; coordinates made finite."""
    kpts = np.asarray(kpts_px, dtype=np.float32).copy()
    conf = np.asarray(conf, dtype=np.float32).copy()
    bad = ~np.isfinite(kpts).all(-1) | ~np.isfinite(conf)
    mx, my = OUT_OF_FRAME_MARGIN * width, OUT_OF_FRAME_MARGIN * height
    with np.errstate(invalid="ignore"):
        outside = (
            (kpts[..., 0] < -mx) | (kpts[..., 0] > width + mx) | (kpts[..., 1] < -my) | (kpts[..., 1] > height + my)
        )
    bad |= outside
    conf[bad] = 0.0
    kpts[bad] = 0.0
    return kpts, np.clip(conf, 0.0, 1.0)


def usable_persons(conf: np.ndarray, min_conf: float) -> np.ndarray:
    """[P] bool: persons with at least MIN_VISIBLE_JOINTS joints above min_conf."""
    if conf.shape[0] == 0:
        return np.zeros(0, bool)
    return (np.nan_to_num(conf, nan=0.0) >= min_conf).sum(1) >= MIN_VISIBLE_JOINTS
