"""Occlusion augmentations of the paper's Table 7: random joint masking by ratio and image-crop occlusion
by ratio. Both return new (x, conf) arrays; occluded joints get confidence 0."""

from __future__ import annotations

import numpy as np


def mask_joints(x: np.ndarray, conf: np.ndarray, ratio: float, rng: np.random.Generator,
                fill: str = "zero") -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Mask round(ratio * J) random joints per pose of x [..., J, 2]; fill 'zero' (0, 0) or 'box' (random
    point in the person box, what a confused detector outputs). Returns (x, conf, mask [..., J])."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must be in [0, 1], got {ratio}")
    J = x.shape[-2]
    k = int(round(ratio * J))
    lead = x.shape[:-2]
    keys = rng.random(lead + (J,))
    rank = np.argsort(np.argsort(keys, axis=-1), axis=-1)
    mask = rank < k
    y = x.copy()
    if fill == "zero":
        y[mask] = 0.0
    elif fill == "box":
        lo, hi = x.min(axis=-2, keepdims=True), x.max(axis=-2, keepdims=True)
        rnd = lo + rng.random(x.shape) * (hi - lo)
        y = np.where(mask[..., None], rnd, x)
    else:
        raise ValueError(f"unknown fill {fill!r}; choose zero or box")
    return y, np.where(mask, 0.0, conf), mask


def crop_occlusion(x: np.ndarray, conf: np.ndarray, ratio: float, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Crop away `ratio` of the person box from a random side (top/bottom/left/right) per pose; joints in
    the removed band are clamped to the crop edge (where a detector would put them) with conf 0.
    Returns (x, conf, mask [..., J])."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"crop ratio must be in [0, 1), got {ratio}")
    lo, hi = x.min(axis=-2), x.max(axis=-2)  # [..., 2]
    side = rng.integers(0, 4, size=x.shape[:-2])  # 0 left, 1 right, 2 top, 3 bottom
    axis = np.where(side < 2, 0, 1)
    from_low = (side % 2) == 0
    lo_a = np.take_along_axis(lo, axis[..., None], -1)[..., 0]
    hi_a = np.take_along_axis(hi, axis[..., None], -1)[..., 0]
    edge = np.where(from_low, lo_a + ratio * (hi_a - lo_a), hi_a - ratio * (hi_a - lo_a))
    coord = np.take_along_axis(x, np.broadcast_to(axis[..., None, None], x.shape[:-1] + (1,)), -1)[..., 0]
    mask = np.where(from_low[..., None], coord < edge[..., None], coord > edge[..., None])
    if ratio == 0.0:
        mask[:] = False
    y = x.copy()
    clamped = np.where(mask, edge[..., None], coord)
    np.put_along_axis(y, np.broadcast_to(axis[..., None, None], x.shape[:-1] + (1,)), clamped[..., None], -1)
    return y, np.where(mask, 0.0, conf), mask
