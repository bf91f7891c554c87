"""CPU rasteriser and the bundled sample video's ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hipart.camera import intrinsic_matrix, project_to_pixels
from hipart.data.render import rasterize

REPO = Path(__file__).resolve().parents[2]


def test_rasterize_depth_order_and_lambert():
    K = intrinsic_matrix(100, 100, 50, 50)
    # two squares facing the camera (normals towards -z): red far (z=4), green near (z=2) covering the centre
    v = np.array([[-1, -1, 4], [1, -1, 4], [1, 1, 4], [-1, 1, 4],
                  [-0.2, -0.2, 2], [0.2, -0.2, 2], [0.2, 0.2, 2], [-0.2, 0.2, 2]], float)  # fmt: skip
    f = np.array([[0, 2, 1], [0, 3, 2], [4, 6, 5], [4, 7, 6]])
    cols = np.array([[0, 0, 200], [0, 0, 200], [0, 200, 0], [0, 200, 0]], float)
    img = np.zeros((100, 100, 3), np.uint8)
    rasterize(v, f, K, img, cols, light_cam=(0, 0, 1), ambient=0.5)
    assert tuple(img[50, 50]) == (0, 200, 0)  # near square wins; light straight on: full brightness
    assert tuple(img[50, 30]) == (0, 0, 200)  # far square around it
    assert tuple(img[2, 2]) == (0, 0, 0)  # outside (far square spans 25..75 px)
    img2 = np.zeros((100, 100, 3), np.uint8)
    rasterize(v, f, K, img2, cols, light_cam=(0, 0, -1), ambient=0.5)  # light from behind: ambient only
    assert tuple(img2[50, 50]) == (0, 100, 0)
    img3 = np.zeros((100, 100, 3), np.uint8)
    rasterize(v, f[:, ::-1], K, img3, cols)  # reversed winding = back faces: culled
    assert img3.max() == 0


def test_sample_video_ground_truth_consistent():
    gt_path = REPO / "edge" / "assets" / "sample_05_01_gt.npz"
    mp4 = REPO / "edge" / "assets" / "sample_05_01.mp4"
    if not gt_path.exists():
        pytest.skip("sample video not generated")
    assert mp4.stat().st_size < 5 * 1024 * 1024
    gt = np.load(gt_path)
    F = gt["x_s_px"].shape[0]
    assert F / int(gt["fps"]) <= 10.0
    for lvl, n in (("s", 17), ("d", 48), ("f", 96)):
        assert gt[f"x_{lvl}_px"].shape == (F, n, 2)
        np.testing.assert_allclose(project_to_pixels(gt[f"p3d_{lvl}"].astype(np.float64), gt["K"]),
                                   gt[f"x_{lvl}_px"], atol=0.05)  # fmt: skip
    inside = (gt["x_s_px"] > 0) & (gt["x_s_px"] < int(gt["width"]))
    assert inside.all()
    cv2 = pytest.importorskip("cv2")
    cap = cv2.VideoCapture(str(mp4))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = cap.read()
    assert ok and frame.shape == (int(gt["height"]), int(gt["width"]), 3) and n == F
