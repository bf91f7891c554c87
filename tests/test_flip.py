"""Horizontal flip of hierarchical poses: involutive L/R maps, and mirrored poses land on the mirrored body."""

from pathlib import Path

import numpy as np
import torch

from hipart import skeleton
from hipart.data.flip import flip_batch, hierarchy_flip_permutation

SAMPLE_GT = Path(__file__).resolve().parents[1] / "edge" / "assets" / "sample_05_01_gt.npz"


def _nearest_bone(points: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Index of the skeleton bone segment nearest to each point ([P,3] points, [17,3] joints)."""
    a = joints[[p for p, _ in skeleton.BONES]]
    b = joints[[c for _, c in skeleton.BONES]]
    ab = b - a
    t = np.clip(((points[:, None] - a[None]) * ab[None]).sum(-1) / (ab * ab).sum(-1)[None], 0, 1)
    d = np.linalg.norm(points[:, None] - (a[None] + t[..., None] * ab[None]), axis=-1)
    return d.argmin(1)


def test_permutations_are_involutions_and_nested():
    sparse, dense, fine = hierarchy_flip_permutation()
    assert list(sparse) == skeleton.flip_permutation()
    for p in (sparse, dense, fine):
        assert sorted(p.tolist()) == list(range(len(p)))
        np.testing.assert_array_equal(p[p], np.arange(len(p)))
    # fine f belongs to dense f // 2; its partner belongs to the dense partner
    np.testing.assert_array_equal(fine // 2, dense[np.arange(96) // 2])


def test_flipped_clusters_follow_the_mirrored_bones():
    """On real posed frames, the partner of a cluster sits next to the mirrored bone (independent check)."""
    z = np.load(SAMPLE_GT)
    _, dense, fine = hierarchy_flip_permutation()
    bone_perm = np.asarray(skeleton.bone_flip_permutation())
    hits = []
    for f in range(0, 150, 10):
        js, jd, jf = z["p3d_s"][f], z["p3d_d"][f], z["p3d_f"][f]
        mirror = np.array([-1.0, 1.0, 1.0])
        for pts, perm in ((jd, dense), (jf, fine)):
            bone = _nearest_bone(pts, js)
            flipped_pts = (pts * mirror)[perm]
            flipped_joints = (js * mirror)[skeleton.flip_permutation()]
            hits.append(_nearest_bone(flipped_pts, flipped_joints) == bone_perm[bone][perm])
    assert np.concatenate(hits).mean() > 0.9


def test_flip_batch_mirrors_selected_samples_only():
    g = torch.Generator().manual_seed(0)
    b = {
        "x_s": torch.randn(4, 17, 2, generator=g),
        "x_d": torch.randn(4, 48, 2, generator=g),
        "gen_fine": torch.randn(4, 96, 2, generator=g),
        "pose3d": torch.randn(4, 17, 3, generator=g),
        "conf": torch.rand(4, 17, generator=g),
        "action": torch.arange(4),
    }
    which = torch.tensor([True, False, True, False])
    out = flip_batch(b, which)
    sparse, dense, fine = (torch.as_tensor(p) for p in hierarchy_flip_permutation())
    torch.testing.assert_close(out["x_s"][1], b["x_s"][1])
    torch.testing.assert_close(out["x_s"][0, :, 0], -b["x_s"][0, sparse, 0])
    torch.testing.assert_close(out["x_s"][0, :, 1], b["x_s"][0, sparse, 1])
    torch.testing.assert_close(out["x_d"][2, :, 0], -b["x_d"][2, dense, 0])
    torch.testing.assert_close(out["gen_fine"][2, :, 0], -b["gen_fine"][2, fine, 0])
    torch.testing.assert_close(out["pose3d"][0, :, 2], b["pose3d"][0, sparse, 2])
    torch.testing.assert_close(out["conf"][0], b["conf"][0, sparse])  # confidence is permuted, not mirrored
    torch.testing.assert_close(out["action"], b["action"])
    twice = flip_batch(out, which)
    for k in b:
        torch.testing.assert_close(twice[k], b[k])
