"""2D pose detectors: image (BGR) -> Detections in the 17-joint order (pixels + per-joint confidence)."""

from __future__ import annotations

from edge.detectors.base import Detections, Detector, DetectorError

__all__ = ["Detections", "Detector", "DetectorError", "create_detector"]


def create_detector(name: str, model: str | None = None, **kwargs: object) -> Detector:
    """'blazepose' (bundled default), 'blazepose-multi' (several persons) or 'onnx' (a user's model at `model`)."""
    if name == "blazepose":
        from edge.detectors.blazepose import BlazePoseDetector

        return BlazePoseDetector(**kwargs)
    if name == "blazepose-multi":
        from edge.detectors.blazepose_multi import BlazePoseMultiDetector

        return BlazePoseMultiDetector(**kwargs)
    if name == "onnx":
        from edge.detectors.onnx_pose import OnnxPoseDetector

        if not model:
            raise DetectorError("--detector onnx needs --detector-model PATH.onnx")
        return OnnxPoseDetector(model, **kwargs)
    raise DetectorError(f"unknown detector {name!r}; choose 'blazepose', 'blazepose-multi' or 'onnx'")
