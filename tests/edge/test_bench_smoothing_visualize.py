"""hipart-bench harness, One-Euro smoothing, the fixed 3D view, and the ONNX detector plug-in."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edge import cli_bench
from edge.bench import run_bench, to_markdown
from edge.smoothing import OneEuroFilter, PoseSmoother
from edge.visualize import project_view, render_3d_panel, view_rotation


def test_bench_side_by_side_table_and_skips(loaded, tmp_path):
    rep = run_bench(loaded, ["torch", "onnxruntime", "tensorrt"], [1, 2], iters=2, warmup=1, artifacts=tmp_path)
    assert [(r.backend, r.batch) for r in rep.rows] == [("torch", 1), ("torch", 2)]
    assert set(rep.skipped) == {"onnxruntime", "tensorrt"} and all(rep.skipped.values())
    r = rep.rows[0]
    assert r.median_ms > 0 and r.gflop > 0 and 0 < r.pct_of_ceiling < 100 and r.speedup_vs_torch == 1.0
    assert {"decode", "msst", "lift"} <= set(r.stages_ms)
    md = to_markdown(rep)
    assert "| torch | 1 |" in md and "skipped onnxruntime" in md and "GFLOP/s" in md
    assert json.loads(rep.to_json())["env"]["model_hash"] == loaded.model_hash


def test_bench_cli_json_and_bad_args(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = cli_bench.main(["--config", "tiny", "--backends", "torch", "--batch", "1", "--iters", "2", "--json", str(out)])
    assert rc == 0 and json.loads(out.read_text())["rows"][0]["batch"] == 1
    assert "| torch | 1 |" in capsys.readouterr().out
    assert cli_bench.main(["--backends", "tflite"]) == 2
    assert "unknown backend" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_bench.main(["--batch", "0"])


def test_one_euro_passes_constants_and_reduces_jitter():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    const = np.ones((2, 17, 3), np.float32)
    for i in range(10):
        np.testing.assert_allclose(f(const, i / 30), const)
    rng = np.random.default_rng(0)
    noisy = [const + rng.normal(0, 0.05, const.shape).astype(np.float32) for _ in range(60)]
    f.reset()
    out = [f(x, i / 30) for i, x in enumerate(noisy)]
    assert np.std(np.stack(out[10:])) < 0.5 * np.std(np.stack(noisy[10:]))
    s = PoseSmoother()
    assert s(np.zeros((0, 17, 3), np.float32), 0.0).shape == (0, 17, 3)


def test_fixed_3d_view_and_panel():
    r = view_rotation()
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-6)
    centre = project_view(np.zeros(3), 400)
    np.testing.assert_allclose(centre, [200, 200])  # pelvis at the panel centre
    panel = render_3d_panel(np.zeros((1, 17, 3)) + np.nan, 200)  # non-finite poses are skipped, not drawn
    assert panel.shape == (200, 200, 3)


class _HeatmapModel(torch.nn.Module):
    """A fake top-down pose model: fixed heatmap peaks whatever the input (tests the plug-in plumbing)."""

    def forward(self, x):
        hm = torch.zeros(1, 17, 64, 48) + x.mean() * 0
        hm[:, :, 32, 24] = 1.0  # centre of the heatmap = centre of the crop
        return hm


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_topdown_detector_plugin(tmp_path):
    pytest.importorskip("onnx")
    from edge.detectors import DetectorError, create_detector

    path = tmp_path / "pose.onnx"
    torch.onnx.export(_HeatmapModel(), (torch.zeros(1, 3, 256, 192),), path, dynamo=False, opset_version=17)
    det = create_detector("onnx", str(path))
    got = det(np.zeros((480, 640, 3), np.uint8))
    assert len(got) == 1
    np.testing.assert_allclose(got.keypoints[0, 1], [320, 240], atol=8)  # r_hip copied from COCO at frame centre
    assert got.conf[0, 1] == pytest.approx(1.0)
    (tmp_path / "bad.onnx").write_bytes(b"nope")
    with pytest.raises(DetectorError, match="cannot load detector model"):
        create_detector("onnx", str(tmp_path / "bad.onnx"))
    with pytest.raises(DetectorError, match="needs --detector-model"):
        create_detector("onnx")
