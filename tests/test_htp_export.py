"""ONNX export of the HTP sampler (htp_lift.onnx): parity with `HTPDenoiser.lift` on fixed noise, static shapes,
metadata, the frozen lifter folded in, and `hipart-temporal export` into the artifacts folder's manifest.

Parity inputs are realistic (a drifting, jittered 2D pose; `export.htp_onnx.sample_inputs`): on exactly repeated
frames TCEP's similarities can tie up to rounding and onnxruntime may then select other neighbours than PyTorch
(docs/TEMPORAL.md, HTP "Known limits"); that is a property of the selection, not an export error.
"""

from __future__ import annotations

import collections
import json
from dataclasses import asdict

import onnx
import pytest
import torch

from calib import onnx_metadata as md
from export.htp_onnx import check_htp_parity, deployed_sampling, export_htp, sample_inputs
from hipart.checkpoint import model_hash, save_checkpoint
from hipart.models.htp import HTPConfig, HTPDenoiser

T = 9


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def model(**kw) -> HTPDenoiser:
    torch.manual_seed(0)
    m = HTPDenoiser(HTPConfig.small(T, mgptp_k=2, **kw)).eval()
    with torch.no_grad():  # an untrained residual head is zero: give it weights so parity sees the whole graph
        m.head[1].weight.normal_(0, 0.3)
    return m


@pytest.mark.parametrize("hypotheses, steps", [(2, 2), (1, 1)])
def test_parity_with_lift_on_fixed_noise_and_static_shapes(tmp_path, hypotheses, steps):
    m = model()
    path = export_htp(m, tmp_path / "htp_lift.onnx", hypotheses, steps)
    for batch, seed in ((1, 0), (3, 1)):
        assert check_htp_parity(path, m, batch, seed).max_abs_err["pose3d"] <= 1e-4
    g = onnx.load(path)
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(g.graph.input) + list(g.graph.output)}  # fmt: skip
    assert dims == {"x": ["batch", T, 17, 2], "noise": ["batch", hypotheses, T, 17, 3], "intrinsics": ["batch", 4],
                    "visible": ["batch", T, 17], "pose3d": ["batch", T, 17, 3]}  # fmt: skip
    ops = collections.Counter(n.op_type for n in g.graph.node)
    assert ops["TopK"] >= 2 and ops["Loop"] == 0  # TCEP / MGPTP selections inside, the K steps unrolled
    meta = md.read(g)
    assert meta.artifact == "htp_lift" and meta.model_hash == model_hash(m)
    assert (meta.extra["hypotheses"], meta.extra["steps"]) == (str(hypotheses), str(steps))
    assert json.loads(meta.extra["htp_config"]) == m.config.to_dict()


def test_the_frozen_lifter_is_folded_into_the_graph(tmp_path, tiny_model):
    """condition 'lifter' on a 161-point lifter: the only pose input is x [B, T, 161, 2]."""
    cfg = dict(condition="lifter", lifter=asdict(tiny_model.lifter.config), num_points=161)
    m = model(**cfg).load_lifter(tiny_model.lifter)
    path = export_htp(m, tmp_path / "htp_lift.onnx", 2, 1)
    assert check_htp_parity(path, m, 2, 0).max_abs_err["pose3d"] <= 1e-4
    assert [i.name for i in onnx.load(path).graph.input] == ["x", "noise", "intrinsics", "visible"]
    assert sample_inputs(m, 2)["x"].shape == (2, T, 161, 2)


def test_cli_export_into_the_artifacts_folder_and_deployed_defaults(tmp_path, capsys):
    from export.manifest import load_manifest
    from export.temporal_cli import main

    m = model()
    ckpt = save_checkpoint(tmp_path / "htp.pt", m, extra={"deploy": {"hypotheses": 2, "steps": 1}})
    assert main(["export", "--checkpoint", str(ckpt), "--artifacts", str(tmp_path / "exported")]) == 0
    out = capsys.readouterr().out
    assert "HTP H=2 K=1" in out and "max abs error" in out and "manifest" in out
    e = load_manifest(tmp_path / "exported").entries["htp_lift.fp32"]
    assert e.file == "htp_lift.onnx" and e.model_hash == model_hash(m) and e.opset and e.sha256
    assert main(["export", "--checkpoint", str(ckpt), "--hypotheses", "3", "--out", str(tmp_path / "a.onnx")]) == 0
    assert md.read(onnx.load(tmp_path / "a.onnx")).extra["hypotheses"] == "3"
    assert deployed_sampling({}) == (3, 2) and deployed_sampling({"extra": {"deploy": {"steps": 5}}}) == (3, 5)
    hip = tmp_path / "bad.pt"
    hip.write_bytes(b"junk")
    assert main(["export", "--checkpoint", str(hip), "--out", str(tmp_path / "b.onnx")]) == 1
