"""Shared fixtures for the edge runtime tests: a tiny model, its torch backend, synthetic inputs, fakes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge.backends.torch_backend import TorchBackend
from edge.detectors import Detections
from edge.sample import HEIGHT, WIDTH, project, render_clip, walk_3d
from edge.weights import LoadedModel
from hipart.checkpoint import model_hash

torch.set_num_threads(1)  # robust on a loaded 2-core machine (OpenMP barriers collapse when oversubscribed)


@pytest.fixture(scope="session")
def loaded(tiny_model) -> LoadedModel:
    return LoadedModel(tiny_model, model_hash(tiny_model), "tiny test model", trained=False)


@pytest.fixture(scope="session")
def torch_backend(tiny_model) -> TorchBackend:
    return TorchBackend(tiny_model, model_hash=model_hash(tiny_model))


@pytest.fixture(scope="session")
def walk_px() -> np.ndarray:
    """[T,17,2] pixel keypoints of the synthetic walk (640x480)."""
    return project(walk_3d(24))


@pytest.fixture(scope="session")
def clip(tmp_path_factory, walk_px) -> str:
    """A short rendered 640x480 clip (12 frames) of the synthetic walk."""
    return str(render_clip(tmp_path_factory.mktemp("clip") / "walk.mp4", frames=12))


class ScriptedDetector:
    """A stand-in detector: returns scripted detections frame after frame (frames arrive in order)."""

    name = "scripted"

    def __init__(self, script):
        self.script = list(script)
        self.calls = 0

    def __call__(self, image: np.ndarray) -> Detections:
        item = self.script[self.calls % len(self.script)]
        self.calls += 1
        if isinstance(item, Exception):
            raise item
        k, c = item
        return Detections(np.asarray(k, np.float32), np.asarray(c, np.float32))

    def close(self) -> None:
        pass


@pytest.fixture
def scripted():
    return ScriptedDetector


@pytest.fixture(scope="session")
def frame_size() -> tuple[int, int]:
    return WIDTH, HEIGHT
