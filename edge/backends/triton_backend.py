"""Triton backend: the HiARM decode through the fused Triton kernels of `kernels/`, the rest in torch (CUDA).

Contract with `kernels/` (ARCHITECTURE.md §7): a module `kernels.generate` exposing
`generate(generator: HiARM, x_s: Tensor[B,17,2]) -> (q_s [B,16], q_d [B,48])`, token-identical to
`HiARM.generate`. Until that module lands this backend reports itself unavailable with that reason.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

import numpy as np
import torch

from edge.backends.base import BackendUnavailable, Result
from edge.backends.torch_backend import TorchBackend, _sync


def _load_kernels() -> Any:
    try:
        import triton  # noqa: F401
    except ImportError:
        raise BackendUnavailable("triton backend: the `triton` package is not installed") from None
    try:
        return importlib.import_module("kernels.generate")
    except ImportError as e:
        raise BackendUnavailable(f"triton backend: kernels.generate is not available yet ({e})") from None


class TritonBackend(TorchBackend):
    """HiPART with the autoregressive decode in fused Triton kernels (CUDA only)."""

    name = "triton"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Needs CUDA, the triton package and kernels.generate."""
        if not torch.cuda.is_available():
            return False, "triton backend: needs a CUDA GPU (torch.cuda.is_available() is False)"
        try:
            _load_kernels()
        except BackendUnavailable as e:
            return False, str(e)
        return True, ""

    def __init__(
        self, model: torch.nn.Module, device: str = "cuda", model_hash: str = "unknown", min_conf: float = 0.3
    ):
        ok, why = self.availability()
        if not ok:
            raise BackendUnavailable(why)
        super().__init__(model, device, model_hash, min_conf)
        self._kernels = _load_kernels()

    @torch.no_grad()  # not inference_mode: the model keeps its KV cache between calls
    def _infer(self, x_s: np.ndarray) -> Result:
        dev = self._device
        x = torch.from_numpy(x_s).to(dev)
        m = self.model
        t0 = time.perf_counter()
        q_s, q_d = self._kernels.generate(m.generator, x)
        _sync(dev)
        t1 = time.perf_counter()
        dense, fine = m.tokenizer.decode(q_s, q_d)
        _sync(dev)
        t2 = time.perf_counter()
        pose3d = m.lift(x, dense, fine)
        _sync(dev)
        t3 = time.perf_counter()
        return Result(
            dense=dense.float().cpu().numpy(),
            fine=fine.float().cpu().numpy(),
            pose3d=pose3d.float().cpu().numpy(),
            tokens=torch.cat([q_s, q_d], 1).long().cpu().numpy(),
            timings={"decode": (t1 - t0) * 1e3, "msst": (t2 - t1) * 1e3, "lift": (t3 - t2) * 1e3},
        )
