"""onnx-simplifier pass and the full `onnx.checker` check applied to every artifact."""

from __future__ import annotations

import numpy as np
import onnx
import onnxsim
from onnx import numpy_helper


class SimplifyError(RuntimeError):
    """onnx-simplifier failed or produced an invalid graph."""


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant-fold, shape-infer and prune with onnx-simplifier, without its fusion passes.

    The fusion passes would turn MatMul+Add into Reshape/Gemm/Reshape chains with generated names;
    MatMul+Add is TensorRT's canonical (bias-fused) pattern, the Q/DQ quantiser targets it directly,
    and keeping the exporter's module-scoped node names makes the INT8 sensitivity report readable.
    """
    try:
        simplified, ok = onnxsim.simplify(model, check_n=0, perform_optimization=False)
    except Exception as e:  # onnxsim raises a variety of types from its C++ core
        raise SimplifyError(f"onnx-simplifier failed: {e}") from e
    if not ok:
        raise SimplifyError("onnx-simplifier could not validate the simplified model")
    dedupe_initializers(simplified)
    clamp_slice_bounds(simplified)
    return simplified


def dedupe_initializers(model: onnx.ModelProto) -> int:
    """Merge byte-identical initializers (constant folding of an unrolled loop copies weights per step)."""
    seen: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    keep = []
    for init in model.graph.initializer:
        key = (init.data_type, tuple(init.dims), numpy_helper.to_array(init).tobytes())
        if key in seen:
            rename[init.name] = seen[key]
        else:
            seen[key] = init.name
            keep.append(init)
    graph_io = {v.name for v in list(model.graph.input) + list(model.graph.output)}
    rename = {k: v for k, v in rename.items() if k not in graph_io}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del model.graph.initializer[:]
    model.graph.initializer.extend(i for i in keep if i.name not in rename)
    return len(rename)


def clamp_slice_bounds(model: onnx.ModelProto) -> int:
    """Clamp Slice starts/ends constants to the int32 range (PyTorch writes INT64_MAX for 'to the end').

    Slicing clamps to the dimension anyway, so results are unchanged; TensorRT no longer has to cast an
    out-of-range int64 down. Returns how many initializers were changed.
    """
    limit = np.iinfo(np.int32)
    slice_inputs = {n.input[k] for n in model.graph.node if n.op_type == "Slice" for k in (1, 2) if len(n.input) > k}
    other_uses = {
        i for n in model.graph.node if n.op_type != "Slice" for i in n.input
    } | {i for n in model.graph.node if n.op_type == "Slice" for i in n.input[3:]}
    changed = 0
    for k, init in enumerate(model.graph.initializer):
        if init.name in slice_inputs and init.name not in other_uses and init.data_type == onnx.TensorProto.INT64:
            arr = numpy_helper.to_array(init)
            if arr.size and (arr.max() > limit.max or arr.min() < limit.min):
                clipped = np.clip(arr, limit.min, limit.max).astype(np.int64)
                model.graph.initializer[k].CopyFrom(numpy_helper.from_array(clipped, init.name))
                changed += 1
    return changed


def check(model: onnx.ModelProto) -> None:
    """Run onnx.checker with full_check (schema + strict shape inference); raises onnx.checker.ValidationError."""
    onnx.checker.check_model(model, full_check=True)
