"""2D detector-noise model for the 17 sparse joints: per-joint Gaussian scaled by joint type and person
size, occasional gross outliers (a random wrong location or a left/right swap) and a confidence per joint."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hipart.skeleton import JOINT_FLIP_PAIRS, NUM_JOINTS

# Per-joint spread (COCO keypoint OKS constants mapped to the 17 joints; pelvis/spine/thorax/head-top,
# which COCO lacks, get the values of their nearest COCO neighbours). Larger = harder to localise.
JOINT_KAPPA = np.array([
    0.107, 0.107, 0.087, 0.089, 0.107, 0.087, 0.089,  # pelvis, r hip/knee/ankle, l hip/knee/ankle
    0.100, 0.079, 0.026, 0.050,                       # spine, thorax, neck/nose, head-top
    0.079, 0.072, 0.062, 0.079, 0.072, 0.062,         # l shoulder/elbow/wrist, r shoulder/elbow/wrist
])  # fmt: skip


@dataclass
class NoiseConfig:
    """Detector-noise parameters (defaults give ~5-9 px errors on a 500 px tall person, like CPN on H36M)."""

    level: float = 0.12  # std = level * kappa_j * person height (px)
    outlier_prob: float = 0.02  # per joint: replaced by a random point in the person's box
    swap_prob: float = 0.01  # per left/right pair: swapped (a classic detector failure)
    conf_noise: float = 0.05


def person_height(x: np.ndarray) -> np.ndarray:
    """Person scale [...] in pixels: the larger side of the 2D bounding box of x [..., J, 2]."""
    ext = x.max(axis=-2) - x.min(axis=-2)
    return np.maximum(ext.max(axis=-1), 1.0)


def detector_noise(x: np.ndarray, rng: np.random.Generator, cfg: NoiseConfig | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Noisy copy of clean sparse pixels x [..., 17, 2] and a confidence [..., 17] in [0, 1]."""
    cfg = cfg or NoiseConfig()
    if x.shape[-2:] != (NUM_JOINTS, 2):
        raise ValueError(f"expected [..., {NUM_JOINTS}, 2] sparse pixels, got {x.shape}")
    s = person_height(x)[..., None]  # [..., 1]
    std = cfg.level * JOINT_KAPPA * s  # [..., 17]
    y = x + rng.standard_normal(x.shape) * std[..., None]
    # left/right swaps
    for a, b in JOINT_FLIP_PAIRS:
        sw = rng.random(x.shape[:-2]) < cfg.swap_prob
        ya, yb = y[..., a, :].copy(), y[..., b, :].copy()
        y[..., a, :] = np.where(sw[..., None], yb, ya)
        y[..., b, :] = np.where(sw[..., None], ya, yb)
    # gross outliers: uniform in the box enlarged by 20 %
    out = rng.random(x.shape[:-1]) < cfg.outlier_prob
    lo, hi = x.min(axis=-2, keepdims=True), x.max(axis=-2, keepdims=True)
    pad = 0.2 * (hi - lo)
    u = rng.random(x.shape)
    rnd = (lo - pad) + u * (hi - lo + 2 * pad)
    y = np.where(out[..., None], rnd, y)
    err = np.linalg.norm(y - x, axis=-1)
    conf = np.exp(-0.5 * (err / (2.0 * std + 1e-6)) ** 2) + cfg.conf_noise * rng.standard_normal(err.shape)
    return y, np.clip(conf, 0.0, 1.0)
