"""COCO-17 <-> the 17-joint (Human3.6M) order, with per-joint confidence.

COCO-17: 0 nose, 1 l_eye, 2 r_eye, 3 l_ear, 4 r_ear, 5 l_shoulder, 6 r_shoulder, 7 l_elbow,
8 r_elbow, 9 l_wrist, 10 r_wrist, 11 l_hip, 12 r_hip, 13 l_knee, 14 r_knee, 15 l_ankle, 16 r_ankle.

COCO -> 17-joint: the 12 limb joints are copied; the rest are derived (confidence = the minimum
of the joints used):
- pelvis (0)   = midpoint of the hips
- thorax (8)   = midpoint of the shoulders
- spine (7)    = midpoint of pelvis and thorax
- neck/nose (9)= the nose
- head_top (10)= head centre + 0.5 * (head centre - thorax), head centre = mean of the visible
                 eyes and ears (the nose when none is visible): about one head radius above it.
17-joint -> COCO (approximate): limbs copied, nose = neck/nose, eyes and ears placed on the
neck/nose - head_top segment (their confidence halved: they are guesses).
"""

from __future__ import annotations

import numpy as np

KEYPOINT_FORMATS = ("coco17", "h36m17")

# 17-joint index -> COCO index for the joints both have.
H36M_FROM_COCO = {1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 9: 0, 11: 5, 12: 7, 13: 9, 14: 6, 15: 8, 16: 10}
HEAD_TOP_EXTENT = 0.5  # head_top = head centre + this * (head centre - thorax)
MIN_HEAD_CONF = 0.1


def coco_to_h36m(kpts: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[P,17,2] COCO keypoints + [P,17] confidences -> the 17-joint order."""
    kpts = np.asarray(kpts, np.float32)
    conf = np.asarray(conf, np.float32)
    p = kpts.shape[0]
    out = np.zeros((p, 17, 2), np.float32)
    oc = np.zeros((p, 17), np.float32)
    for j, c in H36M_FROM_COCO.items():
        out[:, j], oc[:, j] = kpts[:, c], conf[:, c]
    out[:, 0] = (kpts[:, 11] + kpts[:, 12]) / 2
    oc[:, 0] = np.minimum(conf[:, 11], conf[:, 12])
    out[:, 8] = (kpts[:, 5] + kpts[:, 6]) / 2
    oc[:, 8] = np.minimum(conf[:, 5], conf[:, 6])
    out[:, 7] = (out[:, 0] + out[:, 8]) / 2
    oc[:, 7] = np.minimum(oc[:, 0], oc[:, 8])
    head = kpts[:, 1:5]
    hv = conf[:, 1:5] >= MIN_HEAD_CONF
    n = hv.sum(1, keepdims=True)
    centre = np.where(n > 0, (head * hv[..., None]).sum(1) / np.maximum(n, 1), kpts[:, 0])
    hc = np.where(n[:, 0] > 0, (conf[:, 1:5] * hv).sum(1) / np.maximum(n[:, 0], 1), conf[:, 0])
    out[:, 10] = centre + HEAD_TOP_EXTENT * (centre - out[:, 8])
    oc[:, 10] = np.minimum(hc, oc[:, 8])
    return out, oc


def h36m_to_coco(kpts: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[P,17,2] 17-joint poses -> COCO-17 (limbs exact; eyes/ears approximate, half confidence)."""
    kpts = np.asarray(kpts, np.float32)
    conf = np.asarray(conf, np.float32)
    p = kpts.shape[0]
    out = np.zeros((p, 17, 2), np.float32)
    oc = np.zeros((p, 17), np.float32)
    for j, c in H36M_FROM_COCO.items():
        out[:, c], oc[:, c] = kpts[:, j], conf[:, j]
    nose, top = kpts[:, 9], kpts[:, 10]
    up = top - nose
    side = np.stack([-up[:, 1], up[:, 0]], -1) * 0.25
    eye_c = nose + 0.25 * up
    guess = np.minimum(conf[:, 9], conf[:, 10]) * 0.5
    for c, pos in ((1, eye_c - side), (2, eye_c + side), (3, eye_c - 2 * side), (4, eye_c + 2 * side)):
        out[:, c], oc[:, c] = pos, guess
    return out, oc


def to_h36m(kpts: np.ndarray, conf: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Convert keypoints in `fmt` ('coco17' or 'h36m17') to the 17-joint order."""
    if fmt == "h36m17":
        return np.asarray(kpts, np.float32), np.asarray(conf, np.float32)
    if fmt == "coco17":
        return coco_to_h36m(kpts, conf)
    raise ValueError(f"unknown keypoint format {fmt!r}; choose one of {KEYPOINT_FORMATS}")
