"""onnxruntime backend: runs the exported `hipart.onnx` (or `densify.onnx` + `lift.onnx`) named by the manifest."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends.base import Backend, BackendArgs, BackendError, BackendUnavailable, Result
from edge.occlusion import DEFAULT_MIN_CONF
from export.manifest import (
    MANIFEST_NAME,
    ExpectedModel,
    ManifestError,
    ManifestMissing,
    load_manifest,
    resolve,
)

# Output names of the artifacts (docs/ARCHITECTURE.md §5); aliases accepted so either naming works.
_ALIASES = {
    "dense": ("dense", "x_d"),
    "fine": ("fine", "x_f"),
    "pose3d": ("pose3d", "pose_3d", "x_3d"),
    "q_s": ("q_s",),
    "q_d": ("q_d",),
}


def _import_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise BackendUnavailable(f"onnxruntime backend: onnxruntime is not installed ({e})") from None
    return ort


def find_artifacts(path: str | os.PathLike, expected: ExpectedModel | None = None) -> dict[str, Path]:
    """FP32 ONNX files by name ('hipart', else 'densify' + 'lift') from a folder's manifest, or a .onnx file."""
    p = Path(path)
    if p.is_file():
        return {"hipart": p}
    try:
        man = load_manifest(p)
    except ManifestMissing:
        return _without_manifest(p)
    except ManifestError as e:
        raise BackendError(f"onnxruntime backend: {e}") from None
    split = not man.select("hipart", "fp32", "onnx") and all(man.select(n, "fp32", "onnx") for n in ("densify", "lift"))
    try:
        if split:
            return {n: resolve(p, n, "fp32", expected=expected, man=man)[0] for n in ("densify", "lift")}
        return {"hipart": resolve(p, "hipart", "fp32", expected=expected, man=man)[0]}
    except ManifestError as e:
        raise BackendError(f"onnxruntime backend: {e}") from None


def _without_manifest(p: Path) -> dict[str, Path]:
    """A folder exported before the manifest existed: hipart.onnx, or densify.onnx + lift.onnx, as before."""
    found = {name: p / f"{name}.onnx" for name in ("hipart", "densify", "lift") if (p / f"{name}.onnx").is_file()}
    if "hipart" in found:
        return {"hipart": found["hipart"]}
    if "densify" in found and "lift" in found:
        return {"densify": found["densify"], "lift": found["lift"]}
    raise BackendError(
        f"onnxruntime backend: no {MANIFEST_NAME} and no hipart.onnx (or densify.onnx + lift.onnx) in {p}; "
        f"run `hipart-export --out {p}` (it writes the ONNX files and {p / MANIFEST_NAME})"
    )


class OnnxRuntimeBackend(Backend):
    """HiPART through onnxruntime; one session for hipart.onnx, or two (densify, lift) for stage timings."""

    name = "onnxruntime"

    @classmethod
    def availability(
        cls, artifacts: str | os.PathLike | None = None, expected: ExpectedModel | None = None,
        precision: str | None = None,
    ) -> tuple[bool, str]:  # fmt: skip
        """Needs onnxruntime and, when `artifacts` is given, the FP32 ONNX files its manifest names for `expected`."""
        try:
            _import_ort()
        except BackendUnavailable as e:
            return False, str(e)
        if artifacts is not None:
            try:
                find_artifacts(artifacts, expected)
            except BackendError as e:
                return False, str(e)
        return True, ""

    @classmethod
    def create(cls, a: BackendArgs) -> OnnxRuntimeBackend:
        """The registry's builder ('auto' device: the CUDA EP when onnxruntime has it); `model` is not used."""
        return cls(a.artifacts, device=a.device, threads=a.threads, model_hash=a.model_hash, min_conf=a.min_conf,
                   expected=a.expected)  # fmt: skip

    def __init__(
        self,
        artifacts: str | os.PathLike,
        device: str = "cpu",
        threads: int | None = None,
        model_hash: str = "unknown",
        min_conf: float = DEFAULT_MIN_CONF,
        expected: ExpectedModel | None = None,
    ):
        super().__init__(model_hash, min_conf)
        ort = _import_ort()
        self._ort = ort
        files = find_artifacts(artifacts, expected)
        folder = Path(artifacts)
        self.manifest = folder / MANIFEST_NAME if (folder / MANIFEST_NAME).is_file() else None
        providers = ["CPUExecutionProvider"]
        if device == "auto":
            device = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable("onnxruntime backend: CUDA EP not available (install onnxruntime-gpu)")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        self.device = device
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.log_severity_level = 3
        self.sessions = {}
        for name, f in files.items():
            try:
                self.sessions[name] = ort.InferenceSession(str(f), sess_options=opts, providers=providers)
            except Exception as e:  # InvalidProtobuf, Fail, NoSuchFile, ... all mean the same to a user
                first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
                raise BackendError(
                    f"onnxruntime backend: cannot load {f} (corrupt or not an ONNX model?): {first}"
                ) from None
        self.files = files
        self.artifact_hash = self._artifact_hash()
        known = expected is not None and expected.model_hash not in ("", "unknown")
        if known and self.artifact_hash and self.artifact_hash != expected.model_hash:  # a file given without manifest
            where = ", ".join(str(f) for f in files.values())
            raise BackendError(
                f"onnxruntime backend: {where} was exported from model {self.artifact_hash}; {expected.label} is "
                f"{expected.model_hash}: re-run `hipart-export` for it"
            )

    def _artifact_hash(self) -> str | None:
        """The model hash hipart-export wrote into the ONNX metadata (`hipart.model_hash`), if any."""
        for name, sess in self.sessions.items():
            try:
                h = sess.get_modelmeta().custom_metadata_map.get("hipart.model_hash")
            except UnicodeDecodeError:  # onnxruntime hands metadata back as str: invalid UTF-8 fails there
                raise BackendError(
                    f"onnxruntime backend: {self.files[name]} carries metadata that is not valid UTF-8 (corrupt file?)"
                ) from None
            if h:
                return h
        return None

    @staticmethod
    def _outputs(sess: Any, values: list[np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in sess.get_outputs()]
        out = {}
        for key, aliases in _ALIASES.items():
            for a in aliases:
                if a in names:
                    out[key] = values[names.index(a)]
                    break
        return out

    def _input_name(self, sess: Any) -> str:
        return sess.get_inputs()[0].name

    def _infer(self, x_s: np.ndarray) -> Result:
        timings = {}
        if "hipart" in self.sessions:
            s = self.sessions["hipart"]
            t0 = time.perf_counter()
            out = self._outputs(s, s.run(None, {self._input_name(s): x_s}))
            timings["hipart"] = (time.perf_counter() - t0) * 1e3
        else:
            s, lift = self.sessions["densify"], self.sessions["lift"]
            t0 = time.perf_counter()
            out = self._outputs(s, s.run(None, {self._input_name(s): x_s}))
            t1 = time.perf_counter()
            pts = np.concatenate([x_s, out["dense"], out["fine"]], 1).astype(np.float32)
            out["pose3d"] = lift.run(None, {self._input_name(lift): pts})[0]
            timings.update(densify=(t1 - t0) * 1e3, lift=(time.perf_counter() - t1) * 1e3)
        missing = sorted(set(_ALIASES) - set(out))
        if missing:
            raise BackendError(f"onnxruntime backend: model outputs lack {missing}; re-export with `hipart-export`")
        return Result(
            dense=out["dense"].astype(np.float32),
            fine=out["fine"].astype(np.float32),
            pose3d=out["pose3d"].astype(np.float32),
            tokens=np.concatenate([out["q_s"], out["q_d"]], 1).astype(np.int64),
            timings=timings,
        )

    def info(self) -> dict[str, Any]:
        """Adds the onnxruntime version, execution providers and artifact files."""
        s = next(iter(self.sessions.values()))
        return {
            **super().info(),
            "onnxruntime": self._ort.__version__,
            "providers": s.get_providers(),
            "artifacts": {k: str(v) for k, v in self.files.items()},
            "manifest": str(self.manifest) if self.manifest else None,
            "artifact_model_hash": self.artifact_hash,
        }
