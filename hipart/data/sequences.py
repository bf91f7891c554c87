"""Windows of T consecutive frames of one (clip, camera) from a built dataset, for the temporal lifter.

The dataset's rows are ordered by clip, camera, frame, so each (clip, camera) is a run of consecutive
30 fps frames. A window is T frames of one run; frames before the run's start or after its end repeat the
first/last frame (edge replication) and are marked invalid (no loss, no metric on them).

Input per frame: x_s (gt | det | noisy, as `HierarchicalPoseDataset`) and, for 161-point models, dense and
fine points either from a HiPART-generated cache (`dense` [N,48,2], `fine` [N,96,2], optional `rows`) or from
the ground truth. Ground-truth dense/fine get the same noise as x_s: each dense point (and its two fine points)
moves by the mean displacement of the two joints of its bone (a noisy elbow drags the forearm's points).
Target: p3d_s root-relative [T, 17, 3] (metres, camera frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hipart import skeleton
from hipart.camera import normalize_screen_coordinates
from hipart.data.dataset import load_manifest, open_arrays
from hipart.data.noise import NoiseConfig, detector_noise

INPUTS_2D = ("gt", "det", "noisy")


def bone_spread_matrices() -> tuple[np.ndarray, np.ndarray]:
    """[48, 17] and [96, 17] matrices that move dense/fine points with the mean displacement of their bone's joints."""
    dense = np.zeros((skeleton.NUM_DENSE, skeleton.NUM_JOINTS), np.float32)
    for k in range(skeleton.NUM_DENSE):
        parent, child = skeleton.BONES[skeleton.PART_OF_DENSE_TOKEN[k]]
        dense[k, parent] += 0.5
        dense[k, child] += 0.5
    fine = dense[np.arange(skeleton.NUM_FINE) // 2]  # fine 2k and 2k+1 nest in dense k
    return dense, fine


def camera_rank(cam_clip: np.ndarray) -> np.ndarray:
    """For every camera of the dataset, its position among the cameras of its clip (0, 1, 2, ...)."""
    cam_clip = np.asarray(cam_clip)
    rank = np.zeros(len(cam_clip), np.int64)
    seen: dict[int, int] = {}
    for g, c in enumerate(cam_clip.tolist()):
        rank[g] = seen.get(c, 0)
        seen[c] = rank[g] + 1
    return rank


def split_rows(root: str | Path, split: str, camera: int | None = None) -> np.ndarray:
    """Dataset rows of `split` (only the camera-th camera of each clip when given), in dataset order."""
    man = load_manifest(root)
    if split not in man["splits"]:
        raise ValueError(f"unknown split {split!r}; choose from {man['splits']}")
    a = open_arrays(root, ["split", "camera", "cam_clip"])
    sel = np.asarray(a["split"]) == man["splits"].index(split)
    if camera is not None:
        rank = camera_rank(a["cam_clip"])
        if not 0 <= camera <= int(rank.max()):
            raise ValueError(f"camera must be in [0, {int(rank.max())}] (cameras per clip), got {camera}")
        sel &= rank[np.asarray(a["camera"])] == camera
    return np.nonzero(sel)[0]


def runs_of(rows: np.ndarray, clip: np.ndarray, camera: np.ndarray, frame: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) positions in `rows` of maximal runs of consecutive frames of one (clip, camera)."""
    if len(rows) == 0:
        return []
    c, k, f = clip[rows], camera[rows], frame[rows]
    brk = (np.diff(rows) != 1) | (np.diff(c) != 0) | (np.diff(k) != 0) | (np.diff(f) != 1)
    starts = np.concatenate([[0], np.nonzero(brk)[0] + 1])
    ends = np.concatenate([starts[1:], [len(rows)]])
    return [(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)]


def sparse_inputs(arrays: dict, rows: np.ndarray, input_2d: str, image_size: tuple[int, int], seed: int = 0,
                  noise: NoiseConfig | None = None) -> np.ndarray:  # fmt: skip
    """Normalised x_s [n, 17, 2] of `rows`: clean, stored detections, or resampled noise (HierarchicalPoseDataset's
    draw for epoch 0, so it matches a cache generated from that dataset)."""
    w, h = image_size
    if input_2d == "gt":
        return np.asarray(arrays["x_s"][rows], np.float32)
    if input_2d == "det":
        return normalize_screen_coordinates(np.asarray(arrays["x_s_det_px"][rows]), w, h).astype(np.float32)
    if input_2d != "noisy":
        raise ValueError(f"input_2d must be one of {INPUTS_2D}, got {input_2d!r}")
    px = np.asarray(arrays["x_s_px"][rows], np.float64)
    out = np.empty(px.shape, np.float32)
    for i, k in enumerate(rows.tolist()):
        noisy, _ = detector_noise(px[i], np.random.default_rng([seed, 0, k]), noise)
        out[i] = normalize_screen_coordinates(noisy, w, h)
    return out


class PoseWindows(Dataset):
    """Windows of T frames: {"x": [T, N, 2], "pose3d": [T, 17, 3], "valid": [T], "row": [T]} (N = 161 or 17).

    Windows are anchored on every `stride`-th frame c of a run and start at c - offset (offset 0: seq2seq chunks;
    T // 2 or T - 1: the target frame of a seq2frame model sits at that position).
    """

    def __init__(self, root: str | Path, split: str, frames: int, stride: int | None = None, offset: int = 0,
                 input_2d: str = "det", num_points: int = skeleton.NUM_HIERARCHY_POINTS,
                 generated: str | Path | None = None, camera: int | None = None, seed: int = 0,
                 noise: NoiseConfig | None = None):  # fmt: skip
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        if not 0 <= offset < frames:
            raise ValueError(f"offset must be in [0, {frames}), got {offset}")
        if num_points not in (skeleton.NUM_HIERARCHY_POINTS, skeleton.NUM_JOINTS):
            raise ValueError(f"num_points must be {skeleton.NUM_HIERARCHY_POINTS} or {skeleton.NUM_JOINTS}")
        if input_2d not in INPUTS_2D:
            raise ValueError(f"input_2d must be one of {INPUTS_2D}, got {input_2d!r}")
        self.frames, self.stride, self.offset = frames, stride or frames, offset
        self.num_points, self.input_2d = num_points, input_2d
        man = load_manifest(root)
        self.arrays = a = open_arrays(root)
        self.rows = split_rows(root, split, camera)
        clip, cam, frame = (np.asarray(a[k]) for k in ("clip", "camera", "frame"))
        self.runs = runs_of(self.rows, clip, cam, frame)
        self.x_s = sparse_inputs(a, self.rows, input_2d, tuple(man["image_size"]), seed, noise)
        self.dense = self.fine = None
        if num_points == skeleton.NUM_HIERARCHY_POINTS and generated is not None:
            self.dense, self.fine = load_generated(generated, root, split, self.rows, input_2d)
        self.spread_dense, self.spread_fine = bone_spread_matrices()
        # window = (run start position in rows, run length, first frame of the window relative to the run)
        self.windows = [(s, n, c - offset) for s, n in self.runs for c in range(0, n, self.stride)]
        # optional per-frame table aligned with self.rows (e.g. the single-frame lifter's features), yielded per window
        self.features: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        start, n, first = self.windows[i]
        rel = first + np.arange(self.frames)
        valid = (rel >= 0) & (rel < n)
        pos = start + np.clip(rel, 0, n - 1)  # positions in self.rows; edge replication at the run's ends
        rows = self.rows[pos]
        p3d = np.asarray(self.arrays["p3d_s"][rows], np.float32)
        out = {
            "x": torch.from_numpy(self.frame_inputs(pos)),
            "pose3d": torch.from_numpy(p3d - p3d[:, :1]),
            "valid": torch.from_numpy(valid.astype(np.float32)),
            "row": torch.from_numpy(rows.astype(np.int64)),
        }
        if self.features is not None:
            out["features"] = torch.from_numpy(self.features[pos])
        return out

    def frame_inputs(self, pos: np.ndarray) -> np.ndarray:
        """Model input [n, N, 2] of the frames at positions `pos` of `self.rows` (x_s, then dense and fine)."""
        x = self.x_s[pos]
        if self.num_points == skeleton.NUM_HIERARCHY_POINTS:
            if self.dense is not None:
                dense, fine = self.dense[pos], self.fine[pos]
            else:
                a, rows = self.arrays, self.rows[pos]
                shift = x - np.asarray(a["x_s"][rows], np.float32)  # the input's noise, spread over each bone
                dense = np.asarray(a["x_d"][rows], np.float32) + self.spread_dense @ shift
                fine = np.asarray(a["x_f"][rows], np.float32) + self.spread_fine @ shift
            x = np.concatenate([x, dense, fine], 1)
        return np.ascontiguousarray(x, np.float32)


def load_generated(path: str | Path, root: str | Path, split: str, rows: np.ndarray, input_2d: str | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """dense/fine of `rows` from a generated cache: matched through its `rows` array, or (without one) aligned
    row by row with the whole split (the layout hipart-train's generated_train_s1_*.npz has)."""
    z = np.load(path)
    made_from = str(z["input_2d"]) if "input_2d" in z else None
    if input_2d is not None and made_from is not None and made_from != input_2d:
        raise ValueError(f"{path} was generated from input_2d={made_from!r} x_s, not {input_2d!r}: the dense/fine "
                         "points would not belong to the x_s they are paired with")  # fmt: skip
    for k in ("dense", "fine"):
        if k not in z:
            raise ValueError(f"{path}: generated cache lacks the {k!r} array (need dense [N,48,2], fine [N,96,2])")
    dense, fine = z["dense"], z["fine"]
    if dense.shape[1:] != (skeleton.NUM_DENSE, 2) or fine.shape[1:] != (skeleton.NUM_FINE, 2) or len(dense) != len(
            fine):  # fmt: skip
        raise ValueError(f"{path}: dense {dense.shape} / fine {fine.shape} are not [N,48,2] / [N,96,2]")
    cache_rows = z["rows"] if "rows" in z else split_rows(root, split)
    if len(cache_rows) != len(dense):
        raise ValueError(
            f"{path}: {len(dense)} cached poses but the {split!r} split has {len(cache_rows)} rows; the cache must "
            "cover the whole, un-subsampled split (or store its `rows`)"
        )
    at = np.searchsorted(cache_rows, rows)
    ok = (at < len(cache_rows)) & (cache_rows[np.minimum(at, len(cache_rows) - 1)] == rows)
    if not ok.all():
        raise ValueError(f"{path}: {int((~ok).sum())} of the {len(rows)} needed rows are not in the cache "
                         f"(generated for another split or camera?)")  # fmt: skip
    return dense[at].astype(np.float32), fine[at].astype(np.float32)
