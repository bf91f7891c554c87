"""Projection against a hand-computed camera, camera rigs, detector noise and occlusions."""

from __future__ import annotations

import numpy as np
import pytest

from hipart.camera import (
    camera_to_world,
    intrinsic_matrix,
    look_at,
    normalize_screen_coordinates,
    project_to_pixels,
    world_to_camera,
)
from hipart.data.cameras import lab_cameras, wild_cameras
from hipart.data.noise import NoiseConfig, detector_noise
from hipart.data.occlusion import crop_occlusion, mask_joints


def test_projection_hand_computed():
    # camera 4 m behind the origin on -Z, 1 m high, looking at (0, 1, 0); f = 1000, c = (500, 500)
    R, t = look_at([0, 1, -4], [0, 1, 0])
    np.testing.assert_allclose(R, [[-1, 0, 0], [0, -1, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(t, [0, 1, 4], atol=1e-12)
    K = intrinsic_matrix(1000, 1000, 500, 500)
    X = np.array([[0.5, 1.5, 0.0], [0.0, 0.0, 1.0]])
    Xc = world_to_camera(X, R, t)
    np.testing.assert_allclose(Xc, [[-0.5, -0.5, 4.0], [0.0, 1.0, 5.0]], atol=1e-12)
    px = project_to_pixels(Xc, K)
    # u = 1000 * -0.5 / 4 + 500 = 375; second: v = 1000 * 1 / 5 + 500 = 700
    np.testing.assert_allclose(px, [[375, 375], [500, 700]], atol=1e-9)
    np.testing.assert_allclose(camera_to_world(Xc, R, t), X, atol=1e-12)
    np.testing.assert_allclose(normalize_screen_coordinates(px, 1000, 1000), [[-0.25, -0.25], [0, 0.4]])
    with pytest.raises(ValueError, match="behind the camera"):
        project_to_pixels(np.array([[0.0, 0.0, -1.0]]), K)


def test_lab_and_wild_rigs_frame_the_subject():
    rng = np.random.default_rng(0)
    root = np.stack([np.linspace(-1, 1, 50), np.full(50, 0.95), np.zeros(50)], 1)
    lab = lab_cameras(root, rng)
    assert len(lab) == 4 and lab.width == lab.height == 1000
    for c in range(4):
        eye = camera_to_world(np.zeros(3), lab.R[c], lab.t[c])
        assert 0.8 <= eye[1] <= 2.0
        assert 3.0 <= np.linalg.norm(eye[[0, 2]]) <= 6.0 + 1.0 + 1e-9
        assert 980 <= lab.K[c, 0, 0] <= 1020
        u = project_to_pixels(world_to_camera(root, lab.R[c], lab.t[c]), lab.K[c])
        assert ((u > 0) & (u < 1000)).all()
        np.testing.assert_allclose(lab.R[c] @ lab.R[c].T, np.eye(3), atol=1e-12)
    wild = wild_cameras(root, rng)
    assert len(wild) == 4 and (wild.K[:, 0, 0] >= 500).all() and (wild.K[:, 0, 0] <= 1800).all()


def test_detector_noise_statistics():
    rng = np.random.default_rng(1)
    x = np.tile(np.array([[500.0, 300.0 + 25 * j] for j in range(17)]), (4000, 1, 1))  # 400 px tall person
    y, conf = detector_noise(x, rng, NoiseConfig(level=0.1, outlier_prob=0.0, swap_prob=0.0))
    err = y - x
    # std per joint = 0.1 * kappa * 400: wrist (13) kappa .062 -> 2.48 px; pelvis (0) .107 -> 4.28 px
    assert abs(err[:, 13].std() - 2.48) < 0.1 and abs(err[:, 0].std() - 4.28) < 0.15
    assert conf.shape == (4000, 17) and (conf >= 0).all() and (conf <= 1).all()
    y2, conf2 = detector_noise(x, np.random.default_rng(2), NoiseConfig(level=0.0, outlier_prob=0.5, swap_prob=0))
    moved = np.linalg.norm(y2 - x, axis=-1) > 1e-9
    assert abs(moved.mean() - 0.5) < 0.02
    assert conf2[moved].mean() < 0.3 and conf2[~moved].mean() > 0.9


def test_mask_joints_ratio_and_fill():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 100, (200, 17, 2))
    conf = np.ones((200, 17))
    y, c, m = mask_joints(x, conf, 0.4, rng)
    assert (m.sum(axis=1) == 7).all()  # round(0.4 * 17) = 7 per pose
    assert (y[m] == 0).all() and (c[m] == 0).all() and (y[~m] == x[~m]).all()
    y, c, m = mask_joints(x, conf, 0.0, rng)
    assert not m.any() and (y == x).all()


def test_crop_occlusion_hand_computed():
    x = np.array([[[0.0, 0.0], [10.0, 0.0], [5.0, 10.0], [2.0, 2.0]]])
    conf = np.ones((1, 4))

    class FixedSide:  # always crop from the left (side 0)
        def integers(self, lo, hi, size):
            return np.zeros(size, dtype=np.int64)

    y, c, m = crop_occlusion(x, conf, 0.3, FixedSide())
    # box x in [0, 10]; crop the left 30 %: x < 3 occluded and clamped to x = 3
    assert m.tolist() == [[True, False, False, True]]
    np.testing.assert_allclose(y[0, :, 0], [3, 10, 5, 3])
    np.testing.assert_allclose(y[0, :, 1], x[0, :, 1])
    assert c.tolist() == [[0, 1, 1, 0]]
