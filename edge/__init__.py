"""hipart-edge: edge room (see docs/ and docs/ARCHITECTURE.md §8); `from edge import Estimator` is the Python API."""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use, so `import edge.<module>` stays light. `import edge`, the Estimator and the onnxruntime /
# TensorRT backends import no torch (docs/DEPLOY.md, torch-free deployment); the torch and triton backends,
# `load_model` and the temporal stage do.
_EXPORTS = {
    "Estimator": "edge.estimator",
    "FrameResult": "edge.estimator",
    "create_backend": "edge.backends",
    "create_detector": "edge.detectors",
    "load_model": "edge.weights",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """The lazily imported public names above."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'edge' has no attribute {name!r}")
