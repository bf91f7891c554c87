"""onnxruntime backend: runs the exported ONNX artifacts named by the manifest, in one of three modes.

- "step" (preferred): `decode_step.onnx` looped 16 times here in numpy (KV cache passed back each step), then
  `detokenize.onnx` (MSST decoders) and `lift.onnx`. Three small graphs: sessions start in well under a second.
- "hipart": the one-graph `hipart.onnx` (all 16 decode steps unrolled, ~18k nodes: ~40 s to create the session).
- "split": `densify.onnx` + `lift.onnx` (exports without decode_step/detokenize and without hipart).

$HIPART_ORT_MODE (step | hipart | split) asks for one mode instead of the first one the manifest allows.

No torch here: the generation order, KV cache shape and lifter input come from the artifacts' ONNX metadata.
"""

from __future__ import annotations

import json
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

MODES = ("step", "hipart", "split")
MODE_ENV = "HIPART_ORT_MODE"  # step | hipart | split: overrides the automatic choice (e.g. hipart for batch throughput)
MODE_ARTIFACTS = {"step": ("decode_step", "detokenize", "lift"), "hipart": ("hipart",), "split": ("densify", "lift")}

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


def mode_of(files: dict[str, Path]) -> str:
    """The execution mode a set of artifact files (as `find_artifacts` returns them) runs in."""
    return next(m for m, names in MODE_ARTIFACTS.items() if set(names) == set(files))


def find_artifacts(
    path: str | os.PathLike, expected: ExpectedModel | None = None, mode: str | None = None
) -> dict[str, Path]:
    """FP32 ONNX files by name from a folder's manifest (or a .onnx file: 'hipart').

    With no `mode`: 'decode_step' + 'detokenize' + 'lift' when the manifest lists all three (mode "step"), else
    'hipart', else 'densify' + 'lift'. A `mode` asks for that set (error naming what is missing otherwise).
    """
    if mode is not None and mode not in MODES:
        raise BackendError(f"onnxruntime backend: unknown mode {mode!r}; choose from {', '.join(MODES)}")
    p = Path(path)
    if p.is_file():
        if mode not in (None, "hipart"):
            raise BackendError(f"onnxruntime backend: mode {mode!r} needs an artifacts folder, not the file {p}")
        return {"hipart": p}
    try:
        man = load_manifest(p)
    except ManifestMissing:
        return _without_manifest(p, mode)
    except ManifestError as e:
        raise BackendError(f"onnxruntime backend: {e}") from None
    if mode is None:
        listed = [m for m, names in MODE_ARTIFACTS.items() if all(man.select(n, "fp32", "onnx") for n in names)]
        mode = listed[0] if listed else "hipart"  # nothing complete: resolve() says what is missing, by name
    try:
        return {n: resolve(p, n, "fp32", expected=expected, man=man)[0] for n in MODE_ARTIFACTS[mode]}
    except ManifestError as e:
        raise BackendError(f"onnxruntime backend: {e}") from None


def _without_manifest(p: Path, mode: str | None = None) -> dict[str, Path]:
    """A folder exported before the manifest existed: hipart.onnx, or densify.onnx + lift.onnx, as before."""
    found = {name: p / f"{name}.onnx" for name in ("hipart", "densify", "lift") if (p / f"{name}.onnx").is_file()}
    if "hipart" in found and mode in (None, "hipart"):
        return {"hipart": found["hipart"]}
    if "densify" in found and "lift" in found and mode in (None, "split"):
        return {"densify": found["densify"], "lift": found["lift"]}
    if mode == "step":
        raise BackendError(f"onnxruntime backend: mode 'step' reads decode_step, detokenize and lift from "
                           f"{p / MANIFEST_NAME}, which is missing; run `hipart-export --out {p}`")  # fmt: skip
    raise BackendError(
        f"onnxruntime backend: no {MANIFEST_NAME} and no hipart.onnx (or densify.onnx + lift.onnx) in {p}; "
        f"run `hipart-export --out {p}` (it writes the ONNX files and {p / MANIFEST_NAME})"
    )


class OnnxRuntimeBackend(Backend):
    """HiPART through onnxruntime: decode_step looped + detokenize + lift ("step"), hipart.onnx, or densify + lift."""

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
                find_artifacts(artifacts, expected, os.environ.get(MODE_ENV) or None)
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
        mode: str | None = None,
    ):
        super().__init__(model_hash, min_conf)
        ort = _import_ort()
        self._ort = ort
        asked = mode or os.environ.get(MODE_ENV) or None
        files = find_artifacts(artifacts, expected, asked)
        self.mode = mode_of(files)
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
        self._step = _StepLoop(self.sessions, files) if self.mode == "step" else None
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
        if self._step is not None:
            out = self._step(x_s, timings)
        elif "hipart" in self.sessions:
            s = self.sessions["hipart"]
            t0 = time.perf_counter()
            out = self._outputs(s, s.run(None, {self._input_name(s): x_s}))
            timings["hipart"] = (time.perf_counter() - t0) * 1e3
        else:
            s, lift = self.sessions["densify"], self.sessions["lift"]
            t0 = time.perf_counter()
            out = self._outputs(s, s.run(None, {self._input_name(s): x_s}))
            t1 = time.perf_counter()
            pts = lift_points(x_s, out["dense"], out["fine"], _static_dims(lift.get_inputs()[0])[0])
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
            "mode": self.mode,
            "artifacts": {k: str(v) for k, v in self.files.items()},
            "manifest": str(self.manifest) if self.manifest else None,
            "artifact_model_hash": self.artifact_hash,
        }


def lift_points(x_s: np.ndarray, dense: np.ndarray, fine: np.ndarray, n: int) -> np.ndarray:
    """The lifter's input [B, n, 2]: x_s (17, lifter_input sparse), + dense (65, dense), + fine (161, hierarchy)."""
    parts = {17: [x_s], 17 + dense.shape[1]: [x_s, dense], 17 + dense.shape[1] + fine.shape[1]: [x_s, dense, fine]}
    if n not in parts:
        raise BackendError(f"onnxruntime backend: lift.onnx takes {n} points; expected one of {sorted(parts)}")
    return np.ascontiguousarray(np.concatenate(parts[n], 1), np.float32)


def _static_dims(arg: Any) -> list[int]:
    """The fixed (non-batch) dims of a session input/output."""
    dims = list(arg.shape[1:])
    if not all(isinstance(d, int) for d in dims):
        raise BackendError(f"onnxruntime backend: input {arg.name} has non-static dims {arg.shape}; re-export")
    return dims


def _extra(sess: Any) -> dict[str, str]:
    """The artifact's `hipart.extra` metadata (runtime facts written by export.artifacts.runtime_metadata)."""
    try:
        raw = sess.get_modelmeta().custom_metadata_map.get("hipart.extra", "{}")
        extra = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return {}
    return extra if isinstance(extra, dict) else {}


class _StepLoop:
    """The greedy decode as a Python loop over decode_step.onnx, then detokenize.onnx and lift.onnx (numpy only).

    Mirrors export.hipart_graphs.run_step_loop (tested against HiPART.forward): step i feeds the pair decoded at
    step i-1 and the K/V cache returned by step i-1; tokens come back in generation order and are put in canonical
    order with the exported `inverse_order`.
    """

    def __init__(self, sessions: dict[str, Any], files: dict[str, Path]):
        self.decode, self.detok, self.lift = (sessions[n] for n in MODE_ARTIFACTS["step"])
        meta = _extra(self.detok) or _extra(self.decode)
        if "inverse_order" not in meta:
            raise BackendError(
                f"onnxruntime backend: {files['detokenize']} lacks the generation order in its metadata "
                "(hipart.extra inverse_order); re-run `hipart-export` to write it"
            )
        self.inv = np.asarray(json.loads(meta["inverse_order"]), np.int64)
        self.steps = int(meta.get("decode_steps", len(self.inv)))
        ins = {i.name: i for i in self.decode.get_inputs()}
        self.cache = tuple(_static_dims(ins["past_k"]))
        if "kv_cache" in meta and list(self.cache) != json.loads(meta["kv_cache"]):
            raise BackendError(f"onnxruntime backend: {files['decode_step']} KV cache {list(self.cache)} differs from "
                               f"its metadata {meta['kv_cache']}; re-run `hipart-export`")  # fmt: skip
        self.r = _static_dims(ins["prev_q_d"])[0]
        self.lift_input = self.lift.get_inputs()[0].name
        self.lift_n = _static_dims(self.lift.get_inputs()[0])[0]
        want = int(meta["lift_points"]) if str(meta.get("lift_points", "")).isdigit() else None  # as exported
        if want is not None and want != self.lift_n:
            raise BackendError(
                f"onnxruntime backend: {files['lift']} takes {self.lift_n} points but the model's lifter_input is "
                f"{meta.get('lifter_input')} ({want}); re-run `hipart-export`"
            )
        self.decode_out = ["q_s", "q_d", "present_k", "present_v"]

    def tokens(self, x_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(q_s [B, P], q_d [B, P*r]) int64 in canonical part order."""
        b, p, r = x_s.shape[0], self.steps, self.r
        k = np.zeros((b, *self.cache), np.float32)
        v = np.zeros_like(k)
        q_s, q_d = np.zeros(b, np.int64), np.zeros((b, r), np.int64)
        qs, qd = np.empty((b, p), np.int64), np.empty((b, p, r), np.int64)
        for i in range(p):
            feeds = {"x_s": x_s, "step": np.array([i], np.int64), "prev_q_s": q_s, "prev_q_d": q_d,
                     "past_k": k, "past_v": v}  # fmt: skip
            q_s, q_d, k, v = self.decode.run(self.decode_out, feeds)
            qs[:, i], qd[:, i] = q_s, q_d
        return qs[:, self.inv], qd[:, self.inv].reshape(b, p * r)

    def __call__(self, x_s: np.ndarray, timings: dict[str, float]) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        q_s, q_d = self.tokens(x_s)
        t1 = time.perf_counter()
        dense, fine = self.detok.run(["dense", "fine"], {"q_s": q_s, "q_d": q_d})
        t2 = time.perf_counter()
        pose3d = self.lift.run(None, {self.lift_input: lift_points(x_s, dense, fine, self.lift_n)})[0]
        t3 = time.perf_counter()
        timings.update(decode=(t1 - t0) * 1e3, msst=(t2 - t1) * 1e3, lift=(t3 - t2) * 1e3)
        return {"dense": dense, "fine": fine, "pose3d": pose3d, "q_s": q_s, "q_d": q_d}
