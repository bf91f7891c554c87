"""Sequence windows: one (clip, camera), consecutive frames, edge padding, generated caches, noise spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hipart.data.dataset import open_arrays
from hipart.data.sequences import PoseWindows, bone_spread_matrices, camera_rank, split_rows
from tests.temporal_data import CAMERAS_PER_CLIP, CLIPS


def test_windows_come_from_one_clip_and_camera_and_are_consecutive(data):
    ds = PoseWindows(data, "train", frames=9, stride=4, input_2d="gt")
    a = open_arrays(data)
    n_train = sum(n for s, n in CLIPS.values() if s == "train") * CAMERAS_PER_CLIP
    assert len(ds.rows) == n_train and len(ds.runs) == 2 * CAMERAS_PER_CLIP
    assert len(ds) == sum(-(-n // 4) for _, n in ds.runs)
    for i in range(len(ds)):
        s = ds[i]
        rows, valid = s["row"].numpy(), s["valid"].numpy().astype(bool)
        assert len(set(a["clip"][rows].tolist())) == 1 and len(set(a["camera"][rows].tolist())) == 1
        f = a["frame"][rows]
        assert (np.diff(f[valid]) == 1).all()  # real frames are consecutive 30 fps frames
        assert valid[0]  # offset 0: windows start on a real frame
        if not valid.all():  # padding at the clip end repeats the last frame
            last = np.nonzero(valid)[0][-1]
            assert (rows[last:] == rows[last]).all()
        assert s["x"].shape == (9, 161, 2) and s["pose3d"].shape == (9, 17, 3)
        torch.testing.assert_close(s["pose3d"][:, 0], torch.zeros(9, 3))
        np.testing.assert_allclose(s["x"][:, :17].numpy(), a["x_s"][rows])
        np.testing.assert_allclose(s["x"][:, 17:65].numpy(), a["x_d"][rows])


def test_centred_windows_pad_the_clip_start_by_replication(data):
    ds = PoseWindows(data, "test", frames=7, stride=1, offset=3, input_2d="gt", num_points=17)
    first = ds[0]
    assert first["valid"].tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert len(set(first["row"][:4].tolist())) == 1  # frames -3..0 all show frame 0
    assert first["x"].shape == (7, 17, 2)
    assert len(ds) == CLIPS[3][1] * CAMERAS_PER_CLIP  # every frame is the target of exactly one window


def test_one_camera_per_clip(data):
    a = open_arrays(data)
    assert camera_rank(a["cam_clip"]).tolist() == [0, 1] * len(CLIPS)
    rows = split_rows(data, "train", camera=1)
    assert set(a["camera"][rows].tolist()) == {1, 3}
    with pytest.raises(ValueError, match="camera must be in"):
        split_rows(data, "train", camera=2)


def test_generated_cache_is_matched_by_rows(data, tmp_path):
    rows = split_rows(data, "test", camera=0)
    dense = np.random.default_rng(0).normal(size=(len(rows), 48, 2)).astype(np.float32)
    fine = np.random.default_rng(1).normal(size=(len(rows), 96, 2)).astype(np.float32)
    np.savez(tmp_path / "gen.npz", dense=dense, fine=fine, rows=rows)
    ds = PoseWindows(data, "test", frames=5, input_2d="det", generated=tmp_path / "gen.npz", camera=0)
    s = ds[1]
    at = np.searchsorted(rows, s["row"].numpy())
    np.testing.assert_allclose(s["x"][:, 17:65].numpy(), dense[at])
    np.testing.assert_allclose(s["x"][:, 65:].numpy(), fine[at])
    with pytest.raises(ValueError, match="not in the cache"):
        PoseWindows(data, "test", frames=5, generated=tmp_path / "gen.npz", camera=1)
    np.savez(tmp_path / "short.npz", dense=dense[:3], fine=fine[:3])
    with pytest.raises(ValueError, match="un-subsampled split"):
        PoseWindows(data, "test", frames=5, generated=tmp_path / "short.npz")


def test_noise_on_ground_truth_dense_follows_the_bones(data):
    spread_d, spread_f = bone_spread_matrices()
    assert np.allclose(spread_d.sum(1), 1) and np.allclose(spread_f.sum(1), 1)
    ds = PoseWindows(data, "train", frames=5, input_2d="det")
    a = open_arrays(data)
    s = ds[0]
    rows = s["row"].numpy()
    shift = s["x"][:, :17].numpy() - a["x_s"][rows]
    assert np.abs(shift).max() > 0  # det input differs from gt
    np.testing.assert_allclose(s["x"][:, 17:65].numpy(), a["x_d"][rows] + spread_d @ shift, atol=1e-6)
    noisy = PoseWindows(data, "train", frames=5, input_2d="noisy")
    assert torch.isfinite(noisy[0]["x"]).all()


def test_bad_arguments(data):
    with pytest.raises(ValueError, match="offset"):
        PoseWindows(data, "train", frames=5, offset=5)
    with pytest.raises(ValueError, match="unknown split"):
        PoseWindows(data, "nope", frames=5)
    with pytest.raises(ValueError, match="input_2d"):
        PoseWindows(data, "train", frames=5, input_2d="clean")


@pytest.mark.parametrize("input_2d", ["det", "noisy"])
def test_sparse_input_is_the_per_frame_dataset_draw(data, input_2d):
    """A cache generated from HierarchicalPoseDataset's x_s pairs with the same x_s here (noise of epoch 0)."""
    from hipart.data.dataset import HierarchicalPoseDataset
    from hipart.data.sequences import sparse_inputs

    ds = HierarchicalPoseDataset(data, "train", input_2d=input_2d)
    rows = ds.index[:6]
    ours = sparse_inputs(open_arrays(data), rows, input_2d, (1000, 1000))
    np.testing.assert_array_equal(ours, np.stack([ds[i]["x_s"].numpy() for i in range(6)]))
