"""Backend interface and parity against the torch reference (tokens identical, coordinates close)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edge.backends import BACKENDS, BackendError, Result, create_backend
from edge.backends.registry import availability, available_backends, default_artifacts_dir, resolve_auto
from edge.backends.tensorrt_backend import TensorRTBackend, select_engine
from edge.backends.triton_backend import TritonBackend
from edge.bench import bench_inputs
from export.engine_cache import EngineCache, EngineKey
from export.manifest import ExpectedModel, Manifest
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


def test_registry_is_a_table_of_backend_classes(tmp_path, tiny_model):
    from edge.backends import Backend
    from edge.backends.registry import ARTIFACT_BACKENDS, REGISTRY, backend_class

    assert BACKENDS == tuple(REGISTRY) == ("torch", "onnxruntime", "triton", "tensorrt")
    for name in BACKENDS:
        cls = backend_class(name)
        assert issubclass(cls, Backend) and cls.name == name and cls.needs_model == (name not in ARTIFACT_BACKENDS)
        ok, why = availability(name, tmp_path)
        assert ok == (why == "") and (ok or why.startswith(f"{name} backend"))
    assert create_backend("torch", tiny_model, device="cpu").name == "torch"
    with pytest.raises(BackendError, match="torch backend needs the PyTorch model"):
        create_backend("torch")
    name, note = resolve_auto(tmp_path)  # nothing exported there, no GPU: torch, with every skipped reason on a line
    if name == "torch":
        assert "\n" not in note and "skipped tensorrt: " in note and "; onnxruntime: no manifest.json" in note


def _export_hipart_onnx(model, out_dir, model_hash):
    art = pytest.importorskip("export.artifacts", reason="export/ or its deps are not installed")
    if not hasattr(art, "export_artifact"):
        pytest.skip("export.artifacts.export_artifact is not available yet (export issue)")
    return art.export_artifact(model, "hipart", out_dir, model_hash)


def test_onnxruntime_parity_with_torch(tiny_model, torch_backend, tmp_path):
    pytest.importorskip("onnxruntime")
    _export_hipart_onnx(tiny_model, tmp_path, torch_backend.model_hash)  # a folder without manifest (old export)
    ort_be = create_backend("onnxruntime", artifacts=tmp_path, device="cpu")
    for b in (1, 4):
        x, conf = bench_inputs(b, seed=b)
        a, r = ort_be.run(x, conf), torch_backend.run(x, conf)
        np.testing.assert_array_equal(a.tokens, r.tokens)
        np.testing.assert_allclose(a.pose3d, r.pose3d, atol=ATOL)
        np.testing.assert_allclose(a.dense, r.dense, atol=ATOL)
    assert ort_be.info()["manifest"] is None and ort_be.artifact_hash == torch_backend.model_hash
    # without a manifest the model hash in the ONNX metadata is still checked against the model asked for
    other = ExpectedModel("0123456789abcdef", "checkpoint other.pt")
    with pytest.raises(BackendError, match=f"exported from model {torch_backend.model_hash}; checkpoint other.pt "
                                           "is 0123456789abcdef"):  # fmt: skip
        create_backend("onnxruntime", artifacts=tmp_path, device="cpu", expected=other)


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


def _export_stand_in(m: torch.nn.Module, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        m,
        (torch.zeros(2, 17, 2),),
        path,
        dynamo=False,
        opset_version=17,
        input_names=["x_s"],
        output_names=["dense", "fine", "pose3d", "q_s", "q_d"],
        dynamic_axes={"x_s": {0: "B"}},
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnxruntime_backend_plumbing_with_stand_in_model(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    m = _StandIn().eval()
    _export_stand_in(m, tmp_path / "hipart.onnx")
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


def test_normalisation_round_trip_used_by_pipeline(walk_px, frame_size):
    w, h = frame_size
    x = normalize_screen_coordinates(walk_px, w, h)
    assert np.abs(x).max() <= 1.0


# --- the artifact contract: backends find their files through <folder>/manifest.json (export/manifest.py) ---

H200 = ("NVIDIA H200", "9.0", "10.3.0")  # (GPU name, compute capability, TensorRT version) as export/ records them
ORIN = ("NVIDIA Jetson AGX Orin", "8.7", "10.3.0")


def _store_engine(root, artifact, precision, device, model_hash="aaaa000011112222"):
    """An engine + sidecar as hipart-export writes them, and its manifest entry."""
    gpu, cc, trt = device
    key = EngineKey(model_hash, gpu, cc, trt, precision)
    path = EngineCache(root / "engines").store(artifact, key, f"{artifact}-{gpu}".encode())
    return dict(path=path, artifact=artifact, kind="engine", precision=precision, model_hash=model_hash,
                engine={"gpu_name": gpu, "compute_capability": cc, "trt_version": trt})  # fmt: skip


def _manifest(root, entries, model_hash="aaaa000011112222"):
    man = Manifest(root, model_hash=model_hash, model_source="test")
    for e in entries:
        e = dict(e)
        man.add_file(e.pop("path"), **e)
    man.write()
    return man


def test_tensorrt_picks_the_hipart_engine_by_name_for_this_gpu(tmp_path):
    entries = [
        _store_engine(tmp_path, "decode_step", "fp16", H200),  # sorts before hipart.*: never taken for hipart
        _store_engine(tmp_path, "hipart", "fp16", ORIN),
        _store_engine(tmp_path, "hipart", "fp16", H200),
        _store_engine(tmp_path, "hipart", "int8", H200),
    ]
    _manifest(tmp_path, entries)
    assert sorted(p.name for p in (tmp_path / "engines").glob("*.engine"))[0].startswith("decode_step.")
    path, side = select_engine(tmp_path, "fp16", H200)
    assert path == entries[2]["path"] and path.read_bytes() == b"hipart-NVIDIA H200"
    assert side["gpu_name"] == "NVIDIA H200" and side["precision"] == "fp16" and side["artifact"] == "hipart"
    assert select_engine(tmp_path, "int8", H200)[0] == entries[3]["path"]
    assert select_engine(tmp_path, None, H200)[0] == entries[2]["path"]  # no precision: fp16 first
    assert select_engine(tmp_path, "fp16", ORIN)[0] == entries[1]["path"]
    with pytest.raises(BackendError, match=r"no hipart fp16 engine for this GPU \(RTX 4090, sm 8.9, TensorRT 10.3.0\)"):
        select_engine(tmp_path, "fp16", ("RTX 4090", "8.9", "10.3.0"))
    with pytest.raises(BackendError, match="no hipart fp16 engine for this GPU .* TensorRT 11.0.0.*not portable"):
        select_engine(tmp_path, "fp16", (*H200[:2], "11.0.0"))
    with pytest.raises(BackendError, match=r"lists no hipart fp32 engine .*on this GPU with `hipart-export --out"):
        select_engine(tmp_path, "fp32", H200)


def test_tensorrt_engine_model_mismatch_missing_file_and_sidecar(tmp_path):
    entry = _store_engine(tmp_path, "hipart", "fp16", H200)
    _manifest(tmp_path, [entry])
    bundled = ExpectedModel("1a2b3c4d5e6f7a8b", "the bundled model")
    with pytest.raises(BackendError) as e:
        select_engine(tmp_path, "fp16", H200, bundled)
    msg = str(e.value)
    assert f"{tmp_path / 'manifest.json'} was made for model aaaa000011112222" in msg
    assert "the bundled model is 1a2b3c4d5e6f7a8b: re-run `hipart-export" in msg
    assert select_engine(tmp_path, "fp16", H200, ExpectedModel("aaaa000011112222"))[0] == entry["path"]
    side = entry["path"].with_suffix(".json")  # the one sidecar check (export/engine_cache.verify_sidecar) runs too
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "trt_version": "10.2.0"}))
    with pytest.raises(BackendError, match="trt_version: engine has '10.2.0', this system has '10.3.0'"):
        select_engine(tmp_path, "fp16", H200)
    side.write_text(json.dumps(meta))
    entry["path"].unlink()
    with pytest.raises(BackendError, match=r"lists .*hipart\.fp16\.nvidia-h200.*, but the file is missing"):
        select_engine(tmp_path, "fp16", H200)


def test_tensorrt_folder_without_manifest_and_explicit_engine(tmp_path):
    entry = _store_engine(tmp_path, "hipart", "fp16", H200)
    with pytest.raises(BackendError, match=r"no manifest.json in .*re-run `hipart-export --fp16 --out"):
        select_engine(tmp_path / "engines", None, H200)
    path, side = select_engine(entry["path"], None, H200)  # an explicit .engine file: its sidecar is checked
    assert path == entry["path"] and side["model_hash"] == "aaaa000011112222"
    with pytest.raises(BackendError, match="compute_capability: engine has '9.0', this system has '8.7'"):
        select_engine(entry["path"], None, ORIN)
    with pytest.raises(BackendError, match="model_hash: engine has 'aaaa000011112222', this system has 'ffff'"):
        select_engine(entry["path"], None, H200, ExpectedModel("ffff"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnxruntime_reads_hipart_by_name_from_the_manifest(tmp_path):
    pytest.importorskip("onnxruntime")
    m = _StandIn().eval()
    _export_stand_in(m, tmp_path / "v2" / "hipart.onnx")
    (tmp_path / "hipart.onnx").write_bytes(b"stale, not an ONNX model")  # what a glob or the old lookup would take
    (tmp_path / "decode_step.onnx").write_bytes(b"sorts first")
    lift = tmp_path / "lift.onnx"
    lift.write_bytes(b"lift")
    h = "aaaa000011112222"
    _manifest(tmp_path, [dict(path=tmp_path / "v2" / "hipart.onnx", artifact="hipart", kind="onnx", precision="fp32",
                              model_hash=h, opset=17),
                         dict(path=lift, artifact="lift", kind="onnx", precision="fp32", model_hash=h)])  # fmt: skip
    be = create_backend("onnxruntime", artifacts=tmp_path, device="cpu", expected=ExpectedModel(h))
    assert be.info()["artifacts"] == {"hipart": str(tmp_path / "v2" / "hipart.onnx")}
    assert be.info()["manifest"] == str(tmp_path / "manifest.json")
    x, conf = bench_inputs(2, seed=5)
    with torch.no_grad():
        np.testing.assert_allclose(be.run(x, conf).pose3d, m(torch.from_numpy(x))[2].numpy(), atol=ATOL)
    assert availability("onnxruntime", tmp_path, ExpectedModel(h)) == (True, "")


def test_onnxruntime_manifest_errors_name_both_sides(tmp_path):
    pytest.importorskip("onnxruntime")
    f = tmp_path / "hipart.onnx"
    f.write_bytes(b"model bytes")
    _manifest(tmp_path, [dict(path=f, artifact="hipart", kind="onnx", precision="fp32", model_hash="8e5faeefbe0f7d61")])
    bundled = ExpectedModel("1a2b3c4d5e6f7a8b", "the bundled model")
    with pytest.raises(BackendError) as e:
        create_backend("onnxruntime", artifacts=tmp_path, device="cpu", expected=bundled)
    assert str(e.value) == (
        f"onnxruntime backend: {tmp_path / 'manifest.json'} was made for model 8e5faeefbe0f7d61 (hipart.onnx); "
        f"the bundled model is 1a2b3c4d5e6f7a8b: re-run `hipart-export --out {tmp_path}` for it (or pass the "
        "checkpoint those artifacts were exported from)"
    )
    ok, why = availability("onnxruntime", tmp_path, bundled)
    assert not ok and "8e5faeefbe0f7d61" in why and "1a2b3c4d5e6f7a8b" in why
    name, note = resolve_auto(tmp_path, bundled)
    assert name != "onnxruntime" and "was made for model 8e5faeefbe0f7d61" in note
    f.write_bytes(b"other bytes")
    with pytest.raises(BackendError, match=r"hipart.onnx changed since .*manifest.json was written"):
        create_backend("onnxruntime", artifacts=tmp_path, device="cpu")
    f.unlink()
    with pytest.raises(BackendError, match=r"lists .*hipart.onnx \(hipart fp32 onnx\), but the file is missing"):
        create_backend("onnxruntime", artifacts=tmp_path, device="cpu")
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(BackendError, match="manifest.json is unreadable"):
        create_backend("onnxruntime", artifacts=tmp_path, device="cpu")


def test_default_artifacts_folder_is_the_export_default(monkeypatch, tmp_path):
    from export.cli import build_parser

    monkeypatch.delenv("HIPART_ARTIFACTS", raising=False)
    assert default_artifacts_dir() == build_parser().parse_args([]).out == Path("exported")
    monkeypatch.setenv("HIPART_ARTIFACTS", str(tmp_path))
    assert default_artifacts_dir() == tmp_path
    ok, why = availability("onnxruntime")
    assert not ok and f"no manifest.json and no hipart.onnx (or densify.onnx + lift.onnx) in {tmp_path}" in why


# --- onnxruntime "step" mode: decode_step looped in numpy + detokenize + lift (fast session start) ---


def _export_set(model, out, names):
    """Export `names` for `model` into `out` with a manifest (what `hipart-export --only ...` writes)."""
    art = pytest.importorskip("export.artifacts", reason="export/ or its deps are not installed")
    from hipart.checkpoint import model_hash

    h = model_hash(model)
    man = Manifest(out, model_hash=h, model_source="tiny test model")
    for n in names:
        man.add_file(art.export_artifact(model, n, out, h), artifact=n, kind="onnx", precision="fp32", model_hash=h)
    man.write()
    return out


@pytest.fixture(scope="module")
def step_folder(tiny_model, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    return _export_set(tiny_model, tmp_path_factory.mktemp("ort_step"), ("decode_step", "detokenize", "lift", "hipart"))


def test_onnxruntime_step_mode_matches_torch_and_hipart_mode(step_folder, torch_backend):
    from edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    step = create_backend("onnxruntime", artifacts=step_folder, device="cpu", threads=1)
    hip = OnnxRuntimeBackend(step_folder, device="cpu", threads=1, mode="hipart")
    assert step.mode == "step" and hip.mode == "hipart"
    assert set(step.info()["artifacts"]) == {"decode_step", "detokenize", "lift"} and step.info()["mode"] == "step"
    for b in (1, 5):
        x, conf = bench_inputs(b, seed=20 + b)
        a, h, r = step.run(x, conf), hip.run(x, conf), torch_backend.run(x, conf)
        np.testing.assert_array_equal(a.tokens, r.tokens)
        np.testing.assert_array_equal(a.tokens, h.tokens)
        for f in ("dense", "fine", "pose3d"):
            np.testing.assert_allclose(getattr(a, f), getattr(r, f), atol=ATOL)
            np.testing.assert_allclose(getattr(a, f), getattr(h, f), atol=1e-5)
            assert getattr(a, f).dtype == np.float32
        assert a.tokens.dtype == np.int64 and {"decode", "msst", "lift", "total"} <= set(a.timings)
    assert step.artifact_hash == torch_backend.model_hash
    assert len(step.infer(np.zeros((0, 17, 2), np.float32))) == 0


def test_onnxruntime_mode_selection(step_folder, tmp_path, monkeypatch):
    from edge.backends.onnxruntime_backend import MODE_ENV, find_artifacts, mode_of

    monkeypatch.delenv(MODE_ENV, raising=False)
    assert mode_of(find_artifacts(step_folder)) == "step"  # step set + hipart listed: step first
    assert mode_of(find_artifacts(step_folder, mode="hipart")) == "hipart"
    assert mode_of(find_artifacts(step_folder / "hipart.onnx")) == "hipart"
    # the manifest lists hipart but not detokenize (an export older than detokenize): hipart, as before
    man = json.loads((step_folder / "manifest.json").read_text())
    old = tmp_path / "old"
    old.mkdir()
    for n in ("decode_step", "lift", "hipart"):
        (old / f"{n}.onnx").write_bytes((step_folder / f"{n}.onnx").read_bytes())
    man["artifacts"] = {k: v for k, v in man["artifacts"].items() if not k.startswith("detokenize")}
    (old / "manifest.json").write_text(json.dumps(man))
    assert mode_of(find_artifacts(old)) == "hipart"
    with pytest.raises(BackendError, match="detokenize"):
        find_artifacts(old, mode="step")
    with pytest.raises(BackendError, match="unknown mode 'loop'"):
        find_artifacts(old, mode="loop")
    monkeypatch.setenv(MODE_ENV, "hipart")
    assert create_backend("onnxruntime", artifacts=step_folder, device="cpu", threads=1).mode == "hipart"
    monkeypatch.setenv(MODE_ENV, "step")
    ok, why = availability("onnxruntime", old)
    assert not ok and "detokenize" in why


def test_onnxruntime_step_mode_sparse_lifter(tmp_path, one_torch_thread):
    """lifter_input sparse: lift.onnx takes x_s alone; the step mode feeds it what the model's lifter expects."""
    pytest.importorskip("onnxruntime")
    from hipart.models.config import HiPARTConfig
    from hipart.models.hipart import HiPART

    torch.manual_seed(3)
    model = HiPART(HiPARTConfig.tiny(lifter_input="sparse")).eval()
    folder = _export_set(model, tmp_path, ("decode_step", "detokenize", "lift"))
    be = create_backend("onnxruntime", artifacts=folder, device="cpu", threads=1)
    x, _ = bench_inputs(3, seed=4)
    res = be.infer(x)
    ref = model(torch.from_numpy(x))
    assert be.mode == "step"
    np.testing.assert_array_equal(res.q_s, ref["q_s"].numpy())
    np.testing.assert_array_equal(res.q_d, ref["q_d"].numpy())
    np.testing.assert_allclose(res.pose3d, ref["pose3d"].numpy(), atol=ATOL)
    np.testing.assert_allclose(res.fine, ref["fine"].numpy(), atol=ATOL)
