"""TensorRT preflight without TensorRT: op support, shape/dtype rules, Q/DQ placement, FP32-kept layers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from export.trt_ops import UNSUPPORTED, TrtTarget, target_for

# Layers the mixed-precision and INT8 paths keep in FP32 (FP16 LayerNorm overflow; softmax/argmax margins).
FP32_KEPT = ("LayerNormalization", "Softmax")
# Ops whose data inputs TensorRT runs only in floating point (int64 into them is an export bug).
FLOAT_ONLY = frozenset({"MatMul", "Gemm", "Conv", "Softmax", "LayerNormalization", "Erf", "Sqrt", "Exp", "Tanh"})
QUANT_TYPES = {onnx.TensorProto.INT8, onnx.TensorProto.INT4, onnx.TensorProto.FLOAT8E4M3FN}
INT32_MAX = np.iinfo(np.int32).max


@dataclass
class Finding:
    """One preflight result: 'error' blocks an engine build, 'warning' is worth reading."""

    severity: str
    rule: str
    node: str
    message: str


@dataclass
class PreflightReport:
    """All findings for one model against one TensorRT target."""

    target: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        """True when no finding is an error."""
        return not self.errors

    def add(self, severity: str, rule: str, node: str, message: str) -> None:
        self.findings.append(Finding(severity, rule, node, message))

    def format(self) -> str:
        """Human-readable lines, errors first."""
        head = f"TensorRT preflight for {self.target}: {len(self.errors)} error(s), "
        head += f"{len(self.findings) - len(self.errors)} warning(s)"
        rows = sorted(self.findings, key=lambda f: f.severity != "error")
        return "\n".join([head] + [f"  {f.severity:7s} [{f.rule}] {f.node}: {f.message}" for f in rows])


class _Graph:
    """Producer/consumer/constant/dtype look-ups over a shape-inferred graph."""

    def __init__(self, model: onnx.ModelProto):
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:  # preflight must still report op-level problems on graphs shape inference rejects
            pass
        g = model.graph
        self.graph = g
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        for n in g.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.consts[n.output[0]] = numpy_helper.to_array(a.t)
        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.dtype: dict[str, int] = {}
        for vi in list(g.value_info) + list(g.input) + list(g.output):
            self.dtype[vi.name] = vi.type.tensor_type.elem_type
        for name, arr in self.consts.items():
            self.dtype[name] = onnx.helper.np_dtype_to_tensor_dtype(arr.dtype)
        self.outputs = {o.name for o in g.output}


def _name(n: onnx.NodeProto) -> str:
    return n.name or f"{n.op_type}({n.output[0]})"


def _attr(n: onnx.NodeProto, name: str, default=None):
    for a in n.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _check_ops(g: _Graph, t: TrtTarget, rep: PreflightReport) -> None:
    for n in g.graph.node:
        if n.domain not in ("", "ai.onnx"):
            msg = f"custom-domain op {n.domain}::{n.op_type} needs a TensorRT plugin"
            rep.add("error", "op-support", _name(n), msg)
        elif n.op_type in UNSUPPORTED:
            rep.add("error", "op-support", _name(n), f"{n.op_type} is not supported by {t.name}'s ONNX parser")
        elif n.op_type not in t.ops:
            rep.add("error", "op-support", _name(n), f"{n.op_type} is not in {t.name}'s supported-operator table")


def _check_shapes_dtypes(g: _Graph, rep: PreflightReport) -> None:
    for vi in g.graph.input:
        dims = vi.type.tensor_type.shape.dim
        dynamic = [i for i, d in enumerate(dims) if not d.HasField("dim_value")]
        if any(i != 0 for i in dynamic):
            rep.add("error", "static-shape", vi.name, f"dynamic axes {dynamic}: the profile covers the batch axis only")
    for n in g.graph.node:
        if n.op_type == "TopK" and (len(n.input) < 2 or n.input[1] not in g.consts):
            rep.add("error", "topk-k", _name(n), "TopK's K must be a build-time constant (initializer)")
        if n.op_type in ("ArgMax", "ArgMin") and _attr(n, "select_last_index", 0):
            rep.add("error", "argmax", _name(n), "select_last_index=1 is not supported; ties must resolve to the first")
        if n.op_type in ("NonZero", "Unique", "Compress"):
            rep.add("error", "data-dependent-shape", _name(n), f"{n.op_type} gives a data-dependent output shape")
        if n.op_type in FLOAT_ONLY:
            for i in n.input[:1] if n.op_type != "MatMul" else n.input[:2]:
                if g.dtype.get(i) in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
                    rep.add("error", "int64", _name(n), f"integer input {i!r} into float-only {n.op_type}")
                if g.dtype.get(i) == onnx.TensorProto.DOUBLE:
                    rep.add("warning", "double", _name(n), f"DOUBLE input {i!r} is cast down to FLOAT by TensorRT")
    for name, arr in g.consts.items():
        if arr.dtype == np.int64 and arr.size and np.abs(arr).max() > INT32_MAX:
            rep.add("warning", "int64", name, "int64 constant outside int32 range (clamped where TensorRT casts down)")


def _const_qparams(g: _Graph, n: onnx.NodeProto, rep: PreflightReport) -> np.ndarray | None:
    """Check a Q/DQ node's scale and zero point; returns the scale array when it is a constant."""
    scale = g.consts.get(n.input[1]) if len(n.input) > 1 else None
    if scale is None:
        rep.add("error", "qdq-scale", _name(n), "scale must be a build-time constant")
        return None
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        rep.add("error", "qdq-scale", _name(n), "scale must be finite and > 0 (a -inf/inf entered a calibrated range?)")
    if len(n.input) > 2 and n.input[2]:
        zp = g.consts.get(n.input[2])
        if zp is None:
            rep.add("error", "qdq-zero-point", _name(n), "zero point must be a constant")
        else:
            if onnx.helper.np_dtype_to_tensor_dtype(zp.dtype) not in QUANT_TYPES:
                rep.add("error", "qdq-type", _name(n), f"{zp.dtype} Q/DQ: TensorRT quantizes to INT8/INT4/FP8 only")
            if np.any(zp != 0):
                rep.add("error", "qdq-zero-point", _name(n), "zero point must be 0 (TensorRT is symmetric)")
    return scale


def _check_qdq(g: _Graph, rep: PreflightReport) -> None:
    for n in g.graph.node:
        if n.op_type == "QuantizeLinear":
            scale = _const_qparams(g, n, rep)
            if scale is not None and scale.size > 1 and n.input[0] not in g.consts:
                rep.add("error", "qdq-per-tensor", _name(n), "activations must be quantized per-tensor")
            users = g.consumers.get(n.output[0], [])
            if not users or any(u.op_type != "DequantizeLinear" for u in users) or n.output[0] in g.outputs:
                rep.add("error", "qdq-pair", _name(n), "QuantizeLinear must feed DequantizeLinear only")
        elif n.op_type == "DequantizeLinear":
            _const_qparams(g, n, rep)
            src = g.producer.get(n.input[0])
            if n.input[0] not in g.consts and (src is None or src.op_type != "QuantizeLinear"):
                rep.add("error", "qdq-pair", _name(n), "DequantizeLinear input must be a QuantizeLinear or a weight")
            for user in g.consumers.get(n.output[0], []):
                if user.op_type in FP32_KEPT:
                    rep.add("error", "fp32-kept", _name(user), f"quantized input into {user.op_type}, kept in FP32")


def _check_fp32_kept(g: _Graph, rep: PreflightReport) -> None:
    if not any(t == onnx.TensorProto.FLOAT16 for t in g.dtype.values()):
        return
    for n in g.graph.node:
        if n.op_type in FP32_KEPT:
            bad = [i for i in list(n.input[:1]) + list(n.output[:1]) if g.dtype.get(i) == onnx.TensorProto.FLOAT16]
            if bad:
                rep.add("error", "fp32-kept", _name(n), f"{n.op_type} runs in FP16 ({bad[0]}); it must stay FP32")


def preflight(model: onnx.ModelProto, trt_version: str = "10") -> PreflightReport:
    """Check `model` against TensorRT `trt_version` ('10', '10.15', '11', or a full version string)."""
    t = target_for(trt_version)
    rep = PreflightReport(t.name)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not t.opset_min <= opset <= t.opset_max:
        rep.add("error", "opset", "model", f"opset {opset} outside {t.name}'s range {t.opset_min}..{t.opset_max}")
    g = _Graph(model)
    _check_ops(g, t, rep)
    _check_shapes_dtypes(g, rep)
    _check_qdq(g, rep)
    _check_fp32_kept(g, rep)
    return rep
