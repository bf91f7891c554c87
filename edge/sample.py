"""A synthetic sample: a procedurally generated walk (3D), its 2D projection, and a rendered clip.

Used as the bundled input until the data issue ships a real sample video: `assets/sample_walk.npz`
(2D keypoints, `--source sample`, the default) drives detector-free runs; `assets/sample_walk.mp4`
(`--source sample-video`) is the walk drawn as a filled figure at 640x480, which BlazePose detects,
for the full video path. Regenerate both with `python -m edge.sample`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from hipart import skeleton

# Rest pose offsets of each joint from its parent (metres, camera frame: x right, y down, z forward).
_OFFSETS = np.array(
    [
        [0, 0, 0],
        [-0.12, 0, 0],
        [0, 0.45, 0],
        [0, 0.44, 0],
        [0.12, 0, 0],
        [0, 0.45, 0],
        [0, 0.44, 0],
        [0, -0.23, 0],
        [0, -0.25, 0],
        [0, -0.12, 0],
        [0, -0.12, 0],
        [0.18, 0.02, 0],
        [0.06, 0.27, 0],
        [0, 0.25, 0],
        [-0.18, 0.02, 0],
        [-0.06, 0.27, 0],
        [0, 0.25, 0],
    ],
    np.float32,
)
FOCAL, WIDTH, HEIGHT, FPS, DEPTH = 600.0, 640, 480, 30.0, 2.9


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], np.float32)


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float32)


def walk_3d(frames: int = 90, fps: float = FPS) -> np.ndarray:
    """[T,17,3] camera-frame joints of a person walking in place, slowly turning, 2.9 m away."""
    out = np.zeros((frames, 17, 3), np.float32)
    for t in range(frames):
        ph = 2 * math.pi * 1.0 * t / fps  # one stride per second
        swing = {1: 0.45 * math.sin(ph), 4: -0.45 * math.sin(ph), 11: -0.5 * math.sin(ph), 14: 0.5 * math.sin(ph)}
        bend = {
            2: 0.7 * max(0.0, math.sin(ph + 1.2)),
            5: 0.7 * max(0.0, math.sin(ph + 1.2 + math.pi)),
            12: -0.4 - 0.2 * math.sin(ph),
            15: -0.4 + 0.2 * math.sin(ph),
        }
        rots = [np.eye(3, dtype=np.float32)] * 17
        pos = np.zeros((17, 3), np.float32)
        for j in range(17):
            par = skeleton.PARENTS[j]
            local = _rot_x(swing.get(j, 0.0) + bend.get(j, 0.0))
            if j == 0:
                rots[0] = _rot_y(0.6 * math.sin(2 * math.pi * t / (fps * 3)))
                pos[0] = [0.0, 0.02 * math.sin(2 * ph), DEPTH]
                continue
            rots[j] = rots[par] @ local
            pos[j] = pos[par] + rots[par] @ (local @ _OFFSETS[j] if j in (2, 3, 5, 6, 12, 13, 15, 16) else _OFFSETS[j])
        out[t] = pos
    return out


def project(points3d: np.ndarray, focal: float = FOCAL, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Pinhole projection of [...,3] camera-frame points to pixels (principal point at the centre)."""
    z = points3d[..., 2:3]
    return (points3d[..., :2] / z * focal + np.array([width / 2, height / 2], np.float32)).astype(np.float32)


def make_sample(path: str | os.PathLike, frames: int = 90) -> Path:
    """Write the keypoint sample (.npz, 17-joint order, pixels) and return its path."""
    kp = project(walk_3d(frames))
    conf = np.full(kp.shape[:2], 0.95, np.float32)
    np.savez_compressed(path, keypoints=kp, conf=conf, width=WIDTH, height=HEIGHT, fps=FPS, format="h36m17")
    return Path(path)


def draw_figure(kpts: np.ndarray, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A BGR frame with a filled, person-like figure (limbs as thick capsules, a head disc)."""
    import cv2

    img = np.full((height, width, 3), (190, 200, 205), np.uint8)
    cv2.rectangle(img, (0, int(height * 0.8)), (width, height), (120, 130, 140), -1)
    thick = {2: 22, 3: 18, 5: 22, 6: 18, 12: 14, 13: 12, 15: 14, 16: 12, 7: 40, 8: 44, 9: 14}
    for p, j in skeleton.BONES:
        a, b = kpts[p].astype(int), kpts[j].astype(int)
        colour = (60, 70, 150) if j in (2, 3, 5, 6, 1, 4) else (150, 110, 70)
        cv2.line(img, tuple(a), tuple(b), colour, thick.get(j, 16), cv2.LINE_AA)
    head = ((kpts[9] + kpts[10]) / 2).astype(int)
    cv2.circle(img, tuple(head), 16, (140, 170, 210), -1, cv2.LINE_AA)
    return img


def render_clip(path: str | os.PathLike, frames: int = 90, fps: float = FPS) -> Path:
    """Render the walk as a 640x480 video (mp4v) and return its path."""
    import cv2

    kp = project(walk_3d(frames, fps))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise OSError(f"cannot write video {path}")
    for t in range(frames):
        writer.write(draw_figure(kp[t]))
    writer.release()
    return Path(path)


if __name__ == "__main__":
    assets = Path(__file__).resolve().parent / "assets"
    print(f"wrote {make_sample(assets / 'sample_walk.npz')}")
    print(f"wrote {render_clip(assets / 'sample_walk.mp4')}")
