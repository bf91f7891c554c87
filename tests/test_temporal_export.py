"""ONNX export of the temporal lifter: TPS + TRI parity with PyTorch, static shapes, dynamic strategies."""

from __future__ import annotations

import collections

import onnx
import pytest
import torch

from calib import onnx_metadata as md
from export.onnx_export import ExportError
from export.temporal_onnx import check_temporal_parity, export_temporal
from hipart.models.temporal import TemporalConfig, TemporalLifter


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def model(**kw) -> TemporalLifter:
    torch.manual_seed(0)
    base = dict(frames=9, dim=16, blocks=3, heads=2, prune="tps", recover="tri", schedule_r=(5, 3), schedule_b=(0, 1))
    return TemporalLifter(TemporalConfig(**{**base, **kw})).eval()


@pytest.mark.parametrize("pipeline", ["seq2seq", "seq2frame"])
def test_tps_tri_parity_and_static_shapes(tmp_path, pipeline):
    m = model(pipeline=pipeline, output_frame="last")
    path = export_temporal(m, tmp_path / "temporal_lift.onnx")
    for batch, seed in ((1, 0), (3, 1)):
        rep = check_temporal_parity(path, m, batch, seed)
        assert rep.max_abs_err["pose3d"] < 1e-5
    g = onnx.load(path)
    ops = collections.Counter(n.op_type for n in g.graph.node)
    assert ops["TopK"] == 0 and ops["GatherElements"] == 0 and ops["Loop"] == 0  # no data-dependent selection
    out = g.graph.output[0].type.tensor_type.shape.dim
    assert out[0].dim_param == "batch"
    assert [d.dim_value for d in out[1:]] == ([9, 17, 3] if pipeline == "seq2seq" else [17, 3])
    assert md.read(g).artifact == "temporal_lift"


def test_dynamic_strategies_need_opting_in_and_then_match(tmp_path):
    m = model(prune="tpc", recover="tra")
    with pytest.raises(ExportError, match="TopK \\+ GatherElements"):
        export_temporal(m, tmp_path / "tpc.onnx")
    path = export_temporal(m, tmp_path / "tpc.onnx", allow_dynamic=True)
    assert check_temporal_parity(path, m, 2, 0).max_abs_err["pose3d"] < 1e-5
    ops = collections.Counter(n.op_type for n in onnx.load(path).graph.node)
    assert ops["TopK"] >= 2 and ops["GatherElements"] >= 2


def test_cli_export(tmp_path, capsys):
    from export.temporal_cli import main
    from hipart.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "t.pt", model())
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "a" / "t.onnx")]) == 0
    assert "max abs error" in capsys.readouterr().out and (tmp_path / "a" / "t.onnx").exists()
    dyn = save_checkpoint(tmp_path / "d.pt", model(prune="tpa", recover="tra"))
    assert main(["export", "--checkpoint", str(dyn), "--out", str(tmp_path / "d.onnx")]) == 1
    assert "allow_dynamic" in capsys.readouterr().err


def test_cli_export_into_the_artifacts_folder_lists_it_in_the_manifest(tmp_path, capsys):
    from export.manifest import load_manifest, resolve
    from export.temporal_cli import main
    from hipart.checkpoint import model_hash, save_checkpoint

    m = model()
    ckpt = save_checkpoint(tmp_path / "t.pt", m)
    assert main(["export", "--checkpoint", str(ckpt), "--artifacts", str(tmp_path / "exported")]) == 0
    man = load_manifest(tmp_path / "exported")
    e = man.entries["temporal_lift.fp32"]
    assert e.file == "temporal_lift.onnx" and e.model_hash == model_hash(m) and e.opset
    path, _ = resolve(tmp_path / "exported", "temporal_lift", "fp32")
    assert path.name == "temporal_lift.onnx" and "manifest" in capsys.readouterr().out
