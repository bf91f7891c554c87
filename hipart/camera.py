"""Screen-coordinate normalisation (the public lifting literature's convention, docs/ARCHITECTURE.md §3)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

Array = Any  # np.ndarray | torch.Tensor; torch is never imported here (the deploy path runs without it)


def _is_tensor(x: Any) -> bool:
    """True for a torch tensor; without importing torch (a tensor exists only if torch is already loaded)."""
    torch_mod = sys.modules.get("torch")
    return torch_mod is not None and isinstance(x, torch_mod.Tensor)


def normalize_screen_coordinates(x_px: Array, w: float, h: float) -> Array:
    """Pixels -> normalised: x / w * 2 - [1, h / w] (x in [-1, 1], y scaled by the same factor)."""
    if x_px.shape[-1] != 2:
        raise ValueError(f"expected [..., 2] pixel coordinates, got shape {tuple(x_px.shape)}")
    offset = [1.0, h / w]
    if _is_tensor(x_px):
        return x_px / w * 2 - x_px.new_tensor(offset)
    return x_px / w * 2 - np.asarray(offset, dtype=x_px.dtype)


def image_coordinates(x_norm: Array, w: float, h: float) -> Array:
    """Normalised -> pixels (inverse of `normalize_screen_coordinates`)."""
    if x_norm.shape[-1] != 2:
        raise ValueError(f"expected [..., 2] normalised coordinates, got shape {tuple(x_norm.shape)}")
    offset = [1.0, h / w]
    if _is_tensor(x_norm):
        return (x_norm + x_norm.new_tensor(offset)) * w / 2
    return (x_norm + np.asarray(offset, dtype=x_norm.dtype)) * w / 2


# ----------------------------------------------------------------------------------------------
# Pinhole cameras (OpenCV convention: x right, y down, z forward; X_cam = R @ X_world + t).


def intrinsic_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """3x3 pinhole intrinsics."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 1.0, 0.0),
            roll_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """World->camera rotation R and translation t of a camera at `eye` looking at `target` (world Y up)."""
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))  # camera right: forward x up (y down in image)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to the up vector")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])  # rows = camera axes in world coordinates
    if roll_deg:
        a = np.deg2rad(roll_deg)
        Rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
        R = Rz @ R
    return R, -R @ eye


def world_to_camera(X: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """World points [..., 3] -> camera frame [..., 3] (metres)."""
    return X @ R.T + t


def camera_to_world(Xc: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Camera-frame points [..., 3] -> world frame."""
    return (Xc - t) @ R


def project_to_pixels(Xc: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points [..., 3] -> pixels [..., 2] (pinhole, no distortion; z must be > 0)."""
    z = Xc[..., 2:3]
    if np.any(z <= 0):
        raise ValueError("project_to_pixels: point(s) behind the camera (z <= 0)")
    uv = Xc[..., :2] / z
    return np.stack([K[0, 0] * uv[..., 0] + K[0, 2], K[1, 1] * uv[..., 1] + K[1, 2]], axis=-1)


def root_translation_lsq(pose_rel: Array, x2d: Array, weights: Array, intrinsics: Array, eps: float = 1e-12) -> Array:
    """Least-squares camera-space root T [..., 3] of root-relative poses [..., J, 3] seen at x2d [..., J, 2].

    Per joint with (u, v), point (X, Y, Z) and weight w: fx (X + Tx) = (u - cx) (Z + Tz), fy (Y + Ty) =
    (v - cy) (Z + Tz), linear in T (VideoPose3D's trajectory fit). `intrinsics` [..., 4] = (fx, fy, cx, cy) in the
    units of x2d (pixels, or normalised with `normalize_screen_coordinates`' scaling). Solved in closed form (eliminate
    Tx, Ty, then one scalar equation for Tz): only sums and divisions, so numpy, torch and export graphs share it.
    Weight-0 joints drop out; with fewer than 2 weighted joints the fit is degenerate (the caller decides).
    """
    fx, fy, cx, cy = (intrinsics[..., i : i + 1] for i in range(4))  # [..., 1] against the joint axis
    x, y, z = pose_rel[..., 0], pose_rel[..., 1], pose_rel[..., 2]
    du, dv = x2d[..., 0] - cx, x2d[..., 1] - cy
    w = weights
    total = w.sum(-1)[..., None] + eps

    def mean(a: Array) -> Array:
        return (w * a).sum(-1)[..., None] / total

    qu, qv = du * z, dv * z
    cu, cv = du - mean(du), dv - mean(dv)  # weighted-centred terms (Tx, Ty eliminated)
    num = (w * (cu * (fx * (x - mean(x)) - (qu - mean(qu))) + cv * (fy * (y - mean(y)) - (qv - mean(qv))))).sum(-1)
    den = (w * (cu * cu + cv * cv)).sum(-1)
    tz = (num / (den + eps))[..., None]
    tx = (mean(qu) + tz * mean(du)) / fx - mean(x)
    ty = (mean(qv) + tz * mean(dv)) / fy - mean(y)
    parts = [tx[..., 0], ty[..., 0], tz[..., 0]]
    if _is_tensor(pose_rel):
        return sys.modules["torch"].stack(parts, -1)
    return np.stack(parts, -1)
