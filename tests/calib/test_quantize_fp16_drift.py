"""Q/DQ quantisation, mixed-precision FP16 and the drift report on the stand-in transformer."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from calib import drift
from calib.fp16 import residual_adds, to_mixed_fp16
from calib.quantize import (
    QuantizationError,
    check_scales,
    finite_masks,
    quantize_qdq,
    quantized_nodes,
    strip_qdq,
)
from calib.synthetic_poses import TRAIN_SUBJECTS, VAL_SUBJECTS, synthetic_poses
from export.trt_preflight import preflight


@pytest.fixture(scope="module")
def data():
    ps = synthetic_poses(160, seed=11)
    train = np.isin(ps.subjects, TRAIN_SUBJECTS)
    val = np.isin(ps.subjects, VAL_SUBJECTS)
    return {"x_s": ps.x_s[train][:64]}, {"x_s": ps.x_s[val]}


@pytest.fixture(scope="module")
def int8_path(standin_onnx, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "standin.int8.onnx"
    return quantize_qdq(standin_onnx, out, data[0])


def test_qdq_only_on_matmul_gemm_and_trt_clean(int8_path, standin_onnx):
    model = onnx.load(str(int8_path))
    ops = collections.Counter(n.op_type for n in model.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    prod = {o: n for n in model.graph.node for o in n.output}
    users = collections.defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            users[i].append(n.op_type)
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear":
            assert set(users[n.output[0]]) <= {"MatMul", "Gemm"}, users[n.output[0]]
    qnodes = quantized_nodes(model)
    fp32_mm = sum(1 for n in onnx.load(standin_onnx).graph.node if n.op_type in ("MatMul", "Gemm"))
    assert len(qnodes) == fp32_mm  # every MatMul/Gemm quantized, nothing else
    assert all(prod[i].op_type == "DequantizeLinear" for n in model.graph.node if n.name in qnodes for i in n.input[:2])
    rep = preflight(model, "10")
    assert rep.ok, rep.format()
    assert check_scales(model) == ops["QuantizeLinear"] + ops["DequantizeLinear"]


def test_int8_runs_and_drift_measured(standin_onnx, int8_path, data):
    rep = drift.report({"fp32": standin_onnx, "int8": int8_path}, data[1])["int8"]
    assert rep.token_agreement is not None and 0.5 <= rep.token_agreement <= 1.0
    assert 0 < rep.mean_abs_err["points"] < 1.0
    assert np.isfinite(rep.max_abs_err["points"])


def test_mask_inf_never_reaches_a_calibrated_range(tmp_path):
    # A graph whose MatMul consumes a -inf-masked tensor: without finite_masks, minmax calibration
    # would give an infinite scale; with it, every scale is finite and outputs stay finite.
    mask = numpy_helper.from_array(np.triu(np.full((4, 4), -np.inf, np.float32), 1), "mask")
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "mask"], ["masked"], name="add"),
         helper.make_node("MatMul", ["masked", "w"], ["y"], name="mm")],
        "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 4])], [mask, w],
    )  # fmt: skip
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    src = tmp_path / "m.onnx"
    onnx.save(model, src)
    fixed, n = finite_masks(onnx.load(src))
    assert n == 1 and np.isfinite(numpy_helper.to_array(fixed.graph.initializer[0])).all()
    out = quantize_qdq(src, tmp_path / "m.int8.onnx", {"x": np.ones((8, 4, 4), np.float32)}, per_channel=False)
    q = onnx.load(str(out))
    assert check_scales(q) > 0
    y = drift.run(q, {"x": np.ones((2, 4, 4), np.float32)})["y"]
    assert np.isfinite(y).all()
    # and the guard itself fires on an infinite scale
    bad = onnx.load(str(out))
    for init in bad.graph.initializer:
        if init.name.endswith("_scale") and init.dims == []:
            init.CopyFrom(numpy_helper.from_array(np.array(np.inf, np.float32), init.name))
            break
    with pytest.raises(QuantizationError, match="non-finite"):
        check_scales(bad)


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_other_calibration_methods(standin_onnx, data, tmp_path, method):
    out = quantize_qdq(standin_onnx, tmp_path / f"{method}.onnx", {"x_s": data[0]["x_s"][:32]}, method=method)
    assert check_scales(onnx.load(str(out))) > 0


def test_strip_qdq_restores_fp32_exactly(standin_onnx, int8_path, data):
    q, f = onnx.load(str(int8_path)), onnx.load(standin_onnx)
    full = strip_qdq(q, f, quantized_nodes(q))
    assert not quantized_nodes(full)
    ref, got = drift.run(f, data[1]), drift.run(full, data[1])
    np.testing.assert_array_equal(got["tokens"], ref["tokens"])
    np.testing.assert_allclose(got["points"], ref["points"], rtol=1e-5, atol=1e-6)


def test_fallback_improves_or_meets_threshold(standin_onnx, int8_path, data, tmp_path):
    # Targets no INT8 model can meet, so the search always runs, on any CPU's numerics.
    res = drift.fallback(standin_onnx, int8_path, tmp_path / "fb.onnx", data[1], min_agreement=1.0,
                         max_output_err=0.0, max_trials=6)
    base = drift.compare("int8", drift.run(int8_path, data[1]), drift.run(standin_onnx, data[1]))
    assert not res.met and len(res.sensitivity) == len(drift.layer_groups(onnx.load(str(int8_path))))
    # the search keeps a restoration only when the score drops: never worse than full INT8
    assert drift.score(res.drift, 1.0, 1.0, 0.0) <= drift.score(base, 1.0, 1.0, 0.0)
    assert (tmp_path / "fb.onnx").exists()
    q = onnx.load(str(tmp_path / "fb.onnx"))
    assert len(quantized_nodes(q)) <= len(quantized_nodes(onnx.load(str(int8_path))))
    assert preflight(q, "11").ok


def test_fp16_keeps_layernorm_softmax_residual_fp32(standin_onnx, data, tmp_path):
    model = onnx.load(standin_onnx)
    n_res = len(residual_adds(model))
    assert n_res >= 2 * 6 * 2  # two residual adds per block per unrolled step (2 blocks x 6 steps)
    fp16, kept = to_mixed_fp16(model)
    assert kept == n_res
    onnx.checker.check_model(fp16, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(fp16)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    types.update({i.name: i.data_type for i in inferred.graph.initializer})
    for n in inferred.graph.node:
        if n.op_type in ("LayerNormalization", "Softmax"):
            assert types.get(n.input[0], TensorProto.FLOAT) == TensorProto.FLOAT, n.name
    assert any(t == TensorProto.FLOAT16 for t in types.values())
    assert {i.type.tensor_type.elem_type for i in fp16.graph.input} == {TensorProto.FLOAT}
    assert preflight(fp16, "11").ok
    path = tmp_path / "fp16.onnx"
    onnx.save(fp16, path)
    rep = drift.report({"fp32": standin_onnx, "fp16": path}, data[1])["fp16"]
    assert rep.token_agreement >= 0.95
    assert rep.mean_abs_err["points"] < 0.05


def test_modelopt_path_is_optional(standin_onnx, data, tmp_path):
    import importlib.util

    from calib.quantize import ModelOptUnavailable, quantize_modelopt

    if importlib.util.find_spec("modelopt") is not None:
        pytest.skip("nvidia-modelopt is installed here")
    with pytest.raises(ModelOptUnavailable, match="nvidia-modelopt is not installed"):
        quantize_modelopt(standin_onnx, tmp_path / "m.onnx", data[0], "minmax")
    assert not (tmp_path / "m.onnx").exists()
