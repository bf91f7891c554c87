"""MPJPE and PA-MPJPE (Procrustes-aligned), the field's standard 3D pose errors, in the input's units."""

from __future__ import annotations

import numpy as np


def mpjpe(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean per-joint position error over [N, J, 3] arrays."""
    return float(np.linalg.norm(pred - target, axis=-1).mean())


def p_mpjpe(pred: np.ndarray, target: np.ndarray) -> float:
    """MPJPE after the optimal similarity transform (rotation, scale, translation) of each pred onto target."""
    mu_p, mu_t = pred.mean(1, keepdims=True), target.mean(1, keepdims=True)
    p, t = pred - mu_p, target - mu_t
    norm_p = np.sqrt((p**2).sum((1, 2), keepdims=True)) + 1e-12
    norm_t = np.sqrt((t**2).sum((1, 2), keepdims=True)) + 1e-12
    p, t = p / norm_p, t / norm_t
    u, s, vt = np.linalg.svd(np.matmul(p.transpose(0, 2, 1), t))
    v = vt.transpose(0, 2, 1)
    r = np.matmul(v, u.transpose(0, 2, 1))
    flip = np.sign(np.linalg.det(r))[:, None]  # no reflections
    v[:, :, -1] *= flip
    s[:, -1] *= flip[:, 0]
    r = np.matmul(v, u.transpose(0, 2, 1))
    scale = s.sum(1)[:, None, None] * norm_t / norm_p
    aligned = scale * np.matmul(pred - mu_p, r.transpose(0, 2, 1)) + mu_t
    return mpjpe(aligned, target)
