"""Backends by name (a table of classes), what is available here, and `auto` (the fastest available, with the reason).

Each backend is a `Backend` subclass with `availability(artifacts, expected, precision)` and `create(...)`
classmethods; the table below names the class and what it needs before its module may even be imported. Classes
are imported on use: the onnxruntime and TensorRT modules import no torch, and `auto` checks the cheap needs
(packages present, a CUDA device via the driver) first, so choosing an artifact backend never imports torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.backends.base import Backend, BackendArgs, BackendError, BackendUnavailable
from edge.backends.cuda_probe import cuda_available
from edge.occlusion import DEFAULT_MIN_CONF
from export.manifest import ExpectedModel, default_dir


@dataclass(frozen=True)
class BackendSpec:
    """One row of the table: the class (imported on use) and what it needs before it is worth importing."""

    cls: str  # "module:Class"
    packages: tuple[str, ...] = ()  # Python packages the module imports at load time
    cuda: bool = False  # needs a CUDA device (checked through the driver, without torch)
    probe: dict[str, Any] = field(default_factory=dict)  # extra arguments the registry passes to availability()


REGISTRY: dict[str, BackendSpec] = {
    "torch": BackendSpec("edge.backends.torch_backend:TorchBackend", ("torch",)),
    "onnxruntime": BackendSpec("edge.backends.onnxruntime_backend:OnnxRuntimeBackend"),
    "triton": BackendSpec("edge.backends.triton_backend:TritonBackend", ("torch", "triton"), cuda=True,
                          probe={"allow_interpreter": False}),  # the CPU interpreter is for tests only
    "tensorrt": BackendSpec("edge.backends.tensorrt_backend:TensorRTBackend", ("tensorrt",), cuda=True),
}  # fmt: skip
BACKENDS = tuple(REGISTRY)
# Fastest first: what `auto` tries. Engines beat fused kernels beat ORT beat eager torch.
AUTO_ORDER = ("tensorrt", "triton", "onnxruntime", "torch")
# Backends that run exported artifacts, not the PyTorch module: they need no checkpoint loaded (and no torch).
ARTIFACT_BACKENDS = tuple(n for n in BACKENDS if n in ("onnxruntime", "tensorrt"))
# HiPART on another machine (hipart-serve over HTTP, `hipart-run --server URL`): built by name with its URL, never
# listed among the local backends above, picked by `auto` or compared by hipart-bench.
REMOTE = {"remote": BackendSpec("edge.backends.remote:RemoteBackend")}


def _spec(name: str) -> BackendSpec:
    if name not in REGISTRY and name not in REMOTE:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)} or auto")
    return REGISTRY.get(name) or REMOTE[name]


def backend_class(name: str) -> type[Backend]:
    """The Backend subclass registered under `name` (its module imported now)."""
    module, _, cls = _spec(name).cls.partition(":")
    return getattr(importlib.import_module(module), cls)


def default_artifacts_dir() -> Path:
    """Where exported artifacts are looked for: $HIPART_ARTIFACTS, else ./exported (hipart-export's default --out)."""
    return default_dir()


def expected_model(loaded: Any) -> ExpectedModel | None:
    """What artifacts must have been exported from: the checkpoint or bundled model in use; None for random weights."""
    if loaded is None or not getattr(loaded, "trained", False) or loaded.model_hash in ("", "unknown"):
        return None
    from edge.weights import is_bundled

    label = "the bundled model" if is_bundled(loaded) else f"checkpoint {loaded.source}"
    return ExpectedModel(loaded.model_hash, label)


def _missing_package(spec: BackendSpec) -> str | None:
    """The first package of the backend's that is not installed (found without importing it), or None."""
    for pkg in spec.packages:
        try:
            if importlib.util.find_spec(pkg) is None:
                return pkg
        except (ImportError, ValueError):  # a broken or stubbed package counts as absent
            return pkg
    return None


def _unmet(name: str, spec: BackendSpec) -> str | None:
    """Why the cheap needs of a backend (packages, a CUDA device) are not met here; None when they are."""
    missing = _missing_package(spec)
    if missing:
        return f"{name} backend: the `{missing}` package is not installed"
    if spec.cuda and not cuda_available():
        return f"{name} backend: needs a CUDA GPU (none visible)"
    return None


def availability(
    name: str,
    artifacts: str | os.PathLike | None = None,
    expected: ExpectedModel | None = None,
    precision: str | None = None,
) -> tuple[bool, str]:
    """(ok, reason) for one backend on this machine with these artifacts (found through their manifest)."""
    spec = _spec(name)
    why = _unmet(name, spec)
    if why:
        return False, why
    art = Path(artifacts) if artifacts else default_artifacts_dir()
    return backend_class(name).availability(art, expected, precision, **spec.probe)


def available_backends(
    artifacts: str | os.PathLike | None = None, expected: ExpectedModel | None = None
) -> dict[str, tuple[bool, str]]:
    """Every backend with (ok, reason)."""
    return {name: availability(name, artifacts, expected) for name in BACKENDS}


def _short(name: str, why: str) -> str:
    """'onnxruntime: no manifest.json ...' from 'onnxruntime backend: no manifest.json ...', on one line."""
    why = " ".join(why.split()).removeprefix(f"{name} backend: ")
    return f"{name}: {why[:300] + '...' if len(why) > 300 else why}"


def resolve_auto(artifacts: str | os.PathLike | None = None, expected: ExpectedModel | None = None) -> tuple[str, str]:
    """(backend name, one-line notice) for `--backend auto`: the first available of AUTO_ORDER.

    The notice names the pick and, when faster backends were passed over, why (the fallback). On a CPU machine:
    onnxruntime when the artifacts folder holds an export of the model in use, else torch."""
    skipped = []
    for name in AUTO_ORDER:
        ok, why = availability(name, artifacts, expected)
        if ok:
            break
        skipped.append(_short(name, why))
    else:
        name = "torch"  # nothing available: torch's own error (not installed) is the clearest one
    note = f"auto picked {name!r}"
    return name, note + (f" (fastest available here; skipped {'; '.join(skipped)})" if skipped else " (the fastest)")


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
    spec = _spec(name)  # ValueError for an unknown name, before anything is imported
    missing = _missing_package(spec)
    if missing:
        raise BackendUnavailable(f"{name} backend: the `{missing}` package is not installed")
    art = Path(artifacts) if artifacts else default_artifacts_dir()
    cls = backend_class(name)
    if cls.needs_model and model is None:
        raise BackendError(f"{name} backend needs the PyTorch model (a checkpoint)")
    return cls.create(BackendArgs(model, art, device, model_hash, min_conf, threads, precision, expected))
