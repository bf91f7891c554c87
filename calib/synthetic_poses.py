"""Documented synthetic pose generator for calibration/drift tests until the real dataset lands.

Poses are built on the hipart skeleton (17 joints, PARENTS) with Human3.6M-like mean bone lengths scaled
per subject (0.9-1.1), each bone's direction a random perturbation (up to 60 deg) of a rest direction,
a random yaw in [-pi, pi), the root at 4.5-6 m depth, and a pinhole camera (f = 1150 px, 1000x1000 image,
principal point at the centre). 2D is normalised with hipart.camera.normalize_screen_coordinates; 3D is
root-relative metres. Subjects follow the Human3.6M protocol names: S1 S5 S6 S7 S8 train, S9 S11 validate.
These are plausible-looking poses for coverage and drift tests, not a pose prior: accuracy numbers on them
say nothing about real-data accuracy.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from hipart import skeleton
from hipart.camera import normalize_screen_coordinates

TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
VAL_SUBJECTS = ("S9", "S11")
IMAGE_SIZE = 1000
FOCAL_PX = 1150.0

# Rest direction (x right, y down, z forward) and length (m) of the bone ending at each joint 1..16.
_REST = {
    1: ((-1, 0, 0), 0.13), 2: ((0, 1, 0), 0.45), 3: ((0, 1, 0), 0.44),
    4: ((1, 0, 0), 0.13), 5: ((0, 1, 0), 0.45), 6: ((0, 1, 0), 0.44),
    7: ((0, -1, 0), 0.23), 8: ((0, -1, 0), 0.25), 9: ((0, -1, 0), 0.12), 10: ((0, -1, 0), 0.12),
    11: ((1, 0, 0), 0.15), 12: ((0, 1, 0), 0.28), 13: ((0, 1, 0), 0.25),
    14: ((-1, 0, 0), 0.15), 15: ((0, 1, 0), 0.28), 16: ((0, 1, 0), 0.25),
}  # fmt: skip


@dataclass
class PoseSet:
    """Normalised 2D poses, root-relative 3D poses (metres) and the subject of each sample."""

    x_s: np.ndarray  # [N, 17, 2] float32
    pose3d: np.ndarray  # [N, 17, 3] float32
    subjects: np.ndarray  # [N] str


def _perturb(direction: np.ndarray, max_angle: float, rng: np.random.Generator) -> np.ndarray:
    axis = rng.normal(size=3)
    axis -= axis.dot(direction) * direction
    axis /= np.linalg.norm(axis) + 1e-9
    angle = rng.uniform(0, max_angle)
    return np.cos(angle) * direction + np.sin(angle) * axis


def synthetic_poses(n: int, subjects: tuple[str, ...] = TRAIN_SUBJECTS + VAL_SUBJECTS, seed: int = 0) -> PoseSet:
    """`n` synthetic samples spread evenly over `subjects` (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    scale = {s: 0.9 + 0.2 * np.random.default_rng(zlib.crc32(s.encode())).random() for s in subjects}
    subj = np.array([subjects[i % len(subjects)] for i in range(n)])
    p3 = np.zeros((n, skeleton.NUM_JOINTS, 3))
    for i in range(n):
        for j in range(1, skeleton.NUM_JOINTS):
            rest, length = _REST[j]
            d = _perturb(np.asarray(rest, float), np.deg2rad(60), rng)
            p3[i, j] = p3[i, skeleton.PARENTS[j]] + d * length * scale[subj[i]]
        yaw = rng.uniform(-np.pi, np.pi)
        c, s = np.cos(yaw), np.sin(yaw)
        p3[i] = p3[i] @ np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]]).T
    root = np.stack([rng.uniform(-0.5, 0.5, n), rng.uniform(-0.2, 0.3, n), rng.uniform(4.5, 6.0, n)], 1)
    cam = p3 + root[:, None]
    px = FOCAL_PX * cam[..., :2] / cam[..., 2:] + IMAGE_SIZE / 2
    x_s = normalize_screen_coordinates(px, IMAGE_SIZE, IMAGE_SIZE)
    return PoseSet(x_s.astype(np.float32), p3.astype(np.float32), subj)
