"""Accuracy drift of FP16 / INT8 artifacts against FP32 in onnxruntime, and sensitivity-based INT8 fallback.

Metrics per precision on fixed inputs: per-output max |error| vs FP32, token agreement, MPJPE between the
precision's and FP32's pose3d (mm; an upper bound on |MPJPE delta| by the triangle inequality), and, when
ground truth is given, the MPJPE and PA-MPJPE deltas against it.
Fallback: each quantized layer (a weight tensor, shared by all unrolled steps; activation x activation
products grouped per attention site) is left unquantised alone and the drift score re-measured; layers
are then restored to FP32 most-sensitive first until the drift thresholds are met.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from calib.pose_metrics import mpjpe, p_mpjpe
from calib.quantize import Feeds, quantized_nodes, strip_qdq
from export.atomic_write import write_bytes_atomic
from export.parity import session

MM = 1000.0  # pose3d is in metres


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

    def within(self, max_mpjpe_mm: float, min_agreement: float, max_rel: float = 0.05) -> bool:
        """True when token agreement and pose3d drift meet the thresholds (no pose3d: mean rel. error)."""
        ok = self.token_agreement is None or self.token_agreement >= min_agreement
        if self.mpjpe_vs_fp32_mm is not None:
            return ok and self.mpjpe_vs_fp32_mm <= max_mpjpe_mm
        return ok and all(v <= max_rel for v in self.mean_abs_err.values())


def run(path: str | Path | onnx.ModelProto, feeds: Feeds, batch: int = 64) -> dict[str, np.ndarray]:
    """All outputs of a model over `feeds` (arrays mini-batched, or a list of ready feed dicts), concatenated."""
    sess = session(path.SerializeToString() if isinstance(path, onnx.ModelProto) else path)
    names = [o.name for o in sess.get_outputs()]
    if isinstance(feeds, dict):
        n = len(next(iter(feeds.values())))
        feeds = [{k: v[i : i + batch] for k, v in feeds.items()} for i in range(0, n, batch)]
    chunks = [sess.run(names, f) for f in feeds]
    return {name: np.concatenate([c[j] for c in chunks]) for j, name in enumerate(names)}


def subset(feeds: Feeds, n: int) -> Feeds:
    """The first `n` samples (arrays) or the first `n` feed dicts (list) - for the cheaper probes."""
    return {k: v[:n] for k, v in feeds.items()} if isinstance(feeds, dict) else feeds[:n]


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
        d.mpjpe_vs_fp32_mm = mpjpe(got["pose3d"], ref["pose3d"]) * MM
        if pose_gt is not None:
            d.mpjpe_delta_mm = (mpjpe(got["pose3d"], pose_gt) - mpjpe(ref["pose3d"], pose_gt)) * MM
            d.pa_mpjpe_delta_mm = (p_mpjpe(got["pose3d"], pose_gt) - p_mpjpe(ref["pose3d"], pose_gt)) * MM
    return d


def report(models: dict[str, str | Path], feeds: Feeds, pose_gt: np.ndarray | None = None) -> dict:
    """Drift of every non-'fp32' entry of `models` against models['fp32'] on `feeds`."""
    ref = run(models["fp32"], feeds)
    return {p: compare(p, run(m, feeds), ref, pose_gt) for p, m in models.items() if p != "fp32"}


def score(d: Drift, max_mpjpe_mm: float, min_agreement: float) -> float:
    """Scalar badness used to rank layers: token disagreement beyond budget + pose3d (or coord) drift."""
    s = 0.0 if d.token_agreement is None else (1.0 - d.token_agreement) / max(1.0 - min_agreement, 1e-6)
    if d.mpjpe_vs_fp32_mm is not None:
        return s + d.mpjpe_vs_fp32_mm / max_mpjpe_mm
    return s + sum(d.mean_abs_err.values())


def layer_key(node_name: str) -> str:
    """Layer of a node: its name with the unrolled-call suffixes of module scopes removed (attn_3/ -> attn/)."""
    return re.sub(r"_\d+(?=/)", "", node_name)


def layer_groups(qmodel: onnx.ModelProto) -> dict[str, list[str]]:
    """Quantized nodes grouped by layer (all unrolled steps of one module share a group)."""
    groups: dict[str, list[str]] = {}
    for name in quantized_nodes(qmodel):
        groups.setdefault(layer_key(name), []).append(name)
    return groups


def local_errors(qmodel: onnx.ModelProto, fp32: onnx.ModelProto, feeds: Feeds) -> dict[str, float]:
    """Per quantized node: ||op(dq(inputs)) - op(inputs)|| / ||op(inputs)||, measured in one int8 run.

    The activations are the int8 model's own, so each node is charged only with the error it adds.
    """
    g = qmodel.graph
    prod = {o: n for n in g.node for o in n.output}
    ref_nodes = {n.name: n for n in fp32.graph.node}
    fp32_inits = {i.name: onnx.numpy_helper.to_array(i) for i in fp32.graph.initializer}
    plan, expose = {}, set()
    for name in quantized_nodes(qmodel):
        node = next(n for n in g.node if n.name == name)
        pairs = []
        for k, inp in enumerate(node.input[:2]):
            dq = prod.get(inp)
            if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in prod:
                pre = prod[dq.input[0]].input[0]  # the activation before QuantizeLinear
                pairs.append((inp, pre))
                expose.update((inp, pre))
            else:
                orig = ref_nodes[name].input[k]
                pairs.append((inp, orig))
                expose.add(inp)
        plan[name] = (node, pairs)
    probe = onnx.ModelProto()
    probe.CopyFrom(qmodel)
    have = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in sorted(expose - have))
    # one batch: constant tensors (dequantized weights) must not be concatenated across feed dicts
    vals = run(probe, feeds if isinstance(feeds, dict) else feeds[len(feeds) // 2], batch=1 << 30)
    errors = {}
    for name, (node, pairs) in plan.items():
        got = [vals[q] for q, _ in pairs]
        ref = [vals[p] if p in vals else fp32_inits[p] for _, p in pairs]
        if node.op_type == "Gemm":
            ta = next((a.i for a in node.attribute if a.name == "transA"), 0)
            tb = next((a.i for a in node.attribute if a.name == "transB"), 0)
            got = [got[0].T if ta else got[0], got[1].T if tb else got[1]]
            ref = [ref[0].T if ta else ref[0], ref[1].T if tb else ref[1]]
        y_q, y = np.matmul(*got), np.matmul(*ref)
        errors[name] = float(np.linalg.norm(y_q - y) / (np.linalg.norm(y) + 1e-12))
    return errors


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
    progress: Callable[[str], None] = lambda msg: None,
) -> FallbackResult:
    """Restore the most sensitive quantized layers to FP32 until drift is within the thresholds."""
    fp32, qmodel = onnx.load(str(fp32_path)), onnx.load(str(qdq_path))
    ref = run(fp32, feeds)
    base = compare("int8", run(qmodel, feeds), ref)
    groups = layer_groups(qmodel)
    result = FallbackResult(Path(out_path), base, [], {}, base.within(max_mpjpe_mm, min_agreement))
    result.history.append((0, base.mpjpe_vs_fp32_mm, base.token_agreement))
    if not result.met:
        base_score = score(base, max_mpjpe_mm, min_agreement)
        progress(f"measuring the local INT8 error of {len(groups)} quantized layers")
        errors = local_errors(qmodel, fp32, subset(feeds, 32))
        result.sensitivity = {key: max(errors[n] for n in nodes) for key, nodes in groups.items()}
        ranked = sorted(result.sensitivity, key=result.sensitivity.get, reverse=True)
        limit = len(ranked) if max_layers is None else min(max_layers, len(ranked))
        kept: list[str] = []
        model, best = qmodel, base_score
        for trial_no, key in enumerate(ranked):  # most sensitive first; keep a restoration only if it helps
            if len(kept) >= limit or (max_trials is not None and trial_no >= max_trials):
                break
            trial = strip_qdq(qmodel, fp32, [n for k in kept + [key] for n in groups[k]])
            d = compare("int8", run(trial, feeds), ref)
            s = score(d, max_mpjpe_mm, min_agreement)
            progress(f"fallback: restore {key} -> agreement {d.token_agreement}, mpjpe {d.mpjpe_vs_fp32_mm}")
            if s >= best:
                continue
            kept.append(key)
            model, best = trial, s
            result.drift, result.kept_fp32 = d, list(kept)
            result.history.append((len(kept), d.mpjpe_vs_fp32_mm, d.token_agreement))
            if d.within(max_mpjpe_mm, min_agreement):
                result.met = True
                break
        qmodel = model
    write_bytes_atomic(out_path, qmodel.SerializeToString())
    return result
