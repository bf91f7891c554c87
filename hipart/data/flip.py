"""Horizontal flip of hierarchical poses: mirror x and swap left/right at every level (17 / 48 / 96 points).

The sparse level swaps the skeleton's named joint pairs. The dense and fine points are mesh clusters with no
names, so their left/right partner is found once on the symmetric mean Anny body (the bundled rest-pose skinning
table): each dense cluster is paired with the cluster nearest its mirror image (mutual greedy matching, so the
permutation is an involution; midline clusters pair with themselves), and each fine cluster follows its dense
parent (fine f lies in dense f // 2), so the levels stay nested after a flip.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from hipart import skeleton

MEAN_BODY_ASSET = Path(__file__).resolve().parents[1] / "assets" / "anny_mean_body_v1.npz"


def _rest_points() -> tuple[np.ndarray, np.ndarray]:
    """Rest-pose positions (world frame, x lateral) of the 96 fine and 48 dense clusters of the mean body."""
    table = np.load(MEAN_BODY_ASSET)["table"]  # [146, B, 4]: weight-blended homogeneous rest coordinates
    pts = table[..., :3].sum(1)  # identity pose: every bone transform is the identity
    nf, nd = skeleton.NUM_FINE, skeleton.NUM_DENSE
    return pts[:nf], pts[nf : nf + nd]


def _mutual_pairs(points: np.ndarray) -> np.ndarray:
    """Involutive permutation pairing each point with the point nearest its mirror image (x -> -x)."""
    mirrored = points * np.array([-1.0, 1.0, 1.0])
    d = np.linalg.norm(mirrored[:, None] - points[None], axis=-1)
    cost = d + d.T  # symmetric: pairing i<->j costs the same from both sides
    perm = -np.ones(len(points), dtype=np.int64)
    for flat in np.argsort(cost, axis=None, kind="stable"):
        i, j = divmod(int(flat), len(points))
        if perm[i] < 0 and perm[j] < 0:
            perm[i], perm[j] = j, i
    return perm


@functools.lru_cache(maxsize=1)
def hierarchy_flip_permutation() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left/right permutations (sparse [17], dense [48], fine [96]); each is an involution."""
    fine_pts, dense_pts = _rest_points()
    dense = _mutual_pairs(dense_pts)
    mirrored = fine_pts * np.array([-1.0, 1.0, 1.0])
    fine = np.empty(skeleton.NUM_FINE, dtype=np.int64)
    for d, e in enumerate(dense):
        a, b = 2 * d, 2 * d + 1  # children of d
        c0, c1 = 2 * e, 2 * e + 1  # children of its partner
        straight = np.linalg.norm(mirrored[a] - fine_pts[c0]) + np.linalg.norm(mirrored[b] - fine_pts[c1])
        crossed = np.linalg.norm(mirrored[a] - fine_pts[c1]) + np.linalg.norm(mirrored[b] - fine_pts[c0])
        fine[a], fine[b] = (c0, c1) if straight <= crossed else (c1, c0)
    sparse = np.asarray(skeleton.flip_permutation(), dtype=np.int64)
    return sparse, dense, fine


_LEVEL_OF_KEY = {"x_s": 0, "conf": 0, "pose3d": 0, "x_d": 1, "gen_dense": 1, "dense3d": 1,
                 "x_f": 2, "gen_fine": 2, "fine3d": 2}  # fmt: skip  (every key but conf holds coordinates)


@functools.lru_cache(maxsize=1)
def _torch_permutations() -> tuple[torch.Tensor, ...]:
    return tuple(torch.as_tensor(p) for p in hierarchy_flip_permutation())


def flip_batch(batch: dict[str, torch.Tensor], which: torch.Tensor) -> dict[str, torch.Tensor]:
    """Horizontally flip the samples of a collated batch where `which` [B] is True (x -> -x, L/R swapped).

    2D inputs are normalised so the image centre is x = 0; 3D is camera frame, so mirroring the image mirrors
    camera x as well. Keys without a point level (action, subject, ...) pass through unchanged.
    """
    perms = _torch_permutations()
    out = dict(batch)
    sel = which.bool()
    for key, level in _LEVEL_OF_KEY.items():
        if key not in batch:
            continue
        v = batch[key]
        flipped = v[:, perms[level]]
        if key != "conf":
            flipped = flipped.clone()
            flipped[..., 0] = -flipped[..., 0]
        shape = (-1,) + (1,) * (v.dim() - 1)
        out[key] = torch.where(sel.view(shape), flipped, v)
    return out
