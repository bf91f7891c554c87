"""2D pose detectors: image (BGR) -> Detections in the 17-joint order (pixels + per-joint confidence)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    """Persons found in one image: keypoints [P,17,2] in pixels and confidences [P,17]."""

    keypoints: np.ndarray
    conf: np.ndarray

    @staticmethod
    def none() -> Detections:
        """No person."""
        return Detections(np.zeros((0, 17, 2), np.float32), np.zeros((0, 17), np.float32))

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])


class Detector:
    """Base class: `detector(image_bgr) -> Detections`; `close()` releases the model."""

    name = "detector"

    def __call__(self, image: np.ndarray) -> Detections:
        raise NotImplementedError

    def close(self) -> None:
        """Release the model."""


class DetectorError(RuntimeError):
    """A detector could not be built (missing package or model file)."""


def create_detector(name: str, model: str | None = None, **kwargs: object) -> Detector:
    """'blazepose' (bundled default) or 'onnx' (a user's RTMPose / YOLO-pose model at `model`)."""
    if name == "blazepose":
        from edge.detectors.blazepose import BlazePoseDetector

        return BlazePoseDetector(**kwargs)
    if name == "onnx":
        from edge.detectors.onnx_pose import OnnxPoseDetector

        if not model:
            raise DetectorError("--detector onnx needs --detector-model PATH.onnx")
        return OnnxPoseDetector(model, **kwargs)
    raise DetectorError(f"unknown detector {name!r}; choose 'blazepose' or 'onnx'")
