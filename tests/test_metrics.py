import math

import numpy as np
import pytest
import torch

from hipart.metrics import mean_error_2d, mpjpe, mpjve, p_mpjpe, procrustes_align


def test_mpjpe_hand_computed():
    target = np.zeros((1, 3, 3))
    pred = np.array([[[0.0, 0, 0], [3.0, 4, 0], [0, 0, 1.0]]])
    assert np.allclose(mpjpe(pred, target, root_aligned=False), [(0 + 5 + 1) / 3])
    shifted = pred + np.array([10.0, -2, 7])  # a global shift vanishes after root alignment
    assert np.allclose(mpjpe(shifted, target), [2.0])
    assert np.allclose(mpjpe(torch.tensor(shifted), torch.tensor(target)), [2.0])
    with pytest.raises(ValueError, match="differ"):
        mpjpe(np.zeros((1, 3, 3)), np.zeros((1, 4, 3)))


def test_p_mpjpe_recovers_known_rotation_scale_translation():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(2, 17, 3))
    a = math.radians(37)
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    pred = 1.7 * target @ rot.T + np.array([0.3, -1.0, 2.0])
    assert np.allclose(p_mpjpe(pred, target), 0.0, atol=1e-9)
    assert mpjpe(pred, target).min() > 0.1
    np.testing.assert_allclose(procrustes_align(pred, target), target, atol=1e-9)
    # noise that cannot be explained by a similarity transform stays
    noisy = pred.copy()
    noisy[0, 5] += [0.0, 0.0, 0.5]
    assert p_mpjpe(noisy, target)[0] > 0.005


def test_p_mpjpe_never_reflects():
    target = np.random.default_rng(1).normal(size=(1, 17, 3))
    mirrored = target * np.array([-1.0, 1, 1])
    assert p_mpjpe(mirrored, target)[0] > 0.05


def test_mpjve_and_2d_error():
    t = np.zeros((3, 2, 3))
    p = np.zeros((3, 2, 3))
    p[2, :, 0] = 1.0  # one jump of 1 between frames 1 and 2
    assert math.isclose(mpjve(p, t), 0.5)
    assert np.allclose(mean_error_2d(np.array([[[3.0, 4.0], [0, 0]]]), np.zeros((1, 2, 2))), [2.5])
