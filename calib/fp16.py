"""Mixed-precision FP16 ONNX: FP16 everywhere except LayerNorm, Softmax and residual adds (kept FP32).

FP16 LayerNorm overflows on transformer activations (the variance of large residual streams exceeds
65504), and FP16 residual accumulation loses the small updates of deep stacks; softmax stays FP32 for
the argmax margins of the token heads. This is the FP16 artifact TensorRT 11.x (strongly typed) builds
from; TensorRT 10.x can build it too or use the FP16 builder flag on the FP32 ONNX.

The converter is explicit: a node runs in FP16 only if its op is in FP16_OPS (type-polymorphic compute
and data-movement ops) and it is not kept; every float edge whose producer and consumer disagree gets
one Cast; graph inputs and outputs keep FP32.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from calib import onnx_metadata as md
from hipart.atomic_write import write_bytes_atomic

KEEP_FP32_OPS = ("LayerNormalization", "Softmax")
FP16_OPS = frozenset(
    """
    MatMul Gemm Add Sub Mul Div Neg Erf Gelu Relu Tanh Sigmoid Pow Sqrt Exp ReduceMean ReduceSum Transpose
    Reshape Concat Slice Gather GatherND GatherElements Where Squeeze Unsqueeze Expand Split Flatten Identity
    Tile Max Min Abs Clip Sum Mean ArgMax
    """.split()
)
FP16_MAX = float(np.finfo(np.float16).max)


def residual_adds(model: onnx.ModelProto) -> list[str]:
    """Add nodes whose inputs are both activations (the residual stream), as opposed to bias adds."""
    consts = {i.name for i in model.graph.initializer}
    consts |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "Add" and len(n.input) == 2 and not any(i in consts for i in n.input)
    ]


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out = {v.name for v in list(g.value_info) + list(g.input) + list(g.output)
           if v.type.tensor_type.elem_type == TensorProto.FLOAT}  # fmt: skip
    return out | {i.name for i in g.initializer if i.data_type == TensorProto.FLOAT}


def to_mixed_fp16(
    model: onnx.ModelProto, keep_ops: Iterable[str] = KEEP_FP32_OPS, keep_residual: bool = True
) -> tuple[onnx.ModelProto, int]:
    """Return (mixed-precision copy, number of residual adds kept in FP32)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for i, n in enumerate(g.node):
        n.name = n.name or f"{n.op_type}_{i}"
    floats = _float_tensors(m)
    keep = set(keep_ops)
    kept_nodes = set(residual_adds(m)) if keep_residual else set()
    half = {n.name for n in g.node if n.op_type in FP16_OPS and n.op_type not in keep and n.name not in kept_nodes}
    inits = {i.name: i for i in g.initializer}
    precision: dict[str, str] = {i.name: "fp32" for i in g.input}  # tensor name -> precision it lives in
    for n in g.node:
        for o in n.output:
            precision[o] = "fp16" if n.name in half else "fp32"
    casts: dict[tuple[str, str], str] = {}
    new_nodes, new_inits = [], []

    def source(name: str, want: str) -> str:
        if name in inits and want == "fp16":
            key = (name, "init16")
            if key not in casts:
                arr = numpy_helper.to_array(inits[name])
                arr16 = np.clip(arr, -FP16_MAX, FP16_MAX, where=np.isfinite(arr), out=arr.copy()).astype(np.float16)
                new_inits.append(numpy_helper.from_array(arr16, f"{name}__fp16"))
                casts[key] = f"{name}__fp16"
            return casts[key]
        have = "fp32" if name in inits else precision.get(name, "fp32")
        if have == want:
            return name
        key = (name, want)
        if key not in casts:
            out = f"{name}__to_{want}"
            to = TensorProto.FLOAT16 if want == "fp16" else TensorProto.FLOAT
            new_nodes.append(helper.make_node("Cast", [name], [out], name=f"Cast_{out}", to=to))
            casts[key] = out
        return casts[key]

    for n in g.node:
        want = "fp16" if n.name in half else "fp32"
        for k, name in enumerate(n.input):
            if name and name in floats:
                n.input[k] = source(name, want)
        new_nodes.append(n)
    for o in g.output:
        if o.name in floats and precision.get(o.name) == "fp16":
            inner = f"{o.name}__fp16_out"
            for n in new_nodes:
                for k, out in enumerate(n.output):
                    if out == o.name:
                        n.output[k] = inner
                for k, i in enumerate(n.input):
                    if i == o.name:
                        n.input[k] = inner
            cast = helper.make_node("Cast", [inner], [o.name], name=f"Cast_{o.name}_out", to=TensorProto.FLOAT)
            new_nodes.append(cast)
    del g.node[:]
    g.node.extend(new_nodes)
    g.initializer.extend(new_inits)
    used = {i for n in g.node for i in n.input}
    live = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(live)
    del g.value_info[:]
    return toposort(onnx.shape_inference.infer_shapes(m)), len(kept_nodes)


def toposort(model: onnx.ModelProto) -> onnx.ModelProto:
    """Reorder nodes topologically (Kahn's algorithm, stable); inserted Casts may sit anywhere before."""
    g = model.graph
    nodes = list(g.node)
    ready = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    waiting = [sum(1 for i in set(n.input) if i not in ready and i in producer) for n in nodes]
    users: dict[int, list[int]] = {}
    for k, n in enumerate(nodes):
        for i in set(n.input):
            if i not in ready and i in producer:
                users.setdefault(producer[i], []).append(k)
    queue = [k for k, w in enumerate(waiting) if w == 0]
    ordered = []
    while queue:
        k = queue.pop(0)
        ordered.append(nodes[k])
        for u in users.get(k, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                queue.append(u)
    if len(ordered) != len(nodes):
        raise ValueError("graph has a cycle or a dangling input")
    del g.node[:]
    g.node.extend(ordered)
    return model


def convert_file(fp32_path: str | Path, out_path: str | Path, keep_ops: Iterable[str] = KEEP_FP32_OPS) -> Path:
    """FP32 ONNX file -> mixed-precision FP16 ONNX file (checked, metadata carried over, atomic)."""
    model = onnx.load(str(fp32_path))
    fp16, n_res = to_mixed_fp16(model, keep_ops)
    onnx.checker.check_model(fp16, full_check=True)
    try:
        meta = md.read(fp16)
        extra = {"fp32_kept": ",".join(keep_ops) + f",residual Add x{n_res}"}
        md.attach(fp16, md.with_precision(meta, "fp16-mixed", **extra))
    except KeyError:
        pass
    return write_bytes_atomic(out_path, fp16.SerializeToString())
