"""Accuracy drift of FP16 / INT8 artifacts against FP32 in onnxruntime, and sensitivity-based INT8 fallback.

Metrics per precision on fixed inputs: per-output max |error| vs FP32, token agreement, MPJPE between the
precision's and FP32's pose3d (mm; an upper bound on |MPJPE delta| by the triangle inequality), and, when
ground truth is given, the MPJPE and PA-MPJPE deltas against it.
Fallback: each quantized layer (a module block: all its MatMuls over every unrolled step) is left
unquantised alone and the drift score re-measured end to end (its sensitivity); layers are then restored
to FP32 most-sensitive first, keeping a restoration only when it lowers the measured drift, until the
thresholds are met or the trial budget is spent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from calib.quantize import Feeds, quantized_nodes, strip_qdq
from hipart.atomic_write import write_bytes_atomic
from hipart.metrics import mpjpe, p_mpjpe

MM = 1000.0  # pose3d is in metres
# Drift target for artifacts without a pose3d output (decode_step, densify): the largest mean |error| of any
# float output against FP32, in that output's own units (normalised coordinates, logits, cached keys/values).
# 0.05 is 1/40 of the normalised image half-width for coordinates; `hipart-export --max-output-err` sets it.
DEFAULT_MAX_OUTPUT_ERR = 0.05


@dataclass
class Drift:
    """Drift of one model's outputs against the FP32 outputs."""

    precision: str
    max_abs_err: dict[str, float] = field(default_factory=dict)
    mean_abs_err: dict[str, float] = field(default_factory=dict)
    token_agreement: float | None = None
    mpjpe_vs_fp32_mm: float | None = None
    mpjpe_delta_mm: float | None = None
    pa_mpjpe_delta_mm: float | None = None

    @property
    def worst_mean_abs_err(self) -> float:
        """Largest mean |error| over the float outputs (0.0 when there are none)."""
        return max(self.mean_abs_err.values(), default=0.0)

    def within(self, max_mpjpe_mm: float, min_agreement: float, max_output_err: float) -> bool:
        """True when token agreement and pose3d drift (no pose3d: worst mean |error|) meet the thresholds."""
        ok = self.token_agreement is None or self.token_agreement >= min_agreement
        if self.mpjpe_vs_fp32_mm is not None:
            return ok and self.mpjpe_vs_fp32_mm <= max_mpjpe_mm
        return ok and self.worst_mean_abs_err <= max_output_err


def reference_session(path: str | Path | onnx.ModelProto) -> ort.InferenceSession:
    """A CPU session that runs Q/DQ pairs as written (quantise, dequantise, float op), never fused.

    onnxruntime otherwise fuses Q/DQ into integer kernels chosen by the CPU's instruction set (u8s8 on AVX2
    saturates int16 pair sums, VNNI does not), so the same INT8 model drifts differently per machine. The
    unfused graph is the Q/DQ semantics TensorRT implements (int32 accumulation == float up to rounding), and
    it gives the same drift on every x86-64 CPU.
    """
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    src = path.SerializeToString() if isinstance(path, onnx.ModelProto) else str(path)
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


def run(path: str | Path | onnx.ModelProto, feeds: Feeds, batch: int = 64) -> dict[str, np.ndarray]:
    """All outputs of a model over `feeds` (arrays mini-batched, or a list of ready feed dicts), concatenated."""
    sess = reference_session(path)
    names = [o.name for o in sess.get_outputs()]
    if isinstance(feeds, dict):
        n = len(next(iter(feeds.values())))
        feeds = [{k: v[i : i + batch] for k, v in feeds.items()} for i in range(0, n, batch)]
    chunks = [sess.run(names, f) for f in feeds]
    return {name: np.concatenate([c[j] for c in chunks]) for j, name in enumerate(names)}


def compare(precision: str, got: dict, ref: dict, pose_gt: np.ndarray | None = None) -> Drift:
    """Drift of outputs `got` against FP32 outputs `ref` (and ground-truth 3D if given)."""
    d = Drift(precision)
    agree, total = 0, 0
    for name, r in ref.items():
        g = got[name]
        if np.issubdtype(r.dtype, np.integer):
            agree += int((g == r).sum())
            total += r.size
        else:
            err = np.abs(g.astype(np.float64) - r)
            d.max_abs_err[name] = float(err.max())
            d.mean_abs_err[name] = float(err.mean())
    d.token_agreement = agree / total if total else None
    if "pose3d" in ref:
        d.mpjpe_vs_fp32_mm = float(mpjpe(got["pose3d"], ref["pose3d"]).mean()) * MM
        if pose_gt is not None:
            g, r = got["pose3d"], ref["pose3d"]
            d.mpjpe_delta_mm = float(mpjpe(g, pose_gt).mean() - mpjpe(r, pose_gt).mean()) * MM
            d.pa_mpjpe_delta_mm = float(p_mpjpe(g, pose_gt).mean() - p_mpjpe(r, pose_gt).mean()) * MM
    return d


def report(models: dict[str, str | Path], feeds: Feeds, pose_gt: np.ndarray | None = None) -> dict:
    """Drift of every non-'fp32' entry of `models` against models['fp32'] on `feeds`."""
    ref = run(models["fp32"], feeds)
    return {p: compare(p, run(m, feeds), ref, pose_gt) for p, m in models.items() if p != "fp32"}


def score(d: Drift, max_mpjpe_mm: float, min_agreement: float,
          max_output_err: float = DEFAULT_MAX_OUTPUT_ERR) -> float:
    """Scalar badness used to rank layers: each drift term as a fraction of its budget, summed."""
    s = 0.0 if d.token_agreement is None else (1.0 - d.token_agreement) / max(1.0 - min_agreement, 1e-6)
    if d.mpjpe_vs_fp32_mm is not None:
        return s + d.mpjpe_vs_fp32_mm / max_mpjpe_mm
    return s + d.worst_mean_abs_err / max(max_output_err, 1e-12)


def layer_key(node_name: str) -> str:
    """Layer (module block) of a node: the scope up to its first indexed block, unrolled-call suffixes removed.

    '/densify/gcsab.0/attn_3/qkv/MatMul' -> 'densify/gcsab.0'; '/densify/head_s_2/MatMul' -> 'densify/head_s'.
    """
    scopes = [re.sub(r"_\d+$", "", c) for c in node_name.strip("/").split("/")[:-1]] or [node_name]
    for i, c in enumerate(scopes):
        if re.search(r"\.\d+$", c):
            return "/".join(scopes[: i + 1])
    return "/".join(scopes)


def layer_groups(qmodel: onnx.ModelProto) -> dict[str, list[str]]:
    """Quantized nodes grouped by layer (every unrolled step of a module block shares a group)."""
    groups: dict[str, list[str]] = {}
    for name in quantized_nodes(qmodel):
        groups.setdefault(layer_key(name), []).append(name)
    return groups


@dataclass
class FallbackResult:
    """Outcome of the INT8 fallback search."""

    path: Path
    drift: Drift
    kept_fp32: list[str]
    sensitivity: dict[str, float]
    met: bool
    history: list[tuple[int, float, float | None]] = field(default_factory=list)  # (layers kept, mpjpe, agreement)


def fallback(
    fp32_path: str | Path,
    qdq_path: str | Path,
    out_path: str | Path,
    feeds: Feeds,
    max_mpjpe_mm: float = 1.0,
    min_agreement: float = 0.98,
    max_layers: int | None = None,
    max_trials: int | None = 24,
    max_output_err: float = DEFAULT_MAX_OUTPUT_ERR,
    progress: Callable[[str], None] = lambda msg: None,
) -> FallbackResult:
    """Restore the most sensitive quantized layers to FP32 until drift is within the thresholds."""
    fp32, qmodel = onnx.load(str(fp32_path)), onnx.load(str(qdq_path))
    ref = run(fp32, feeds)
    base = compare("int8", run(qmodel, feeds), ref)
    groups = layer_groups(qmodel)
    result = FallbackResult(Path(out_path), base, [], {}, base.within(max_mpjpe_mm, min_agreement, max_output_err))
    result.history.append((0, base.mpjpe_vs_fp32_mm, base.token_agreement))
    if not result.met and (max_trials is None or max_trials > 0):
        base_score = score(base, max_mpjpe_mm, min_agreement, max_output_err)
        progress(f"measuring the sensitivity of {len(groups)} quantized layers (each left in FP32 alone)")
        for key, nodes in groups.items():
            d = compare("int8", run(strip_qdq(qmodel, fp32, nodes), feeds), ref)
            result.sensitivity[key] = base_score - score(d, max_mpjpe_mm, min_agreement, max_output_err)
        ranked = sorted(result.sensitivity, key=result.sensitivity.get, reverse=True)
        limit = len(ranked) if max_layers is None else min(max_layers, len(ranked))
        kept: list[str] = []
        model, best = qmodel, base_score
        for trial_no, key in enumerate(ranked):  # most sensitive first; keep a restoration only if it helps
            if len(kept) >= limit or (max_trials is not None and trial_no >= max_trials):
                break
            trial = strip_qdq(qmodel, fp32, [n for k in kept + [key] for n in groups[k]])
            d = compare("int8", run(trial, feeds), ref)
            s = score(d, max_mpjpe_mm, min_agreement, max_output_err)
            progress(f"fallback: restore {key} -> agreement {d.token_agreement}, mpjpe {d.mpjpe_vs_fp32_mm}, "
                     f"mean|err| {d.worst_mean_abs_err:.3g}")
            if s >= best:
                continue
            kept.append(key)
            model, best = trial, s
            result.drift, result.kept_fp32 = d, list(kept)
            result.history.append((len(kept), d.mpjpe_vs_fp32_mm, d.token_agreement))
            if d.within(max_mpjpe_mm, min_agreement, max_output_err):
                result.met = True
                break
        qmodel = model
    write_bytes_atomic(out_path, qmodel.SerializeToString())
    return result
