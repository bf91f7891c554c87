"""Backends by name, what is available here, and `auto` (the fastest available, with the reason)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edge.backends.base import Backend, BackendError, BackendUnavailable
from edge.occlusion import DEFAULT_MIN_CONF
from export.manifest import ExpectedModel, default_dir

BACKENDS = ("torch", "onnxruntime", "triton", "tensorrt")
# Fastest first: what `auto` tries. Engines beat fused kernels beat ORT beat eager torch.
AUTO_ORDER = ("tensorrt", "triton", "onnxruntime", "torch")


def default_artifacts_dir() -> Path:
    """Where exported artifacts are looked for: $HIPART_ARTIFACTS, else ./exported (hipart-export's default --out)."""
    return default_dir()


def expected_model(loaded: Any) -> ExpectedModel | None:
    """What artifacts must have been exported from: the checkpoint or bundled model in use; None for random weights."""
    if loaded is None or not getattr(loaded, "trained", False):
        return None
    from hipart.checkpoint import bundled_checkpoint

    bundled = bundled_checkpoint()
    is_bundled = bundled is not None and Path(loaded.source).resolve() == bundled.resolve()
    return ExpectedModel(loaded.model_hash, "the bundled model" if is_bundled else f"checkpoint {loaded.source}")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def availability(
    name: str,
    artifacts: str | os.PathLike | None = None,
    expected: ExpectedModel | None = None,
    precision: str | None = None,
) -> tuple[bool, str]:
    """(ok, reason) for one backend on this machine with these artifacts (found through their manifest)."""
    art = Path(artifacts) if artifacts else default_artifacts_dir()
    if name == "torch":
        return True, ""
    if name == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False, "onnxruntime is not installed"
        from edge.backends.onnxruntime_backend import find_artifacts

        try:
            find_artifacts(art, expected)
        except BackendError as e:
            return False, str(e)
        return True, ""
    if name == "triton":
        from edge.backends.triton_backend import TritonBackend

        return TritonBackend.availability(allow_interpreter=False)  # the interpreter is for tests only
    if name == "tensorrt":
        from edge.backends.tensorrt_backend import TensorRTBackend, _gpu_identity, _import_trt, select_engine

        ok, why = TensorRTBackend.availability()
        if not ok:
            return ok, why
        gpu, cc = _gpu_identity()
        try:
            select_engine(art, precision, (gpu or "", cc or "", _import_trt().__version__), expected)
        except BackendError as e:
            return False, str(e)
        return True, ""
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)} or auto")


def available_backends(
    artifacts: str | os.PathLike | None = None, expected: ExpectedModel | None = None
) -> dict[str, tuple[bool, str]]:
    """Every backend with (ok, reason)."""
    return {name: availability(name, artifacts, expected) for name in BACKENDS}


def resolve_auto(artifacts: str | os.PathLike | None = None, expected: ExpectedModel | None = None) -> tuple[str, str]:
    """(backend name, explanation) for `--backend auto`."""
    skipped = []
    for name in AUTO_ORDER:
        ok, why = availability(name, artifacts, expected)
        if ok:
            note = f"auto picked {name!r} (fastest available"
            return name, note + (f"; skipped: {'; '.join(skipped)})" if skipped else ")")
        skipped.append(why)
    return "torch", "auto picked 'torch'"


def create_backend(
    name: str,
    model: Any = None,
    artifacts: str | os.PathLike | None = None,
    device: str = "auto",
    model_hash: str = "unknown",
    min_conf: float = DEFAULT_MIN_CONF,
    threads: int | None = None,
    precision: str | None = None,
    expected: ExpectedModel | None = None,
) -> Backend:
    """Build a backend by name ('auto' resolves first); raises BackendError/BackendUnavailable with a reason."""
    if name == "auto":
        name, _ = resolve_auto(artifacts, expected)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)} or auto")
    art = Path(artifacts) if artifacts else default_artifacts_dir()
    if device == "auto" and name != "onnxruntime":  # onnxruntime resolves "auto" from its own providers
        device = "cuda" if _cuda() else "cpu"
    if name in ("torch", "triton") and model is None:
        raise BackendError(f"{name} backend needs the PyTorch model (a checkpoint)")
    if name == "torch":
        from edge.backends.torch_backend import TorchBackend

        return TorchBackend(model, device=device, model_hash=model_hash, min_conf=min_conf)
    if name == "triton":
        from edge.backends.triton_backend import TritonBackend

        return TritonBackend(model, device=None, model_hash=model_hash, min_conf=min_conf)
    if name == "onnxruntime":
        from edge.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(
            art, device=device, threads=threads, model_hash=model_hash, min_conf=min_conf, expected=expected
        )
    from edge.backends.tensorrt_backend import TensorRTBackend

    ok, why = TensorRTBackend.availability()
    if not ok:
        raise BackendUnavailable(why)
    return TensorRTBackend(art, model_hash=model_hash, min_conf=min_conf, precision=precision, expected=expected)
