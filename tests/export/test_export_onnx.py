"""ONNX export of the stand-in: parity with PyTorch, shape contract, metadata, atomic writes."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
import torch

from calib import onnx_metadata as md
from export.onnx_export import ExportError, GraphSpec, export_module
from export.parity import check_parity
from hipart.atomic_write import OutputDirError, ensure_writable_dir
from hipart.checkpoint import model_hash
from tests.export.standin import StandInStep, make_inputs


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unrolled_parity(standin, standin_onnx, batch, seed):
    rep = check_parity(standin_onnx, standin, make_inputs(batch, seed))
    assert rep.tokens_equal == {"tokens": True}
    assert rep.max_rel_err["points"] <= 1e-4


def test_unrolled_graph_is_straight_line(standin, standin_onnx):
    model = onnx.load(standin_onnx)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    assert "Loop" not in ops and "If" not in ops
    assert ops["ArgMax"] == standin.cfg.steps  # greedy argmax in-graph, one per unrolled step
    assert ops["LayerNormalization"] == standin.cfg.steps * (2 * standin.cfg.layers + 1)
    assert model.opset_import[0].version >= 17


def test_step_parity(standin, standin_step_onnx):
    for b in (1, 7):
        g = torch.Generator().manual_seed(b)
        k, v = (torch.randn(b, *standin.empty_cache(1)[0].shape[1:], generator=g) for _ in range(2))
        inputs = {
            "h": torch.randn(b, standin.cfg.dim, generator=g).numpy(),
            "step": torch.randint(0, standin.cfg.steps, (b,), generator=g).numpy(),
            "past_k": k.numpy(),
            "past_v": v.numpy(),
        }
        rep = check_parity(standin_step_onnx, StandInStep(standin), inputs)
        assert rep.tokens_equal == {"token": True}
        assert rep.worst_rel <= 1e-4, rep.max_rel_err


def test_metadata_and_dynamic_batch(standin, standin_onnx):
    model = onnx.load(standin_onnx)
    meta = md.read(model)
    assert meta.artifact == "standin_densify"
    assert meta.model_hash == model_hash(standin)
    assert meta.opset == 17 and "x_s" in meta.inputs and "tokens" in meta.outputs
    assert "normalize_screen_coordinates" in meta.normalisation
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch"
        assert all(d.dim_value > 0 for d in dims[1:])


def test_hash_changes_with_weights(standin):
    h0 = model_hash(standin)
    other = type(standin)(seed=1)
    assert model_hash(other) != h0


def test_failed_export_leaves_nothing(tmp_path, standin):
    spec = GraphSpec("bad", {"a": "", "b": ""}, {"y": ""})
    with pytest.raises(ExportError):
        export_module(standin, (torch.zeros(1, 17, 2),), spec, tmp_path / "bad.onnx", "h")
    assert list(tmp_path.iterdir()) == []


def test_opset_below_17_rejected(tmp_path, standin):
    spec = GraphSpec("x", {"x_s": ""}, {"p": "", "t": ""})
    with pytest.raises(ExportError, match="opset"):
        export_module(standin, (torch.zeros(1, 17, 2),), spec, tmp_path / "x.onnx", "h", opset=16)


def test_unwritable_output_dir(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputDirError, match="not writable"):
        ensure_writable_dir(f / "sub")


def test_step_graph_batch_first_cache(standin_step_onnx):
    model = onnx.load(standin_step_onnx)
    names = {vi.name: [d.dim_value or d.dim_param for d in vi.type.tensor_type.shape.dim] for vi in model.graph.input}
    assert names["past_k"][0] == "batch" and names["past_k"][1:] == [2, 4, 6, 8]
    assert np.dtype(onnx.helper.tensor_dtype_to_np_dtype(model.graph.input[1].type.tensor_type.elem_type)) == np.int64
