"""TensorRT preflight without TensorRT: it must pass our artifacts and reject crafted bad graphs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.trt_ops import TARGETS, target_for
from export.trt_preflight import preflight


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _vi(name, elem=TensorProto.FLOAT, shape=("batch", 4)):
    return helper.make_tensor_value_info(name, elem, list(shape))


def rules(model, version="10"):
    return {(f.severity, f.rule) for f in preflight(model, version).findings}


def test_standin_artifact_passes(standin_onnx, standin_step_onnx):
    for path in (standin_onnx, standin_step_onnx):
        for v in ("10", "10.15", "11"):
            rep = preflight(onnx.load(path), v)
            assert rep.ok, rep.format()


def test_rejects_unsupported_and_custom_ops():
    m = _model(
        [helper.make_node("Unique", ["x"], ["u"], name="uniq"),
         helper.make_node("Relu", ["x"], ["y"], name="relu"),
         helper.make_node("MyOp", ["x"], ["z"], name="custom", domain="com.acme")],
        [_vi("x")], [_vi("u", shape=(None,)), _vi("y"), _vi("z")],
    )  # fmt: skip
    m.opset_import.append(helper.make_opsetid("com.acme", 1))
    rep = preflight(m, "10")
    assert not rep.ok
    msgs = {(f.node, f.rule): f.message for f in rep.errors}
    assert "not supported" in msgs[("uniq", "op-support")] and "plugin" in msgs[("custom", "op-support")]
    assert not any(node == "relu" for node, _ in msgs)
    assert ("error", "data-dependent-shape") in rules(m)


def test_rejects_dynamic_topk_argmax_last_index_and_int64_matmul():
    m = _model(
        [helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk", axis=-1),
         helper.make_node("ArgMax", ["x"], ["a"], name="argmax", axis=-1, select_last_index=1),
         helper.make_node("MatMul", ["xi", "wi"], ["m"], name="imm")],
        [_vi("x"), _vi("k", TensorProto.INT64, (1,)), _vi("xi", TensorProto.INT64),
         _vi("wi", TensorProto.INT64, (4, 4))],
        [_vi("v", shape=("batch", None)), _vi("i", TensorProto.INT64, ("batch", None)),
         _vi("a", TensorProto.INT64, ("batch", 1)), _vi("m", TensorProto.INT64)],
    )  # fmt: skip
    r = rules(m)
    assert ("error", "topk-k") in r and ("error", "argmax") in r and ("error", "int64") in r


def test_rejects_non_batch_dynamic_axis_and_bad_opset():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", shape=("batch", "len"))], [_vi("y")], opset=9)
    assert ("error", "static-shape") in rules(m)
    m2 = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x")], [_vi("y")], opset=21)
    assert ("error", "opset") in rules(m2, "10") and ("error", "opset") not in rules(m2, "11")


def _qdq(zp_dtype=np.int8, zp=0, scale=0.1, per_channel_act=False, dangling=False, into="MatMul"):
    s = np.full((4,), scale, np.float32) if per_channel_act else np.array(scale, np.float32)
    inits = [numpy_helper.from_array(s, "s"), numpy_helper.from_array(np.full(s.shape, zp, zp_dtype), "zp"),
             numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")]  # fmt: skip
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q", axis=1)]
    if dangling:
        nodes.append(helper.make_node("Cast", ["xq"], ["xc"], name="cast", to=TensorProto.FLOAT))
        nodes.append(helper.make_node(into, ["xc", "w"] if into == "MatMul" else ["xc"], ["y"], name="op"))
    else:
        nodes.append(helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq", axis=1))
        nodes.append(helper.make_node(into, ["xd", "w"] if into == "MatMul" else ["xd"], ["y"], name="op"))
    return _model(nodes, [_vi("x")], [_vi("y")], inits)


def test_qdq_placement_rules():
    assert preflight(_qdq(), "10").ok
    assert ("error", "qdq-type") in rules(_qdq(zp_dtype=np.uint8, zp=128))
    assert ("error", "qdq-zero-point") in rules(_qdq(zp=3))
    assert ("error", "qdq-scale") in rules(_qdq(scale=np.inf))
    assert ("error", "qdq-per-tensor") in rules(_qdq(per_channel_act=True))
    assert ("error", "qdq-pair") in rules(_qdq(dangling=True))
    assert ("error", "fp32-kept") in rules(_qdq(into="Softmax"))


def test_fp16_layernorm_rejected():
    inits = [numpy_helper.from_array(np.ones(4, np.float16), "g"),
             numpy_helper.from_array(np.zeros(4, np.float16), "b")]  # fmt: skip
    m = _model(
        [helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16, name="cast"),
         helper.make_node("LayerNormalization", ["xh", "g", "b"], ["yh"], name="ln", axis=-1),
         helper.make_node("Cast", ["yh"], ["y"], to=TensorProto.FLOAT, name="back")],
        [_vi("x")], [_vi("y")], inits,
    )  # fmt: skip
    assert ("error", "fp32-kept") in rules(m, "11")


def test_version_table():
    assert target_for("10.3.0") is TARGETS["10"] and target_for("10.15.1") is TARGETS["10.15"]
    assert target_for("11.0").strongly_typed_only and not target_for("11").implicit_int8_calibrator
    for bad in ("8.6", "9.2", "12.0", "abc"):
        with pytest.raises(ValueError):
            target_for(bad)
    assert "LayerNormalization" in TARGETS["10"].ops and "Attention" not in TARGETS["10"].ops
