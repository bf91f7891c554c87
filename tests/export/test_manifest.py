"""The artifact contract: <out>/manifest.json written by hipart-export, merged on re-runs, read by the runtimes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest

from calib import onnx_metadata as md
from calib.bundled import bundled_calibration_path, load_bundled
from calib.calibration_set import greedy_k_center
from export.cli import main
from export.engine_cache import EngineKey
from export.manifest import (
    ArtifactFileMissing,
    Entry,
    ExpectedModel,
    Manifest,
    ManifestError,
    ManifestMissing,
    ModelMismatch,
    array_hash,
    load_manifest,
    resolve,
    resolve_engine,
)
from export.pipeline import EXIT_OK

FAST_INT8 = ["--fallback-trials", "0", "--no-parity", "--max-drift-mm", "1e9", "--min-token-agreement", "0",
             "--max-output-err", "1e9"]  # fmt: skip


def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_manifest_round_trip_and_merge(tmp_path):
    a = _write(tmp_path / "hipart.onnx", b"model A fp32")
    q = _write(tmp_path / "hipart.int8.onnx", b"model A int8")
    first = Manifest(tmp_path, model_hash="aaaa", model_source="run 1", calibration={"hash": "c0ffee", "poses": 8})
    first.add_file(a, artifact="hipart", kind="onnx", precision="fp32", model_hash="aaaa", opset=17)
    first.add_file(q, artifact="hipart", kind="onnx", precision="int8", model_hash="aaaa", opset=17,
                   calibration_hash="c0ffee", status="DRIFT > target")  # fmt: skip
    first.write()
    got = load_manifest(tmp_path)
    assert got.to_dict() == first.to_dict()
    assert got.entries["hipart.fp32"] == Entry("hipart", "hipart.onnx", "onnx", "fp32", "aaaa", 17, 12,
                                               hashlib.sha256(b"model A fp32").hexdigest())  # fmt: skip
    assert got.entries["hipart.int8"].calibration_hash == "c0ffee" and got.entries["hipart.int8"].status != "ok"
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert doc["format"] == "hipart-edge/artifacts" and doc["format_version"] == 1 and doc["model_hash"] == "aaaa"
    assert doc["artifacts"]["hipart.fp32"]["file"] == "hipart.onnx" and "engine" not in doc["artifacts"]["hipart.fp32"]

    # a second run (another model, fp32 only) into the same folder: its entries win, the others stay listed
    _write(a, b"model B fp32")
    lift = _write(tmp_path / "lift.onnx", b"model B lift")
    eng = _write(tmp_path / "engines" / "lift.fp16.x.engine", b"engine")
    second = Manifest(tmp_path, model_hash="bbbb", model_source="run 2")
    second.add_file(a, artifact="hipart", kind="onnx", precision="fp32", model_hash="bbbb", opset=17)
    second.add_file(lift, artifact="lift", kind="onnx", precision="fp32", model_hash="bbbb", opset=17)
    h200 = {"gpu_name": "NVIDIA H200", "compute_capability": "9.0", "trt_version": "10.3.0"}
    second.add_file(eng, artifact="lift", kind="engine", precision="fp16", model_hash="bbbb", source="lift.onnx",
                    engine=h200)  # fmt: skip
    second.write()
    merged = load_manifest(tmp_path)
    assert sorted(merged.entries) == ["hipart.fp32", "hipart.int8", "lift.fp16.engine.nvidia-h200.sm90.trt10.3.0",
                                      "lift.fp32"]  # fmt: skip
    assert merged.entries["hipart.fp32"].model_hash == "bbbb"
    assert merged.entries["hipart.fp32"].sha256 == hashlib.sha256(b"model B fp32").hexdigest()
    assert merged.entries["hipart.int8"].model_hash == "aaaa"  # still model A's file, and it says so
    assert merged.entries["lift.fp16.engine.nvidia-h200.sm90.trt10.3.0"].file == "engines/lift.fp16.x.engine"
    assert merged.model_hash == "bbbb" and merged.model_source == "run 2"
    assert merged.calibration == {"hash": "c0ffee", "poses": 8}  # the last INT8 calibration is kept
    # an entry whose file is gone is dropped at the next write; nothing half-written is left behind
    q.unlink()
    Manifest(tmp_path, model_hash="bbbb").write()
    assert "hipart.int8" not in load_manifest(tmp_path).entries
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_manifest_read_errors(tmp_path):
    with pytest.raises(ManifestMissing, match=f"no manifest.json in {tmp_path}: run `hipart-export --out"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="manifest.json is unreadable"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ManifestError, match="not a hipart-export manifest"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "hipart-edge/artifacts", "format_version": 9}))
    with pytest.raises(ManifestError, match="format version 9, this build reads 1"):
        load_manifest(tmp_path)
    doc = {"format": "hipart-edge/artifacts", "format_version": 1, "artifacts": {"x": {"file": "x.onnx"}}}
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match=r"entry lacks \['artifact', 'kind', 'precision', 'model_hash'\]"):
        load_manifest(tmp_path)


def test_resolve_by_name_hash_mismatch_and_missing_file(tmp_path):
    f = _write(tmp_path / "exports" / "hipart.onnx", b"x")
    _write(tmp_path / "decode_step.onnx", b"sorts first")
    man = Manifest(tmp_path, model_hash="8e5faeefbe0f7d61")
    man.add_file(f, artifact="hipart", kind="onnx", precision="fp32", model_hash="8e5faeefbe0f7d61")
    man.write()
    path, entry = resolve(tmp_path, "hipart", expected=ExpectedModel("8e5faeefbe0f7d61"))
    assert path == f and entry.name == "hipart.fp32"
    with pytest.raises(ModelMismatch) as e:
        resolve(tmp_path, "hipart", expected=ExpectedModel("1a2b3c4d5e6f7a8b", "the bundled model"))
    assert str(e.value).startswith(
        f"{tmp_path / 'manifest.json'} was made for model 8e5faeefbe0f7d61 (exports/hipart.onnx); the bundled model "
        "is 1a2b3c4d5e6f7a8b: re-run `hipart-export --out"
    )
    with pytest.raises(ManifestError, match=r"lists no hipart int8 onnx \(it lists: hipart fp32 onnx\); run "
                                            r"`hipart-export --int8 --out"):  # fmt: skip
        resolve(tmp_path, "hipart", "int8")
    f.unlink()
    with pytest.raises(ArtifactFileMissing, match=r"lists .*exports/hipart.onnx \(hipart fp32 onnx\), but the file "
                                                  "is missing: re-run `hipart-export"):  # fmt: skip
        resolve(tmp_path, "hipart")


def test_resolve_engine_for_this_device_by_name(tmp_path):
    man = Manifest(tmp_path, model_hash="m")
    builds = (("decode_step", "NVIDIA H200", "9.0"), ("hipart", "Orin", "8.7"), ("hipart", "NVIDIA H200", "9.0"))
    for art, gpu, cc in builds:
        f = _write(tmp_path / "engines" / f"{art}.{gpu}.engine", art.encode())
        man.add_file(f, artifact=art, kind="engine", precision="fp16", model_hash="m",
                     engine={"gpu_name": gpu, "compute_capability": cc, "trt_version": "10.3.0"})  # fmt: skip
    man.write()
    path, entry = resolve_engine(tmp_path, "hipart", None, ("NVIDIA H200", "90", "10.3.0"))
    assert path.name == "hipart.NVIDIA H200.engine" and entry.precision == "fp16"
    with pytest.raises(ModelMismatch, match="was made for model m .* the model in use is z"):
        resolve_engine(tmp_path, "hipart", "fp16", ("NVIDIA H200", "9.0", "10.3.0"), ExpectedModel("z"))


def test_bundled_calibration_set_is_training_subjects_with_a_held_out_part():
    assert bundled_calibration_path() is not None and bundled_calibration_path().stat().st_size < 1_000_000
    b = load_bundled()
    assert b.x_s.shape == (512, 17, 2) and b.eval_x_s.shape == (256, 17, 2) and b.eval_pose3d.shape == (256, 17, 3)
    assert np.isfinite(b.x_s).all() and np.abs(b.x_s).max() <= 1.5 and np.isfinite(b.eval_pose3d).all()
    np.testing.assert_allclose(b.eval_pose3d[:, 0], 0, atol=1e-6)  # root-relative
    train, held_out = set(b.meta["train_subjects"].split(",")), set(b.meta["eval_subjects"].split(","))
    assert train and held_out and not train & held_out
    # stored in greedy k-center order: any prefix (--calib-size N) is itself the k-center selection of size N
    np.testing.assert_array_equal(greedy_k_center(b.x_s, 32), np.arange(32))


def test_default_model_and_calibration_are_the_bundled_ones():
    from export.pipeline import Options, _pose_sets, load_model

    model, source = load_model(Options())
    bundled = json.loads((bundled_calibration_path().parent / "hipart_default.json").read_text())
    from hipart.checkpoint import model_hash

    assert source.startswith("bundled checkpoint ") and model_hash(model) == bundled["model_hash"]
    calib, ev, gt, desc = _pose_sets(Options(int8=True, calib_size=100))
    b = load_bundled()
    np.testing.assert_array_equal(calib, b.x_s[:100])
    np.testing.assert_array_equal(ev, b.eval_x_s)
    np.testing.assert_array_equal(gt, b.eval_pose3d)
    assert desc.startswith("bundled calibration set calib_default_v1.npz (training subjects ")


def _onnx_meta(path) -> md.ExportMetadata:
    return md.read(onnx.load(str(path)))


def test_export_writes_a_manifest_matching_the_files(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--random-weights", "tiny", "--only", "lift", "--int8", "--fp16", "--calib-size", "24", *FAST_INT8,
            "--out", str(out)]  # fmt: skip
    assert main(args) == EXIT_OK, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert f"manifest: {out / 'manifest.json'} (3 artifacts: lift.fp16, lift.fp32, lift.int8)" in printed
    man = load_manifest(out)
    calib_hash = array_hash(load_bundled().x_s[:24])  # no calibration option: the bundled set
    assert man.calibration["hash"] == calib_hash and man.calibration["poses"] == 24
    assert man.calibration["held_out_poses"] == 256 and f"hash {calib_hash}" in printed
    for prec, fname in (("fp32", "lift.onnx"), ("fp16", "lift.fp16.onnx"), ("int8", "lift.int8.onnx")):
        e = man.entries[f"lift.{prec}"]
        meta = _onnx_meta(out / fname)
        assert (e.file, e.kind, e.precision) == (fname, "onnx", prec)
        assert e.model_hash == meta.model_hash == man.model_hash and e.opset == meta.opset == 17
        assert meta.precision.split("-")[0] == prec  # the fp16 file says "fp16-mixed"
        assert e.sha256 == hashlib.sha256((out / fname).read_bytes()).hexdigest()
        assert e.bytes == (out / fname).stat().st_size
        assert e.calibration_hash == (calib_hash if prec == "int8" else None)
    # a second run into the same folder (another model, another artifact) merges into the manifest
    assert main(["--random-weights", "tiny", "--seed", "1", "--only", "decode_step,lift", "--onnx-only",
                 "--no-parity", "--out", str(out)]) == EXIT_OK  # fmt: skip
    merged = load_manifest(out)
    assert sorted(merged.entries) == ["decode_step.fp32", "lift.fp16", "lift.fp32", "lift.int8"]
    assert merged.model_hash != man.model_hash
    assert merged.entries["lift.fp32"].model_hash == merged.model_hash == _onnx_meta(out / "lift.onnx").model_hash
    assert merged.entries["lift.int8"].model_hash == man.model_hash == _onnx_meta(out / "lift.int8.onnx").model_hash
    with pytest.raises(ModelMismatch, match=f"made for model {man.model_hash} .* is {merged.model_hash}"):
        resolve(out, "lift", "int8", expected=ExpectedModel(merged.model_hash))


def test_export_records_engines_and_the_runtime_picks_them(tmp_path, capsys, monkeypatch):
    """Engine step with the recording TensorRT stand-in (no real engine): entries, cache hit, stale rebuild."""
    import export.pipeline as pipeline
    from edge.backends.tensorrt_backend import select_engine
    from tests.export.test_trt_builder_cache import _Recorder

    device = ("NVIDIA H200", "9.0", "10.3.0")
    monkeypatch.setattr(pipeline, "import_tensorrt", lambda: _Recorder(device[2]))
    monkeypatch.setattr(pipeline, "engine_key", lambda mh, prec, v: EngineKey(mh, device[0], device[1], v, prec))
    out = tmp_path / "out"
    args = ["--random-weights", "tiny", "--only", "lift", "--fp16", "--no-parity", "--out", str(out)]
    assert main(args) == EXIT_OK, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "building TensorRT 10.3.0 fp16 engine for lift from lift.onnx" in err
    man = load_manifest(out)
    e = man.entries["lift.fp16.engine.nvidia-h200.sm90.trt10.3.0"]
    assert e.kind == "engine" and e.file.startswith("engines/lift.fp16.nvidia-h200.sm90.trt10.3.0.")
    assert e.engine == {"gpu_name": "NVIDIA H200", "compute_capability": "9.0", "trt_version": "10.3.0"}
    assert e.model_hash == man.model_hash and e.source == "lift.onnx" and e.opset == 17
    side = json.loads((out / e.file).with_suffix(".json").read_text())
    assert side["onnx_sha256"] == man.entries["lift.fp32"].sha256
    path, sidecar = select_engine(out, "fp16", device, ExpectedModel(man.model_hash), artifact="lift")
    assert path == out / e.file and sidecar["model_hash"] == man.model_hash
    assert main(args) == EXIT_OK
    assert "engine cache hit: lift fp16" in capsys.readouterr().err
    assert main([*args[:2], "--seed", "5", *args[2:]]) == EXIT_OK  # another model: another engine key, new engine
    assert "building TensorRT" in capsys.readouterr().err
    assert len(list((out / "engines").glob("*.engine"))) == 2
    assert load_manifest(out).entries["lift.fp16.engine.nvidia-h200.sm90.trt10.3.0"].model_hash != man.model_hash


def test_manifest_entry_rejects_unknown_kind():
    with pytest.raises(ManifestError, match="kind 'tflite'"):
        Entry.from_dict({"artifact": "hipart", "file": "a", "kind": "tflite", "precision": "fp32", "model_hash": "m"})
    with pytest.raises(ManifestError, match="needs its engine key"):
        Entry.from_dict({"artifact": "hipart", "file": "a", "kind": "engine", "precision": "fp32", "model_hash": "m"})
