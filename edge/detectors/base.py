"""What every 2D pose detector returns and implements: Detections, the Detector base class, DetectorError."""

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
