"""The Result type and the Backend base class every HiPART backend implements."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.occlusion import DEFAULT_MIN_CONF, mask_low_confidence
from hipart import skeleton

if TYPE_CHECKING:
    from export.manifest import ExpectedModel


class BackendError(RuntimeError):
    """A backend could not be built or run (clear message, no deep traceback needed)."""


class BackendUnavailable(BackendError):
    """A backend's runtime (library or device) is not present on this machine."""


@dataclass
class Result:
    """HiPART output for a batch of B poses (numpy, normalised screen coordinates / metres)."""

    dense: np.ndarray  # [B, 48, 2] float32
    fine: np.ndarray  # [B, 96, 2] float32
    pose3d: np.ndarray  # [B, 17, 3] float32, metres, root-relative, camera frame
    tokens: np.ndarray  # [B, 64] int64: 16 sparse token ids then 48 dense token ids
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds per stage

    @property
    def q_s(self) -> np.ndarray:
        """Sparse token ids [B, 16]."""
        return self.tokens[:, : skeleton.NUM_BONES]

    @property
    def q_d(self) -> np.ndarray:
        """Dense token ids [B, 48]."""
        return self.tokens[:, skeleton.NUM_BONES :]

    def __len__(self) -> int:
        return int(self.pose3d.shape[0])

    def slice(self, start: int, stop: int) -> Result:
        """Rows start:stop (one frame's persons out of a batched call); timings are shared."""
        return Result(
            self.dense[start:stop],
            self.fine[start:stop],
            self.pose3d[start:stop],
            self.tokens[start:stop],
            dict(self.timings),
        )

    @staticmethod
    def empty() -> Result:
        """A result with B = 0 (a frame without persons)."""
        return Result(
            dense=np.zeros((0, skeleton.NUM_DENSE, 2), np.float32),
            fine=np.zeros((0, skeleton.NUM_FINE, 2), np.float32),
            pose3d=np.zeros((0, skeleton.NUM_JOINTS, 3), np.float32),
            tokens=np.zeros((0, skeleton.NUM_BONES + skeleton.NUM_DENSE), np.int64),
        )


def _check_poses(x: np.ndarray, name: str) -> np.ndarray:
    """x as float32 [B,17,2]; ValueError naming `name` otherwise."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[1:] != (skeleton.NUM_JOINTS, 2):
        raise ValueError(f"{name} must have shape [B, 17, 2], got {list(x.shape)}")
    return x


@dataclass
class BackendArgs:
    """The registry's common construction arguments (`edge.backends.create_backend`); each backend uses its own."""

    model: Any = None
    artifacts: str | os.PathLike | None = None
    device: str = "auto"
    model_hash: str = "unknown"
    min_conf: float = DEFAULT_MIN_CONF
    threads: int | None = None
    precision: str | None = None
    expected: ExpectedModel | None = None


class Backend:
    """Base class: a pure model adapter (`infer`) plus the `run` convenience that applies the input policy first.

    Subclasses implement `_infer(x_s[B,17,2] float32) -> Result` and may set `name`, `device`.
    `edge.estimator.Estimator` calls `infer` on the normalised, already-masked input, so backends are
    interchangeable and never mask twice.
    """

    name = "base"

    def __init__(self, model_hash: str = "unknown", min_conf: float = DEFAULT_MIN_CONF):
        self.model_hash = model_hash
        self.min_conf = min_conf
        self.device = "cpu"

    needs_model = False  # True: runs the PyTorch module (a checkpoint); False: runs exported artifacts

    @classmethod
    def availability(
        cls, artifacts: str | os.PathLike | None = None, expected: ExpectedModel | None = None,
        precision: str | None = None,
    ) -> tuple[bool, str]:  # fmt: skip
        """(True, '') when this backend can run here (with these artifacts, when given), else (False, reason)."""
        return True, ""

    @classmethod
    def create(cls, a: BackendArgs) -> Backend:
        """Build from the registry's common arguments (`edge.backends.create_backend`); each backend takes its own."""
        raise NotImplementedError(f"{cls.__name__} cannot be built through the registry")

    def infer(self, x_s: np.ndarray) -> Result:
        """Pure model call: x_s [B,17,2] normalised and already masked -> Result (B = 0 allowed); no masking here."""
        x = _check_poses(x_s, "x_s")
        if x.shape[0] == 0:
            return Result.empty()
        t0 = time.perf_counter()
        res = self._infer(np.ascontiguousarray(x))
        res.timings = {**res.timings, "total": (time.perf_counter() - t0) * 1e3}
        return res

    def run(self, kpts2d: np.ndarray, conf: np.ndarray | None = None) -> Result:
        """kpts2d [B,17,2] normalised, conf [B,17] in [0,1]: mask low-confidence joints, then `infer`."""
        x = _check_poses(kpts2d, "kpts2d")
        if conf is None:
            conf = np.ones(x.shape[:2], np.float32)
        conf = np.asarray(conf, dtype=np.float32)
        if conf.shape != x.shape[:2]:
            raise ValueError(f"conf must have shape [B, 17] = {list(x.shape[:2])}, got {list(conf.shape)}")
        if x.shape[0] == 0:
            return Result.empty()
        t0 = time.perf_counter()
        x = mask_low_confidence(x, conf, self.min_conf)
        t1 = time.perf_counter()
        res = self.infer(x)
        res.timings = {"mask": (t1 - t0) * 1e3, **res.timings, "total": (time.perf_counter() - t0) * 1e3}
        return res

    __call__ = run

    def _infer(self, x_s: np.ndarray) -> Result:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """Name, device, runtime versions and model hash (recorded by hipart-bench)."""
        return {"backend": self.name, "device": self.device, "model_hash": self.model_hash}

    def close(self) -> None:
        """Release runtime resources (sessions, device buffers)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
