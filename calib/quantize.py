"""Explicit INT8: Q/DQ ONNX via onnxruntime's static quantiser (MatMul/Gemm only), or NVIDIA ModelOpt if present.

TensorRT-compatible choices: signed INT8, symmetric (zero point 0) activations and weights, per-channel
weights, per-tensor activations, no bias quantization. The causal mask's -inf is replaced by a large finite
negative before calibration (softmax output is unchanged: exp underflows to exactly 0 either way), and every
resulting scale is checked finite and positive, so no infinity can enter a calibrated range.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from calib import onnx_metadata as md
from hipart.atomic_write import write_bytes_atomic

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}  # fmt: skip
OP_TYPES = ("MatMul", "Gemm")
MASK_FILL = -1.0e4  # finite in FP16 too; exp(MASK_FILL - max) == 0 in FP32 and FP16


class QuantizationError(RuntimeError):
    """Quantisation failed or produced a graph TensorRT could not use."""


class ModelOptUnavailable(RuntimeError):
    """nvidia-modelopt is not installed."""


Feeds = dict[str, np.ndarray] | list[dict[str, np.ndarray]]


class FeedReader(CalibrationDataReader):
    """onnxruntime calibration reader over arrays keyed by input name (mini-batched) or a list of feed dicts.

    A list is for graphs with an unbatched input (decode_step's `step`): each dict is one ready batch.
    """

    def __init__(self, feeds: Feeds, batch: int = 16):
        if isinstance(feeds, dict):
            n = len(next(iter(feeds.values())))
            self.batches = [{k: v[i : i + batch] for k, v in feeds.items()} for i in range(0, n, batch)]
        else:
            self.batches = list(feeds)
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return self.batches[self.i - 1]

    def rewind(self) -> None:
        self.i = 0


def finite_masks(model: onnx.ModelProto, fill: float = MASK_FILL) -> tuple[onnx.ModelProto, int]:
    """Replace +-inf in float constants (attention masks) by +-|fill|; returns (model, tensors changed)."""
    changed = 0

    def fix(t: onnx.TensorProto) -> onnx.TensorProto | None:
        arr = numpy_helper.to_array(t)
        if arr.dtype.kind != "f" or np.all(np.isfinite(arr)):
            return None
        arr = np.where(np.isposinf(arr), -fill, np.where(np.isneginf(arr), fill, arr)).astype(arr.dtype)
        return numpy_helper.from_array(arr, t.name)

    for i, init in enumerate(model.graph.initializer):
        new = fix(init)
        if new is not None:
            model.graph.initializer[i].CopyFrom(new)
            changed += 1
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and (new := fix(a.t)) is not None:
                    a.t.CopyFrom(new)
                    changed += 1
    return model, changed


def restore_fp32_consumers(model: onnx.ModelProto, op_types: Sequence[str] = OP_TYPES) -> int:
    """Give non-quantized consumers of a quantized activation the FP32 tensor back; returns edges rewired.

    onnxruntime's QDQ pass rewires every consumer of a quantized activation to the dequantized tensor,
    so e.g. the KV-cache stack or a residual add would silently see INT8-rounded values.
    """
    prod = {o: n for n in model.graph.node for o in n.output}
    rewired = 0
    for n in model.graph.node:
        if n.op_type in op_types or n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for k, name in enumerate(n.input):
            dq = prod.get(name)
            if dq is not None and dq.op_type == "DequantizeLinear":
                q = prod.get(dq.input[0])
                if q is not None and q.op_type == "QuantizeLinear":
                    n.input[k] = q.input[0]
                    rewired += 1
    return rewired


def check_scales(model: onnx.ModelProto) -> int:
    """Every Q/DQ scale finite and > 0; returns the number of Q/DQ nodes. Raises QuantizationError."""
    inits = {i.name: i for i in model.graph.initializer}
    count = 0
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            count += 1
            scale = numpy_helper.to_array(inits[n.input[1]]) if n.input[1] in inits else None
            if scale is None or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
                raise QuantizationError(f"{n.name}: non-finite or non-positive scale {scale} (an inf was calibrated)")
    return count


@contextmanager
def _quiet_ort_logging():
    """Silence onnxruntime.quantization's pre-processing advice (printed on the root logger)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    ort.set_default_logger_severity(3)  # unused-initializer notices from the calibration sessions
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_qdq(
    fp32_path: str | Path,
    out_path: str | Path,
    calib: Feeds,
    method: str = "minmax",
    op_types: Sequence[str] = OP_TYPES,
    exclude: Sequence[str] = (),
    per_channel: bool = True,
) -> Path:
    """Calibrate on `calib` and write a TensorRT-style Q/DQ model to `out_path` (atomic)."""
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {sorted(METHODS)}, got {method!r}")
    model = onnx.load(str(fp32_path))
    model, masked = finite_masks(model)
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "OpTypesToExcludeOutputQuantization": list(op_types),  # Q/DQ on inputs only, as TensorRT fuses them
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
        "CalibPercentile": 99.99,
    }
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))
        try:
            with _quiet_ort_logging():
                quantize_static(
                    str(src), str(dst), FeedReader(calib), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(op_types), per_channel=per_channel, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude), calibrate_method=METHODS[method],
                    extra_options=extra,
                )  # fmt: skip
        except Exception as e:
            raise QuantizationError(f"onnxruntime static quantisation failed: {e}") from e
        qmodel = onnx.load(str(dst))
    restore_fp32_consumers(qmodel, op_types)
    n_qdq = check_scales(qmodel)
    try:
        meta = md.read(qmodel)
        md.attach(qmodel, md.with_precision(meta, "int8", calib_method=method, masks_made_finite=str(masked),
                                            qdq_nodes=str(n_qdq), excluded=",".join(exclude)))  # fmt: skip
    except KeyError:
        pass  # a model exported outside hipart-export: no metadata to carry over
    return write_bytes_atomic(out_path, qmodel.SerializeToString())


def quantize_modelopt(fp32_path: str | Path, out_path: str | Path, calib: Feeds, method: str) -> Path:
    """INT8 Q/DQ through NVIDIA ModelOpt's ONNX PTQ (only when nvidia-modelopt is installed)."""
    if importlib.util.find_spec("modelopt") is None:
        raise ModelOptUnavailable("nvidia-modelopt is not installed; use the onnxruntime quantiser (default)")
    from modelopt.onnx.quantization import quantize as mo_quantize  # documented entry point

    if not isinstance(calib, dict):
        raise ModelOptUnavailable("the ModelOpt path takes batched inputs only; use the onnxruntime quantiser")
    mo_method = {"minmax": "max", "entropy": "entropy", "percentile": "max"}[method]
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / "int8.onnx"
        mo_quantize(
            onnx_path=str(fp32_path), quantize_mode="int8", calibration_data=calib, calibration_method=mo_method,
            op_types_to_quantize=list(OP_TYPES), output_path=str(dst),
        )  # fmt: skip
        data = dst.read_bytes()
    check_scales(onnx.load_from_string(data))
    return write_bytes_atomic(out_path, data)


def quantized_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of compute nodes with at least one DequantizeLinear input."""
    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [n.name for n in model.graph.node if n.op_type in OP_TYPES and any(i in dq_out for i in n.input)]


def strip_qdq(qmodel: onnx.ModelProto, fp32: onnx.ModelProto, nodes: Sequence[str]) -> onnx.ModelProto:
    """Return a copy of `qmodel` with `nodes` fed by their original FP32 inputs (their Q/DQ removed)."""
    out = onnx.ModelProto()
    out.CopyFrom(qmodel)
    ref = {n.name: n for n in fp32.graph.node}
    fp32_inits = {i.name: i for i in fp32.graph.initializer}
    have = {i.name for i in out.graph.initializer}
    wanted = set(nodes)
    for n in out.graph.node:
        if n.name in wanted:
            orig = ref[n.name]
            for k, name in enumerate(orig.input):
                n.input[k] = name
                if name in fp32_inits and name not in have:
                    out.graph.initializer.append(fp32_inits[name])
                    have.add(name)
    _prune(out)
    return out


def _prune(model: onnx.ModelProto) -> None:
    """Drop nodes and initializers that no longer reach a graph output."""
    g = model.graph
    live = {o.name for o in g.output}
    keep = []
    for n in reversed(g.node):
        if any(o in live for o in n.output):
            keep.append(n)
            live.update(n.input)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    inits = [i for i in g.initializer if i.name in live]
    del g.initializer[:]
    g.initializer.extend(inits)
