"""The HiPART artifacts (tiny config, random weights): onnxruntime vs PyTorch parity and contracts."""

from __future__ import annotations

import collections
import json

import numpy as np
import onnx
import pytest
import torch

from calib import onnx_metadata as md
from export.artifacts import (
    ARTIFACTS,
    check_artifact,
    densify_from_hipart,
    export_artifact,
    ort_runner,
    random_poses,
    step_loop_tokens,
)
from export.trt_preflight import preflight
from hipart.checkpoint import model_hash
from hipart.models.config import HiPARTConfig
from hipart.models.hipart import HiPART


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return HiPART(HiPARTConfig.tiny()).eval()


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("hipart")
    paths = {name: export_artifact(tiny, name, out, model_hash(tiny)) for name in ARTIFACTS if name != "densify"}
    paths["densify"] = densify_from_hipart(paths["hipart"], out)  # what export_all does: one trace, two files
    return paths


@pytest.mark.parametrize("name", ARTIFACTS)
def test_parity_batch_1_and_7_three_seeds(tiny, exported, name):
    rep = check_artifact(tiny, name, exported[name], batches=(1, 7), seeds=(0, 1, 2))
    assert all(rep.tokens_equal.values()), rep.tokens_equal
    assert rep.worst_rel <= 1e-4, rep.max_rel_err
    assert set(rep.tokens_equal) == (set() if name in ("lift", "detokenize") else {"q_s", "q_d"})


def test_artifact_set():
    assert ARTIFACTS == ("densify", "decode_step", "detokenize", "lift", "hipart")


def test_step_loop_then_detokenize_reproduces_densify(tiny, exported):
    """decode_step x 16 + detokenize (the onnxruntime backend's "step" mode) == hipart.onnx, tokens and points."""
    x = random_poses(6, 11)
    q_s, q_d = step_loop_tokens(tiny, exported["decode_step"], x)
    got = ort_runner(exported["detokenize"])({"q_s": q_s, "q_d": q_d})
    ref = ort_runner(exported["hipart"])({"x_s": x})
    np.testing.assert_array_equal(q_s, ref["q_s"])
    np.testing.assert_array_equal(q_d, ref["q_d"])
    np.testing.assert_allclose(got["dense"], ref["dense"], atol=1e-5)
    np.testing.assert_allclose(got["fine"], ref["fine"], atol=1e-5)


def test_runtime_metadata_for_a_torch_free_loop(tiny, exported):
    """Generation order, KV cache shape and lifter input travel in hipart.extra (the backend reads no torch)."""
    gen = tiny.generator
    for name in ("decode_step", "detokenize", "lift"):
        extra = md.read(onnx.load(str(exported[name]))).extra
        assert json.loads(extra["generation_order"]) == gen.order.tolist()
        assert json.loads(extra["inverse_order"]) == gen.inv_order.tolist()
        assert extra["lifter_input"] == tiny.config.lifter_input and extra["lift_points"] == "161"
        assert int(extra["decode_steps"]) == gen.num_parts
    step = onnx.load(str(exported["decode_step"]))
    cache = [d.dim_value for d in next(i for i in step.graph.input if i.name == "past_k").type.tensor_type.shape.dim]
    assert json.loads(md.read(step).extra["kv_cache"]) == cache[1:]


def test_detokenize_feeds_are_the_models_tokens(tiny):
    from export.artifact_feeds import feeds_for

    x = random_poses(5, 3)
    f = feeds_for(tiny, "detokenize", x)
    ref = tiny(torch.from_numpy(x))
    np.testing.assert_array_equal(f["q_s"], ref["q_s"].numpy())
    np.testing.assert_array_equal(f["q_d"], ref["q_d"].numpy())


def test_decode_step_loop_reproduces_generate(tiny, exported):
    x = random_poses(5, 7)
    q_s, q_d = step_loop_tokens(tiny, exported["decode_step"], x)
    ref = tiny(torch.from_numpy(x))
    np.testing.assert_array_equal(q_s, ref["q_s"].numpy())
    np.testing.assert_array_equal(q_d, ref["q_d"].numpy())


def test_densify_is_unrolled_with_in_graph_argmax_and_gather(tiny, exported):
    model = onnx.load(str(exported["densify"]))
    ops = collections.Counter(n.op_type for n in model.graph.node)
    steps = tiny.generator.num_parts
    assert "Loop" not in ops and "If" not in ops and "Scan" not in ops
    assert ops["ArgMax"] == 2 * steps  # sparse head + dense head per step
    assert ops["LayerNormalization"] > 0 and ops["Softmax"] > 0
    assert model.opset_import[0].version >= 17


@pytest.mark.parametrize("name", ARTIFACTS)
def test_contract_metadata_and_preflight(tiny, exported, name):
    model = onnx.load(str(exported[name]))
    meta = md.read(model)
    assert meta.artifact == name and meta.model_hash == model_hash(tiny) and meta.opset >= 17
    assert not any(p.key.startswith("onnxsim.") for p in model.metadata_props)
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if vi.name == "step":
            assert [d.dim_value for d in dims] == [1]
            continue
        assert dims[0].dim_param and all(d.dim_value > 0 for d in dims[1:]), vi.name
    for version in ("10", "11"):
        rep = preflight(model, version)
        assert rep.ok and not rep.findings, rep.format()


def test_lift_and_hipart_shapes(exported):
    meta = md.read(onnx.load(str(exported["hipart"])))
    assert set(meta.outputs) == {"dense", "fine", "pose3d", "q_s", "q_d"}
    lift = onnx.load(str(exported["lift"]))
    dims = [d.dim_value or d.dim_param for d in lift.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [161, 2]


def test_paper_size_lift_export_parity(tmp_path):
    """One paper-size export (the lifter: 12 blocks, 6 heads, dim 96 over 161 points) with full parity."""
    torch.manual_seed(1)
    paper = HiPART(HiPARTConfig()).eval()
    path = export_artifact(paper, "lift", tmp_path, model_hash(paper))
    rep = check_artifact(paper, "lift", path, batches=(1, 7), seeds=(0, 1))
    assert rep.worst_rel <= 1e-4, rep.max_rel_err
    assert preflight(onnx.load(str(path)), "10").ok


def test_classification_mode_has_no_static_decode_export(tmp_path):
    from export.hipart_graphs import UnsupportedModelError
    from hipart.models.config import GeneratorConfig

    cfg = HiPARTConfig.tiny()
    cfg.generator = GeneratorConfig(dim=32, heads=4, gcsab_blocks=1, head_blocks=1, dropout=0.0, mode="classification")
    with pytest.raises(UnsupportedModelError, match="autoregressive"):
        export_artifact(HiPART(cfg).eval(), "densify", tmp_path, "h")
    assert list(tmp_path.iterdir()) == []
