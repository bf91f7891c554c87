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
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    rc = cli_bench.main(["--config", "tiny", "--backends", "torch", "--batch", "1,2", "--iters", "2",
                         "--json", str(out), "--report", str(png)])  # fmt: skip
    assert rc == 0 and json.loads(out.read_text())["rows"][0]["batch"] == 1
    import cv2

    img = cv2.imread(str(png))  # a real picture, two panels wide
    assert img is not None and img.shape[1] > img.shape[0] > 300
    assert "| torch | 1 |" in capsys.readouterr().out
    assert cli_bench.main(["--backends", "tflite"]) == 2
    assert "unknown backend" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_bench.main(["--batch", "0"])
    for flag, value in (("--iters", "0"), ("--threads", "-2"), ("--device", "banana"), ("--max-seconds", "nan")):
        with pytest.raises(SystemExit) as e:
            cli_bench.main([flag, value])
        assert e.value.code == 2


def test_bench_cli_exits_1_when_every_backend_was_skipped(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HIPART_ARTIFACTS", str(tmp_path / "none"))
    rc = cli_bench.main(["--config", "tiny", "--backends", "tensorrt", "--batch", "1", "--artifacts", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "nothing was timed: every requested backend was skipped" in err and "tensorrt" in err


def test_bench_cli_finds_or_exports_the_onnx_model_then_compares_every_backend(
    tiny_model, tmp_path, monkeypatch, capsys
):
    pytest.importorskip("onnxruntime")
    from hipart.checkpoint import model_hash, save_checkpoint

    monkeypatch.chdir(tmp_path)  # the default folder, ./exported, is then under tmp_path
    monkeypatch.delenv("HIPART_ARTIFACTS", raising=False)
    save_checkpoint(tmp_path / "tiny.pt", tiny_model)
    h = model_hash(tiny_model)
    args = ["--checkpoint", "tiny.pt", "--batch", "1", "--iters", "2", "--warmup", "1", "--json", "r.json"]
    assert cli_bench.main(args) == 0
    err = capsys.readouterr().err
    assert f"note: no manifest.json or hipart.onnx in exported: exporting tiny.pt [{h}] there first" in err
    entry = json.loads((tmp_path / "exported" / "manifest.json").read_text())["artifacts"]["hipart.fp32"]
    assert entry["model_hash"] == h and entry["file"] == "hipart.onnx"
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [(r["backend"], r["batch"]) for r in rep["rows"]] == [("torch", 1), ("onnxruntime", 1)]
    assert set(rep["skipped"]) == {"triton", "tensorrt"} and all(rep["skipped"].values())  # no GPU here: reasons
    assert cli_bench.main(args) == 0  # found through the manifest: no second export
    assert "exporting" not in capsys.readouterr().err
    assert [r["backend"] for r in json.loads((tmp_path / "r.json").read_text())["rows"]] == ["torch", "onnxruntime"]
    torch.manual_seed(1)
    from hipart.models.config import HiPARTConfig
    from hipart.models.hipart import HiPART

    other = HiPART(HiPARTConfig.tiny()).eval()
    save_checkpoint(tmp_path / "other.pt", other)
    assert cli_bench.main([*args[:1], "other.pt", *args[2:]]) == 0  # an export of another model is never overwritten
    assert "exporting" not in capsys.readouterr().err
    skipped = json.loads((tmp_path / "r.json").read_text())["skipped"]["onnxruntime"]
    assert f"was made for model {h} (hipart.onnx); checkpoint other.pt is {model_hash(other)}" in skipped


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


class _NotAPoseModel(torch.nn.Module):
    def forward(self, x):
        return x.mean((2, 3))  # [N,3]: a valid ONNX model, but no keypoints


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("layout", ["topdown", "yolo"])
def test_onnx_detector_refuses_a_valid_non_pose_model_at_load(tmp_path, layout):
    pytest.importorskip("onnx")
    from edge.detectors import DetectorError, create_detector

    path = tmp_path / "cls.onnx"
    torch.onnx.export(_NotAPoseModel(), (torch.zeros(1, 3, 256, 192),), path, dynamo=False, opset_version=17)
    with pytest.raises(DetectorError, match="is not a (top-down 17-keypoint|YOLO-pose) model"):
        create_detector("onnx", str(path), layout=layout)
