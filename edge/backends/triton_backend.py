"""Triton backend: the HiARM decode on the fused kernels of `kernels/`, the rest in torch.

`kernels.decode_driver.TritonDecoder` runs Algorithm 1 with the fused cached-attention and head-argmax kernels
(one CUDA graph per batch size on GPU); the MSST decoders and the lifter stay in torch. The kernels run as JIT
Triton where the `triton` package is installed, else from `libhipart_kernels` (the same kernels compiled ahead of
time to cubins for sm_87/89/90, loaded through ctypes: `kernels/library.py`) -- the path on a Jetson, where no
Triton wheel exists. On a machine without CUDA it runs only under Triton's CPU interpreter (TRITON_INTERPRET=1,
for tests): far too slow to be useful, which `auto` knows.
"""

from __future__ import annotations

from typing import Any

import torch

from edge.backends.base import BackendArgs, BackendUnavailable
from edge.backends.torch_backend import TorchBackend
from edge.occlusion import DEFAULT_MIN_CONF


def _interpreting() -> bool:
    try:
        from kernels.triton_support import interpreting
    except ImportError:
        return False
    return interpreting()


def kernel_path() -> tuple[str | None, str]:
    """Which kernels this machine can run: ('triton' | 'aot' | None, why not / where from)."""
    try:
        from kernels import library
        from kernels.triton_support import HAS_TRITON, TRITON_IMPORT_ERROR
    except ImportError as e:
        return None, f"triton backend: kernels/ is not available ({e})"
    if HAS_TRITON:
        return "triton", "JIT Triton"
    try:
        lib = library.load()
    except library.LibraryError as e:
        return None, (f"triton backend: the `triton` package is not installed ({TRITON_IMPORT_ERROR}) and {e}")
    return "aot", f"libhipart_kernels ({lib.path})"


def _decoder_class() -> Any:
    path, why = kernel_path()
    if path is None:
        raise BackendUnavailable(why)
    from kernels.decode_driver import TritonDecoder

    return TritonDecoder


class TritonBackend(TorchBackend):
    """HiPART with the autoregressive decode in fused Triton kernels (CUDA; CPU only under the interpreter)."""

    name = "triton"

    @classmethod
    def availability(
        cls, artifacts: Any = None, expected: Any = None, precision: str | None = None, allow_interpreter: bool = True
    ) -> tuple[bool, str]:
        """Needs the triton package, kernels/ and CUDA (or Triton's CPU interpreter when allowed)."""
        try:
            _decoder_class()
        except BackendUnavailable as e:
            return False, str(e)
        if torch.cuda.is_available():
            return True, ""
        if allow_interpreter and _interpreting() and kernel_path()[0] == "triton":
            return True, ""
        return False, "triton backend: needs a CUDA GPU (torch.cuda.is_available() is False)"

    @classmethod
    def create(cls, a: BackendArgs) -> TritonBackend:
        """The registry's builder: CUDA when present, else the CPU interpreter (tests); `device` is not used."""
        return cls(a.model, device=None, model_hash=a.model_hash, min_conf=a.min_conf)

    def __init__(
        self,
        model: torch.nn.Module,
        device: str | None = None,
        model_hash: str = "unknown",
        min_conf: float = DEFAULT_MIN_CONF,
    ):
        ok, why = self.availability()
        if not ok:
            raise BackendUnavailable(why)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        super().__init__(model, device, model_hash, min_conf)
        self._decoder_cls = _decoder_class()
        self._decoders: dict[int, Any] = {}  # one per batch size: static buffers (+ a CUDA graph on GPU)

    def _decoder(self, batch: int) -> Any:
        if batch not in self._decoders:
            try:
                self._decoders[batch] = self._decoder_cls(self.model.generator, batch)
            except NotImplementedError as e:
                raise BackendUnavailable(f"triton backend: {e}") from None
        return self._decoders[batch]

    def _decode_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decode on the fused Triton kernels (one decoder per batch size)."""
        return self._decoder(x.shape[0])(x)

    def info(self) -> dict[str, Any]:
        """Adds which kernels run (JIT Triton or the AOT library), the triton version and the interpreter flag."""
        path, where = kernel_path()
        info = {**super().info(), "kernels": where, "interpreter": _interpreting() and path == "triton"}
        if path == "triton":
            import triton

            info["triton"] = triton.__version__
        return info
