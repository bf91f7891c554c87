"""Backend interface and parity against the torch reference (tokens identical, coordinates close)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edge.backends import BackendError, Result, create_backend
from edge.backends.registry import available_backends, resolve_auto
from edge.backends.tensorrt_backend import TensorRTBackend, check_engine_sidecar
from edge.backends.triton_backend import TritonBackend
from edge.bench import bench_inputs
from hipart.camera import normalize_screen_coordinates

ATOL = 1e-4  # fp32 CPU backends vs torch


def test_torch_backend_matches_model_forward(tiny_model, torch_backend):
    x, conf = bench_inputs(5, seed=1)
    res = torch_backend.run(x, conf)
    ref = tiny_model(torch.from_numpy(x))
    assert isinstance(res, Result) and len(res) == 5
    np.testing.assert_array_equal(res.q_s, ref["q_s"].numpy())
    np.testing.assert_array_equal(res.q_d, ref["q_d"].numpy())
    np.testing.assert_allclose(res.pose3d, ref["pose3d"].numpy(), atol=ATOL)
    np.testing.assert_allclose(res.fine, ref["fine"].numpy(), atol=ATOL)
    assert {"decode", "msst", "lift", "total"} <= set(res.timings)


def test_empty_batch_and_bad_shapes(torch_backend):
    r = torch_backend.run(np.zeros((0, 17, 2), np.float32), np.zeros((0, 17), np.float32))
    assert len(r) == 0 and r.fine.shape == (0, 96, 2) and r.tokens.shape == (0, 64)
    with pytest.raises(ValueError, match=r"\[B, 17, 2\]"):
        torch_backend.run(np.zeros((2, 16, 2), np.float32))
    with pytest.raises(ValueError, match="conf"):
        torch_backend.run(np.zeros((2, 17, 2), np.float32), np.ones((3, 17), np.float32))


def test_nan_inf_and_low_confidence_joints_are_masked(torch_backend):
    x, conf = bench_inputs(3, seed=2)
    x[0, 13] = np.nan
    x[1, 3] = np.inf
    conf[2, [2, 3, 5, 6]] = 0.05
    res = torch_backend.run(x, conf)
    assert np.isfinite(res.pose3d).all() and np.isfinite(res.fine).all()


def test_registry_auto_and_unknown(tmp_path):
    name, why = resolve_auto(tmp_path)
    assert name in ("torch", "onnxruntime", "tensorrt", "triton") and "auto picked" in why
    avail = available_backends(tmp_path)
    assert avail["torch"] == (True, "")
    assert avail["onnxruntime"][0] is False and "hipart.onnx" in avail["onnxruntime"][1]
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend("tflite")


def _export_hipart_onnx(model, out_dir, model_hash):
    art = pytest.importorskip("export.artifacts", reason="export/ or its deps are not installed")
    if not hasattr(art, "export_artifact"):
        pytest.skip("export.artifacts.export_artifact is not available yet (export issue)")
    return art.export_artifact(model, "hipart", out_dir, model_hash)


def test_onnxruntime_parity_with_torch(tiny_model, torch_backend, tmp_path):
    pytest.importorskip("onnxruntime")
    _export_hipart_onnx(tiny_model, tmp_path, torch_backend.model_hash)
    ort_be = create_backend("onnxruntime", artifacts=tmp_path, device="cpu")
    for b in (1, 4):
        x, conf = bench_inputs(b, seed=b)
        a, r = ort_be.run(x, conf), torch_backend.run(x, conf)
        np.testing.assert_array_equal(a.tokens, r.tokens)
        np.testing.assert_allclose(a.pose3d, r.pose3d, atol=ATOL)
        np.testing.assert_allclose(a.dense, r.dense, atol=ATOL)


class _StandIn(torch.nn.Module):
    """A cheap model with the hipart.onnx contract, to test the onnxruntime plumbing without the real export."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.d = torch.nn.Linear(34, 96)
        self.f = torch.nn.Linear(34, 192)
        self.p = torch.nn.Linear(34, 51)
        self.t = torch.nn.Linear(34, 64 * 8)

    def forward(self, x_s):
        z = x_s.flatten(1)
        tok = self.t(z).reshape(-1, 64, 8).argmax(-1)
        return (
            self.d(z).reshape(-1, 48, 2),
            self.f(z).reshape(-1, 96, 2),
            self.p(z).reshape(-1, 17, 3),
            tok[:, :16],
            tok[:, 16:],
        )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnxruntime_backend_plumbing_with_stand_in_model(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    m = _StandIn().eval()
    torch.onnx.export(
        m,
        (torch.zeros(2, 17, 2),),
        tmp_path / "hipart.onnx",
        dynamo=False,
        opset_version=17,
        input_names=["x_s"],
        output_names=["dense", "fine", "pose3d", "q_s", "q_d"],
        dynamic_axes={"x_s": {0: "B"}},
    )
    be = create_backend("onnxruntime", artifacts=tmp_path, device="cpu")
    x, conf = bench_inputs(3, seed=3)
    res = be.run(x, conf)
    with torch.no_grad():
        d, f, p, qs, qd = m(torch.from_numpy(x))
    np.testing.assert_array_equal(res.tokens, torch.cat([qs, qd], 1).numpy())
    np.testing.assert_allclose(res.pose3d, p.numpy(), atol=ATOL)
    assert res.fine.shape == (3, 96, 2) and "hipart" in res.timings
    assert be.info()["providers"] == ["CPUExecutionProvider"]
    assert resolve_auto(tmp_path)[0] == "onnxruntime"  # artifacts present: auto prefers onnxruntime over torch


def test_corrupt_onnx_file_is_a_clear_error(tmp_path):
    pytest.importorskip("onnxruntime")
    (tmp_path / "hipart.onnx").write_bytes(b"\x08\x07garbage, not a protobuf" * 10)
    with pytest.raises(BackendError, match="cannot load .*hipart.onnx"):
        create_backend("onnxruntime", artifacts=tmp_path)
    with pytest.raises(BackendError, match="no hipart.onnx"):
        create_backend("onnxruntime", artifacts=tmp_path / "missing")


def test_triton_backend_parity_with_torch(tiny_model, torch_backend):
    ok, why = TritonBackend.availability()
    if not ok:
        assert "triton backend" in why
        pytest.skip(f"triton backend cannot run here: {why}")
    be = TritonBackend(tiny_model)  # CUDA, or Triton's CPU interpreter where no GPU is present
    ref = create_backend("torch", tiny_model, device=be.device)
    for b in (1, 3):
        x, conf = bench_inputs(b, seed=10 + b)
        a, r = be.run(x, conf), ref.run(x, conf)
        np.testing.assert_array_equal(a.tokens, r.tokens)
        np.testing.assert_allclose(a.pose3d, r.pose3d, atol=1e-3)
        np.testing.assert_allclose(a.fine, r.fine, atol=1e-3)


def test_tensorrt_backend_skips_with_reason(tmp_path):
    ok, why = TensorRTBackend.availability()
    if not ok:
        assert "tensorrt backend" in why
        pytest.skip(f"tensorrt backend cannot run here: {why}")
    engines = list(tmp_path.glob("*.engine"))  # pragma: no cover (GPU machines build engines with hipart-export)
    if not engines:
        pytest.skip("no engine built (run hipart-export on this GPU)")


def test_engine_for_another_version_or_gpu_is_refused(tmp_path):
    engine = tmp_path / "hipart_fp16.engine"
    engine.write_bytes(b"not an engine")
    side = engine.with_suffix(".json")
    side.write_text(json.dumps({"trt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7"}))
    with pytest.raises(BackendError, match="built with TensorRT 10.3.0"):
        check_engine_sidecar(engine, "11.0.1", "H100", "90")
    with pytest.raises(BackendError, match="built for Orin"):
        check_engine_sidecar(engine, "10.3.1", "RTX 4090", "89")
    assert check_engine_sidecar(engine, "10.3.1", "Orin", "87")["gpu_name"] == "Orin"
    side.write_text("{broken")
    with pytest.raises(BackendError, match="unreadable"):
        check_engine_sidecar(engine, "10.3.1", "Orin", "87")


def test_normalisation_round_trip_used_by_pipeline(walk_px, frame_size):
    w, h = frame_size
    x = normalize_screen_coordinates(walk_px, w, h)
    assert np.abs(x).max() <= 1.0


def test_engine_folder_picks_the_engine_built_for_this_gpu(tmp_path):
    for stem, gpu, cc in (("hipart.fp16.orin.sm87", "Orin", "8.7"), ("hipart.fp16.h100.sm90", "H100", "9.0")):
        (tmp_path / f"{stem}.engine").write_bytes(b"engine")
        meta = {"trt_version": "10.3.0", "gpu_name": gpu, "compute_capability": cc, "model_hash": "abc"}
        (tmp_path / f"{stem}.json").write_text(json.dumps(meta))
    path, meta = TensorRTBackend._pick_engine(tmp_path, "fp16", "10.3.0", "H100", "90")
    assert path.name == "hipart.fp16.h100.sm90.engine" and meta["model_hash"] == "abc"
    with pytest.raises(BackendError, match="no int8 .engine"):
        TensorRTBackend._pick_engine(tmp_path, "int8", "10.3.0", "H100", "90")
    with pytest.raises(BackendError, match="1 more engines that do not fit"):
        TensorRTBackend._pick_engine(tmp_path, "fp16", "10.3.0", "RTX 4090", "89")
