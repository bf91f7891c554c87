"""On-disk engine cache keyed by what makes an engine invalid: model, GPU + compute capability, TensorRT, precision."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from hipart.atomic_write import write_bytes_atomic

SIDECAR_SUFFIX = ".json"


class EngineMismatchError(RuntimeError):
    """An engine was built for another device, TensorRT version, model or precision."""


@dataclass(frozen=True)
class EngineKey:
    """The identity of a serialized engine; any field changing means the engine must be rebuilt."""

    model_hash: str
    gpu_name: str
    compute_capability: str
    trt_version: str
    precision: str

    def digest(self) -> str:
        """Short stable hash of the key (part of the file name)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def file_stem(self, artifact: str) -> str:
        """Readable file stem: artifact, precision, GPU, sm, TensorRT version, digest."""
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.gpu_name).strip("-").lower() or "gpu"
        cc = self.compute_capability.replace(".", "")
        return f"{artifact}.{self.precision}.{gpu}.sm{cc}.trt{self.trt_version}.{self.digest()}"


def mismatches(stored: dict, current: EngineKey) -> list[str]:
    """Fields where a sidecar's key differs from the current key, as 'field: stored != current' lines."""
    out = []
    for field, value in asdict(current).items():
        if str(stored.get(field)) != str(value):
            out.append(f"{field}: engine has {stored.get(field)!r}, this system has {value!r}")
    return out


class EngineCache:
    """Engines under root/<stem>.engine with root/<stem>.json sidecars, written atomically."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def paths(self, artifact: str, key: EngineKey) -> tuple[Path, Path]:
        stem = key.file_stem(artifact)
        return self.root / f"{stem}.engine", self.root / f"{stem}{SIDECAR_SUFFIX}"

    def store(self, artifact: str, key: EngineKey, engine: bytes, extra: dict | None = None) -> Path:
        """Write engine then sidecar (the sidecar last, so a present sidecar implies a complete engine)."""
        engine_path, sidecar_path = self.paths(artifact, key)
        write_bytes_atomic(engine_path, engine)
        sidecar = {"artifact": artifact, **asdict(key), "engine_bytes": len(engine), **(extra or {})}
        write_bytes_atomic(sidecar_path, json.dumps(sidecar, indent=2, sort_keys=True).encode())
        return engine_path

    def lookup(self, artifact: str, key: EngineKey) -> Path | None:
        """Path of a cached engine for exactly this key, or None."""
        engine_path, sidecar_path = self.paths(artifact, key)
        if engine_path.exists() and sidecar_path.exists():
            verify_sidecar(sidecar_path, key)
            return engine_path
        return None


def verify_sidecar(sidecar_path: str | Path, current: EngineKey) -> dict:
    """Load an engine's sidecar and raise EngineMismatchError (naming every differing field) if it does not fit."""
    sidecar_path = Path(sidecar_path)
    if not sidecar_path.exists():
        raise EngineMismatchError(f"{sidecar_path} missing: cannot tell which device/TensorRT built this engine")
    stored = read_sidecar(sidecar_path)
    diff = mismatches(stored, current)
    if diff:
        raise EngineMismatchError(
            f"engine {sidecar_path.with_suffix('.engine').name} was built elsewhere; rebuild it here "
            f"(hipart-export --int8/--fp16):\n  " + "\n  ".join(diff)
        )
    return stored


def read_sidecar(sidecar_path: str | Path) -> dict:
    """An engine sidecar's JSON object; EngineMismatchError when it is not UTF-8 JSON holding an object."""
    sidecar_path = Path(sidecar_path)
    try:
        stored = json.loads(sidecar_path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EngineMismatchError(f"{sidecar_path} is not valid JSON: {why}") from None
    if not isinstance(stored, dict):
        raise EngineMismatchError(f"{sidecar_path} is not an engine sidecar (a JSON object expected)")
    return stored
