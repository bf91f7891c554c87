"""k-center calibration selection: coverage, training-subjects-only, npz round trip, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from calib.calibration_set import (
    CalibrationDataError,
    coverage_radius,
    greedy_k_center,
    load_calibration,
    save_calibration,
    select_training,
)
from calib.synthetic_poses import TRAIN_SUBJECTS, VAL_SUBJECTS, synthetic_poses


@pytest.fixture(scope="module")
def poses():
    return synthetic_poses(700, seed=3)


def test_k_center_beats_random_coverage(poses):
    x = poses.x_s
    chosen = greedy_k_center(x, 64)
    assert len(set(chosen.tolist())) == 64
    rng = np.random.default_rng(0)
    random_radius = min(coverage_radius(x, rng.choice(len(x), 64, replace=False)) for _ in range(5))
    assert coverage_radius(x, chosen) < 0.9 * random_radius


def test_k_center_two_approximation_on_clusters():
    # 4 tight clusters far apart: k=4 must pick one point from each cluster.
    rng = np.random.default_rng(1)
    centers = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], float)
    pts = np.concatenate([c + rng.normal(scale=0.1, size=(50, 2)) for c in centers])
    chosen = greedy_k_center(pts, 4)
    assert sorted(set((chosen // 50).tolist())) == [0, 1, 2, 3]


def test_selection_uses_training_subjects_only(poses):
    idx = select_training(poses.x_s, poses.subjects, TRAIN_SUBJECTS, 128)
    assert set(poses.subjects[idx]) <= set(TRAIN_SUBJECTS)
    assert not set(poses.subjects[idx]) & set(VAL_SUBJECTS)
    assert len(idx) == 128 and len(set(idx.tolist())) == 128


def test_too_small_or_no_training_data(poses):
    with pytest.raises(CalibrationDataError, match="too small"):
        select_training(poses.x_s, poses.subjects, TRAIN_SUBJECTS, 10_000)
    with pytest.raises(CalibrationDataError, match="no poses from training subjects"):
        select_training(poses.x_s, poses.subjects, ("S99",), 8)


def test_npz_roundtrip_keyed_by_input(tmp_path, poses):
    path = save_calibration(tmp_path / "calib.npz", {"x_s": poses.x_s[:32]}, source="synthetic")
    data = load_calibration(path, ["x_s"], min_size=32)
    np.testing.assert_array_equal(data["x_s"], poses.x_s[:32])
    with pytest.raises(CalibrationDataError, match="lacks inputs"):
        load_calibration(path, ["points"])
    with pytest.raises(CalibrationDataError, match="too small"):
        load_calibration(path, ["x_s"], min_size=512)
    with pytest.raises(CalibrationDataError, match="not found"):
        load_calibration(tmp_path / "missing.npz", ["x_s"])
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(CalibrationDataError, match="not a readable"):
        load_calibration(tmp_path / "bad.npz", ["x_s"])


def test_synthetic_generator_is_deterministic_and_plausible():
    a, b = synthetic_poses(20, seed=5), synthetic_poses(20, seed=5)
    np.testing.assert_array_equal(a.x_s, b.x_s)
    assert np.all(np.abs(a.x_s) < 1.0)  # inside the normalised image
    np.testing.assert_allclose(a.pose3d[:, 0], 0.0)  # root-relative
    femur = np.linalg.norm(a.pose3d[:, 2] - a.pose3d[:, 1], axis=-1)
    assert np.all((femur > 0.38) & (femur < 0.52))  # 0.45 m x subject scale 0.9-1.1


def _fake_dataset(root, n_per_split=(40, 12, 8)):
    """The arrays and manifest fields `hipart-data build` writes that calibration reads."""
    import json

    ps = synthetic_poses(sum(n_per_split), seed=9)
    split = np.concatenate([np.full(n, i, np.int8) for i, n in enumerate(n_per_split)])
    px = (ps.x_s + [1.0, 1.0]) * 500.0  # inverse of normalize_screen_coordinates for a 1000x1000 image
    root.mkdir()
    np.save(root / "x_s_px.npy", px.astype(np.float32))
    np.save(root / "p3d_s.npy", (ps.pose3d + 3.0).astype(np.float32))  # not root-relative on disk
    np.save(root / "split.npy", split)
    manifest = {"files": ["x_s_px.npy", "p3d_s.npy", "split.npy"], "splits": ["train", "val", "test"],
                "image_size": [1000, 1000]}  # fmt: skip
    (root / "manifest.json").write_text(json.dumps(manifest))
    return ps, split


def test_dataset_split_poses(tmp_path):
    from calib.dataset_poses import split_poses

    ps, split = _fake_dataset(tmp_path / "ds")
    x, p3d = split_poses(tmp_path / "ds", "val")
    np.testing.assert_allclose(x, ps.x_s[split == 1], atol=1e-5)
    np.testing.assert_allclose(p3d, ps.pose3d[split == 1], atol=1e-5)  # made root-relative
    with pytest.raises(CalibrationDataError, match="no 'dev' split"):
        split_poses(tmp_path / "ds", "dev")
    with pytest.raises(CalibrationDataError, match="no manifest.json"):
        split_poses(tmp_path, "train")


def test_cli_dataset_calibration(tmp_path, capsys):
    from export.cli import main

    _fake_dataset(tmp_path / "ds")
    out = tmp_path / "out"
    args = ["--random-weights", "tiny", "--only", "lift", "--int8", "--dataset", str(tmp_path / "ds"),
            "--calib-size", "32", "--fallback-trials", "0", "--no-parity", "--max-drift-mm", "1e9", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    with np.load(out / "calib_lift.npz") as z:
        assert z["points"].shape == (32, 161, 2)
    assert main([*args[:-2], "--calib-size", "64", "--out", str(tmp_path / "o2")]) == 2
    assert "too small: 40 training poses" in capsys.readouterr().err
