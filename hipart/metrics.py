"""Pose-estimation metrics under the field's usual names (VideoPose3D vocabulary): MPJPE, P-MPJPE, MPJVE, 2D error."""

from __future__ import annotations

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


def _np(x: Array) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float64) if isinstance(x, torch.Tensor) else np.asarray(x, np.float64)


def root_align(pose: Array, root: int = 0) -> np.ndarray:
    """Subtract the root joint: [..., J, 3] -> root-relative."""
    p = _np(pose)
    return p - p[..., root : root + 1, :]


def mpjpe(pred: Array, target: Array, root_aligned: bool = True) -> np.ndarray:
    """Protocol 1: mean per-joint position error per pose [N] (same unit as the input), root-aligned by default."""
    p, t = (root_align(pred), root_align(target)) if root_aligned else (_np(pred), _np(target))
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and target {t.shape} differ")
    return np.linalg.norm(p - t, axis=-1).mean(-1)


def procrustes_align(pred: Array, target: Array) -> np.ndarray:
    """Pred [N, J, 3] after the similarity transform (rotation, uniform scale, translation) best fitting target."""
    p, t = _np(pred), _np(target)
    mu_p, mu_t = p.mean(1, keepdims=True), t.mean(1, keepdims=True)
    p0, t0 = p - mu_p, t - mu_t
    norm_p = np.sqrt((p0**2).sum((1, 2), keepdims=True))
    norm_t = np.sqrt((t0**2).sum((1, 2), keepdims=True))
    p0, t0 = p0 / norm_p, t0 / norm_t
    h = np.matmul(p0.transpose(0, 2, 1), t0)  # [N, 3, 3]
    u, s, vt = np.linalg.svd(h)
    v = vt.transpose(0, 2, 1)
    r = np.matmul(v, u.transpose(0, 2, 1))
    # no reflections: flip the last singular vector where det(R) < 0
    sign = np.sign(np.linalg.det(r))[:, None]
    v[:, :, -1] *= sign
    s[:, -1] *= sign[:, 0]
    r = np.matmul(v, u.transpose(0, 2, 1))
    scale = (s.sum(1)[:, None, None]) * norm_t / norm_p
    return scale * np.matmul(p - mu_p, r.transpose(0, 2, 1)) + mu_t


def p_mpjpe(pred: Array, target: Array) -> np.ndarray:
    """Protocol 2: MPJPE after Procrustes alignment, per pose [N]."""
    return np.linalg.norm(procrustes_align(pred, target) - _np(target), axis=-1).mean(-1)


def mpjve(pred: Array, target: Array) -> float:
    """Mean per-joint velocity error over a sequence [T, J, 3] (first differences)."""
    p, t = _np(pred), _np(target)
    if p.shape[0] < 2:
        raise ValueError("MPJVE needs at least two frames")
    return float(np.linalg.norm(np.diff(p, axis=0) - np.diff(t, axis=0), axis=-1).mean())


def mean_error_2d(pred: Array, target: Array) -> np.ndarray:
    """Mean per-point 2D distance per pose [N] (pixels if the inputs are pixels)."""
    return np.linalg.norm(_np(pred) - _np(target), axis=-1).mean(-1)
