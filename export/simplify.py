"""onnx-simplifier pass and the full `onnx.checker` check applied to every artifact."""

from __future__ import annotations

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


def check(model: onnx.ModelProto) -> None:
    """Run onnx.checker with full_check (schema + strict shape inference); raises onnx.checker.ValidationError."""
    onnx.checker.check_model(model, full_check=True)
