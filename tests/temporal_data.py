"""A tiny synthetic dataset folder in the layout of `hipart-data build` (smooth motion, 2 cameras per clip)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hipart import skeleton
from hipart.camera import normalize_screen_coordinates

SIZE = 1000
# clip id -> (split, frames)
CLIPS = {0: ("train", 23), 1: ("train", 14), 2: ("val", 10), 3: ("test", 17)}
CAMERAS_PER_CLIP = 2


def _project(p: np.ndarray, focal: float) -> np.ndarray:
    return focal * p[..., :2] / p[..., 2:3] + SIZE / 2


def write_tiny_dataset(root: Path, seed: int = 0) -> Path:
    """Write the arrays + manifest.json; rows ordered by clip, camera, frame like a real build."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.25, (skeleton.NUM_JOINTS, 3))
    base[0] = 0
    dense_off = rng.normal(0, 0.03, (skeleton.NUM_DENSE, 3))
    cols: dict[str, list] = {k: [] for k in ("p3d_s", "p3d_d", "p3d_f", "clip", "camera", "frame", "split",
                                             "subject", "action")}  # fmt: skip
    cam_clip, focal = [], []
    splits = ["train", "val", "test"]
    for clip, (split, n) in CLIPS.items():
        t = np.arange(n, dtype=np.float64)[:, None, None]
        phase = rng.uniform(0, 6, (1, skeleton.NUM_JOINTS, 3))
        pose = base + 0.1 * np.sin(0.3 * t + phase)  # [n, 17, 3] root-centred, smooth in time
        for cam in range(CAMERAS_PER_CLIP):
            g = len(cam_clip)
            cam_clip.append(clip)
            focal.append(900.0 + 100 * cam)
            shift = np.array([0.1 * cam, 0.05 * clip, 4.0 + cam])
            p_s = pose + shift
            parents = np.array([p for p, _ in skeleton.BONES])[list(skeleton.PART_OF_DENSE_TOKEN)]
            children = np.array([c for _, c in skeleton.BONES])[list(skeleton.PART_OF_DENSE_TOKEN)]
            p_d = 0.5 * (p_s[:, parents] + p_s[:, children]) + dense_off
            p_f = np.repeat(p_d, 2, axis=1) + 0.01
            cols["p3d_s"].append(p_s)
            cols["p3d_d"].append(p_d)
            cols["p3d_f"].append(p_f)
            cols["clip"].append(np.full(n, clip))
            cols["camera"].append(np.full(n, g))
            cols["frame"].append(np.arange(n))
            cols["split"].append(np.full(n, splits.index(split)))
            cols["subject"].append(np.full(n, clip))
            cols["action"].append(np.full(n, clip % 2))
    arr = {k: np.concatenate(v) for k, v in cols.items()}
    f_of_row = np.array(focal)[arr["camera"]][:, None, None]
    px = {lvl: _project(arr[f"p3d_{lvl}"], f_of_row).astype(np.float32) for lvl in ("s", "d", "f")}
    out = {
        "x_s_px": px["s"], "x_d_px": px["d"], "x_f_px": px["f"],
        "x_s_det_px": (px["s"] + rng.normal(0, 2.0, px["s"].shape)).astype(np.float32),
        "conf_det": np.full(px["s"].shape[:2], 0.9, np.float32),
        "p3d_s": arr["p3d_s"].astype(np.float32), "p3d_d": arr["p3d_d"].astype(np.float32),
        "p3d_f": arr["p3d_f"].astype(np.float32),
        "clip": arr["clip"].astype(np.int32), "camera": arr["camera"].astype(np.int32),
        "frame": arr["frame"].astype(np.int32), "subject": arr["subject"].astype(np.int32),
        "split": arr["split"].astype(np.int8), "action": arr["action"].astype(np.int16),
        "cam_clip": np.array(cam_clip, np.int32), "cam_kind": np.zeros(len(cam_clip), np.int8),
    }  # fmt: skip
    for lvl in ("s", "d", "f"):
        out[f"x_{lvl}"] = normalize_screen_coordinates(out[f"x_{lvl}_px"], SIZE, SIZE).astype(np.float32)
    root.mkdir(parents=True, exist_ok=True)
    for k, v in out.items():
        np.save(root / f"{k}.npy", v)
    manifest = {
        "format_version": 1, "seed": seed, "cameras": "lab", "image_size": [SIZE, SIZE], "splits": splits,
        "files": {f"{k}.npy": {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in out.items()},
        "clips": [{"clip": f"c{c}", "split": s, "subject": f"s{c}", "frames": n} for c, (s, n) in CLIPS.items()],
        "subjects": [f"s{c}" for c in CLIPS], "action_classes": ["walk", "run"], "skipped": [],
    }  # fmt: skip
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root

