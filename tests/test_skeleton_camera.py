import numpy as np
import pytest
import torch

from hipart import skeleton as sk
from hipart.camera import image_coordinates, normalize_screen_coordinates


def test_bones_and_parts():
    assert len(sk.BONES) == sk.NUM_BONES == 16
    assert sk.BONES[0] == (0, 1) and sk.BONES[9] == (9, 10) and sk.BONES[15] == (15, 16)
    assert sk.DENSE_TOKENS_OF_PART[5] == (15, 16, 17)
    assert [sk.PART_OF_DENSE_TOKEN[t] for t in (0, 2, 3, 47)] == [0, 0, 1, 15]
    assert sk.NUM_HIERARCHY_POINTS == 161


def test_center_to_periphery_order():
    order = sk.CENTER_TO_PERIPHERY
    assert sorted(order) == list(range(16))
    depths = [sk.BONE_DEPTH[b] for b in order]
    assert depths == sorted(depths)
    # hand-computed: pelvis bones first, wrists last
    assert order[:3] == (0, 3, 6) and set(order[-2:]) == {12, 15}
    with pytest.raises(ValueError, match="unknown generation order"):
        sk.generation_order("spiral")


def test_flip_permutations_are_involutions():
    p = sk.flip_permutation()
    assert [p[i] for i in p] == list(range(17))
    assert p[1] == 4 and p[13] == 16 and p[0] == 0 and p[10] == 10
    bp = sk.bone_flip_permutation()
    assert [bp[i] for i in bp] == list(range(16))
    for b, fb in enumerate(bp):  # a flipped bone joins the flipped joints
        pa, ch = sk.BONES[b]
        assert sk.BONES[fb] == (p[pa], p[ch])


def test_screen_normalisation_hand_computed():
    x = np.array([[500.0, 500.0], [0.0, 1000.0]])
    n = normalize_screen_coordinates(x, 1000, 1000)
    np.testing.assert_allclose(n, [[0.0, 0.0], [-1.0, 1.0]])
    n2 = normalize_screen_coordinates(torch.tensor([[640.0, 240.0]]), 640, 480)
    torch.testing.assert_close(n2, torch.tensor([[1.0, 0.0]]))
    back = image_coordinates(n, 1000, 1000)
    np.testing.assert_allclose(back, x)
    with pytest.raises(ValueError, match="pixel coordinates"):
        normalize_screen_coordinates(np.zeros((3, 3)), 10, 10)
