"""Virtual pinhole camera rigs: a Human3.6M-like lab set and random in-the-wild viewpoints."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hipart.camera import intrinsic_matrix, look_at

IMAGE_SIZE = (1000, 1000)  # (w, h) pixels, like Human3.6M's 1000 x 1002


@dataclass
class CameraSet:
    """N cameras: intrinsics K [N,3,3], world->camera R [N,3,3], t [N,3], image size, kind per camera."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int
    kind: list[str]

    def __len__(self) -> int:
        return len(self.K)


def _trajectory_center_radius(root: np.ndarray) -> tuple[np.ndarray, float]:
    """Horizontal centre of a root trajectory [F, 3] and its radius (metres)."""
    c = 0.5 * (root.min(axis=0) + root.max(axis=0))
    r = float(np.max(np.linalg.norm((root - c)[:, [0, 2]], axis=1)))
    return c, r


def lab_cameras(root: np.ndarray, rng: np.random.Generator, n: int = 4) -> CameraSet:
    """4 cameras around the subject (Human3.6M-like): 3-6 m away (+ the trajectory radius), 0.8-2 m high,
    focal ~1000 px, 1000x1000 image, looking at the trajectory centre at chest height."""
    c, r = _trajectory_center_radius(root)
    w, h = IMAGE_SIZE
    Ks, Rs, ts = [], [], []
    az0 = rng.uniform(0, 2 * np.pi)
    for i in range(n):
        az = az0 + 2 * np.pi * i / n + rng.uniform(-0.2, 0.2)
        dist = rng.uniform(3.0, 6.0) + r
        height = rng.uniform(0.8, 2.0)
        eye = np.array([c[0] + dist * np.sin(az), height, c[2] + dist * np.cos(az)])
        target = np.array([c[0], max(float(np.median(root[:, 1])), 0.5), c[2]])
        R, t = look_at(eye, target)
        f = rng.uniform(980.0, 1020.0)
        Ks.append(intrinsic_matrix(f, f * rng.uniform(0.998, 1.002), w / 2 + rng.uniform(-8, 8),
                                   h / 2 + rng.uniform(-8, 8)))  # fmt: skip
        Rs.append(R)
        ts.append(t)
    return CameraSet(np.stack(Ks), np.stack(Rs), np.stack(ts), w, h, ["lab"] * n)


def wild_cameras(root: np.ndarray, rng: np.random.Generator, n: int = 4) -> CameraSet:
    """Random viewpoints: any azimuth, 0.2-3.5 m high, 2.5-9 m away, focal 500-1800 px, roll +-8 deg,
    look-at point jittered by up to 0.4 m."""
    c, r = _trajectory_center_radius(root)
    w, h = IMAGE_SIZE
    Ks, Rs, ts = [], [], []
    for _ in range(n):
        az = rng.uniform(0, 2 * np.pi)
        f = rng.uniform(500.0, 1800.0)
        dist = rng.uniform(2.5, 9.0) * f / 1000.0 + r  # keep the subject a plausible size in the frame
        height = rng.uniform(0.2, 3.5)
        eye = np.array([c[0] + dist * np.sin(az), height, c[2] + dist * np.cos(az)])
        target = np.array([c[0], float(np.median(root[:, 1])), c[2]]) + rng.uniform(-0.4, 0.4, 3)
        R, t = look_at(eye, target, roll_deg=float(rng.uniform(-8, 8)))
        Ks.append(intrinsic_matrix(f, f, w / 2 + rng.uniform(-30, 30), h / 2 + rng.uniform(-30, 30)))
        Rs.append(R)
        ts.append(t)
    return CameraSet(np.stack(Ks), np.stack(Rs), np.stack(ts), w, h, ["wild"] * n)


def make_cameras(kind: str, root: np.ndarray, rng: np.random.Generator) -> CameraSet:
    """Cameras for a clip: 'lab', 'wild' or 'both' (lab first)."""
    if kind == "lab":
        return lab_cameras(root, rng)
    if kind == "wild":
        return wild_cameras(root, rng)
    if kind == "both":
        a, b = lab_cameras(root, rng), wild_cameras(root, rng)
        return CameraSet(np.concatenate([a.K, b.K]), np.concatenate([a.R, b.R]), np.concatenate([a.t, b.t]),
                         a.width, a.height, a.kind + b.kind)  # fmt: skip
    raise ValueError(f"unknown camera set {kind!r}; choose lab, wild or both")
