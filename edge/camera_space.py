"""Metric camera-space output: each person's root position from its lifted skeleton and its 2D joints.

The lifter predicts a root-relative pose (metres, camera axes: x right, y down, z forward). With the camera's
intrinsics K the absolute position follows from the 2D joints: find the translation T that makes the projection
of pose + T match them, the linear least-squares fit the lifting literature uses (e.g. VideoPose3D's trajectory
baseline): for every joint j with pixel (u, v) and root-relative point (X, Y, Z),

    fx (X + Tx) - (u - cx) (Z + Tz) = 0        fy (Y + Ty) - (v - cy) (Z + Tz) = 0

two equations linear in T, weighted by the joint's detector confidence (solved by
`hipart.camera.root_translation_lsq`, shared with the diffusion lifter's JPMA). Without intrinsics the output stays
root-relative and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hipart.camera import root_translation_lsq


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels (OpenCV convention)."""

    fx: float
    fy: float
    cx: float
    cy: float

    @staticmethod
    def parse(text: str, width: int | None = None, height: int | None = None) -> Intrinsics:
        """'F' (focal length; principal point at the image centre) or 'fx,fy,cx,cy'; ValueError otherwise."""
        parts = [p for p in text.replace(" ", "").split(",") if p]
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"intrinsics {text!r}: expected F or fx,fy,cx,cy (pixels)") from None
        if len(vals) == 1:
            if width is None or height is None:
                raise ValueError("a focal length alone needs the image size (principal point = image centre)")
            vals = [vals[0], vals[0], width / 2.0, height / 2.0]
        if len(vals) != 4 or not all(np.isfinite(vals)) or vals[0] <= 0 or vals[1] <= 0:
            raise ValueError(f"intrinsics {text!r}: expected F or fx,fy,cx,cy with focal lengths > 0")
        return Intrinsics(*vals)

    @property
    def K(self) -> np.ndarray:
        """The 3x3 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def root_translation(
    pose_rel: np.ndarray, kpts_px: np.ndarray, conf: np.ndarray | None, k: Intrinsics, min_conf: float = 0.0
) -> np.ndarray:
    """Camera-space root positions T [P, 3] (metres) of root-relative poses [P, J, 3] seen at kpts_px [P, J, 2].

    Joints below `min_conf` (or non-finite) are left out; a person with fewer than 2 usable joints gets NaN."""
    pose_rel = np.asarray(pose_rel, np.float64)
    kpts = np.asarray(kpts_px, np.float64)
    p, j = pose_rel.shape[:2]
    w = np.ones((p, j)) if conf is None else np.asarray(conf, np.float64).reshape(p, j).copy()
    w[(w < min_conf) | ~np.isfinite(kpts).all(-1) | ~np.isfinite(pose_rel).all(-1)] = 0.0
    use = (w > 0)[..., None]  # left-out joints are zeroed so a NaN there cannot reach the sums
    out = root_translation_lsq(np.where(use, pose_rel, 0.0), np.where(use, kpts, 0.0), w,
                               np.array([k.fx, k.fy, k.cx, k.cy]))  # fmt: skip
    out[(w > 0).sum(1) < 2] = np.nan
    return out
