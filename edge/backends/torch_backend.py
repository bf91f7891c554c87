"""Reference backend: the PyTorch HiPART module (CPU or CUDA), eager, with per-stage timings."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from edge.backends.base import Backend, BackendArgs, BackendUnavailable, Result
from edge.occlusion import DEFAULT_MIN_CONF


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TorchBackend(Backend):
    """HiPART in PyTorch eager mode; the reference every other backend is tested against."""

    name = "torch"
    needs_model = True

    @classmethod
    def create(cls, a: BackendArgs) -> TorchBackend:
        """The registry's builder: the model on `device` ('auto': CUDA when torch sees it, else CPU)."""
        device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
        return cls(a.model, device=device, model_hash=a.model_hash, min_conf=a.min_conf)

    def __init__(
        self,
        model: torch.nn.Module,
        device: str = "cpu",
        model_hash: str = "unknown",
        min_conf: float = DEFAULT_MIN_CONF,
    ):
        super().__init__(model_hash, min_conf)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("torch backend: CUDA requested but torch.cuda.is_available() is False")
        self._device = torch.device(device)
        self.device = device
        self.model = model.to(self._device).eval()

    @torch.no_grad()  # not inference_mode: the model keeps its KV cache between calls
    def _infer(self, x_s: np.ndarray) -> Result:
        dev = self._device
        x = torch.from_numpy(x_s).to(dev)
        m = self.model
        t0 = time.perf_counter()
        q_s, q_d = self._decode_tokens(x)
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

    def _decode_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 16-step HiARM decode (subclasses swap in other decoders)."""
        return self.model.generator.generate(x)

    def info(self) -> dict[str, Any]:
        """Adds the torch version and thread count."""
        return {**super().info(), "torch": torch.__version__, "threads": torch.get_num_threads()}
