"""Regressions for the crashes benchmarks/fuzz.py found in the file readers: each input now gets the reader's
documented, one-line error instead of a stray exception (docs/FUZZING.md). No atheris needed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edge.backends.base import BackendError
from edge.backends.tensorrt_backend import select_engine
from edge.sources import KeypointSource, SourceError
from export.engine_cache import EngineCache, EngineKey, EngineMismatchError, verify_sidecar
from export.manifest import Manifest, ManifestError, load_manifest
from hipart.checkpoint import FORMAT, FORMAT_VERSION, CheckpointError, load_checkpoint
from hipart.data.bvh import BVHError, load_bvh

KEY = EngineKey("0123456789abcdef", "NVIDIA Jetson AGX Orin", "8.7", "10.3.0", "fp16")
DEVICE = (KEY.gpu_name, KEY.compute_capability, KEY.trt_version)
BVH_HEAD = (
    "HIERARCHY\nROOT a\n{\nOFFSET 0 0 0\nCHANNELS 3 Xposition Yposition Zposition\n"
    "End Site\n{\nOFFSET 0 1 0\n}\n}\nMOTION\n"
)


def _one_line(e: pytest.ExceptionInfo) -> str:
    """The error's message, asserted to be one line."""
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# --------------------------------------------------------------------------------------------------- BVH


@pytest.mark.parametrize(
    "motion, match",
    [
        ("Frames: -1\nFrame Time: 0.1\n", "frame count must be >= 0"),  # was IndexError
        ("Frames: -2\nFrame Time: 0.1\n1 2 3\n", "frame count must be >= 0"),  # was IndexError
        ("Frames: 1\nFrame Time: inf\n1 2 3\n", "frame time must be finite"),  # was accepted
    ],
)
def test_bvh_bad_motion_header(tmp_path, motion, match):
    p = tmp_path / "x.bvh"
    p.write_text(BVH_HEAD + motion)
    with pytest.raises(BVHError, match=match) as e:
        load_bvh(p)
    _one_line(e)


def test_bvh_overflowing_offsets_and_denormal_height(tmp_path):
    p = tmp_path / "big.bvh"
    p.write_text(BVH_HEAD.replace("OFFSET 0 0 0", "OFFSET 0 1e308 0") + "Frames: 1\nFrame Time: 0.1\n0 1e308 0\n")
    with pytest.raises(BVHError, match="overflow|degenerate"):
        load_bvh(p)
    tiny = tmp_path / "tiny.bvh"  # log(height * 0.001) underflowed to log(0): "math domain error"
    tiny.write_text(BVH_HEAD.replace("OFFSET 0 1 0", "OFFSET 0 5e-324 0") + "Frames: 1\nFrame Time: 0.1\n0 0 0\n")
    assert load_bvh(tiny).unit in ("m", "cm", "mm", "inch", "cmu")


# --------------------------------------------------------------------------------------------- keypoints


def test_keypoints_json_empty_person_rows(tmp_path):
    p = tmp_path / "k.json"  # 17 empty joints: zero-size keypoints, 17 confidences (was ValueError from reshape)
    p.write_text(json.dumps({"frames": [{"keypoints": [[[] for _ in range(17)]]}]}))
    with pytest.raises(SourceError) as e:
        KeypointSource(p)
    _one_line(e)


def test_keypoints_npz_conf_shorter_than_frames(tmp_path):
    p = tmp_path / "k.npz"
    np.savez(p, keypoints=np.zeros((3, 17, 2), np.float32), conf=np.ones((1, 17), np.float32), format="h36m17")
    with pytest.raises(SourceError) as e:
        KeypointSource(p)
    _one_line(e)


# -------------------------------------------------------------------------------------------- checkpoint


def _payload(**kw) -> dict:
    """A checkpoint payload with the right format tags and the given fields."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": "lifter", **kw}


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"config": {"num_points": 17, "dim": 12, "blocks": 1, "heads": 2}}, "weights are missing"),  # KeyError
        ({"config": {"num_points": 17}, "state_dict": [1, 2]}, "weights are missing"),  # TypeError
        ({"config": {"num_points": 17}, "state_dict": {"w": 3}}, "not a mapping of names to tensors"),
        ({"config": ["num_points"], "state_dict": {}}, "config is missing or not a mapping"),  # AttributeError
        ({"config": {"num_points": 17, "dim": 12, "heads": 0}, "state_dict": {}}, "config is invalid"),  # ZeroDiv
    ],
)
def test_checkpoint_malformed_payloads(tmp_path, fields, match):
    p = tmp_path / "c.pt"
    torch.save(_payload(**fields), p)
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(p, expect_kind=None)
    _one_line(e)


# ---------------------------------------------------------------------------------------------- manifest


def _manifest(tmp_path, doc) -> None:
    """Write `doc` (JSON-dumped unless bytes) as tmp_path/manifest.json."""
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    (tmp_path / "manifest.json").write_bytes(data)


def _entry(**kw) -> dict:
    """A valid manifest entry with some fields replaced."""
    return {"artifact": "hipart", "file": "hipart.onnx", "kind": "onnx", "precision": "fp32", "model_hash": "ab",
            **kw}  # fmt: skip


@pytest.mark.parametrize(
    "artifacts",
    [
        {"hipart.fp32": "hipart.onnx"},  # entry not an object: was AttributeError
        ["hipart.onnx"],  # artifacts not an object: was AttributeError
        {"x": _entry(engine="orin", kind="engine")},  # engine key not an object: AttributeError in describe()
        {"x": _entry(sha256=5)},  # int sha256: TypeError in check_file
        {"x": _entry(file=["hipart.onnx"])},  # TypeError joining paths
        {"x": _entry(file="/etc/passwd")},  # outside the folder
        {"x": _entry(file="../other/hipart.onnx")},
    ],
)
def test_manifest_malformed_entries(tmp_path, artifacts):
    _manifest(tmp_path, {"format": "hipart-edge/artifacts", "format_version": 1, "artifacts": artifacts})
    with pytest.raises(ManifestError) as e:
        load_manifest(tmp_path)
    _one_line(e)


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000,
        b'{"format": "hipart-edge/artifacts\xff"}',
        b"\xfe\xff",
        json.dumps({"format": "hipart-edge/artifacts", "format_version": 1, "calibration": [1]}).encode(),
    ],  # fmt: skip
)
def test_manifest_deep_nesting_bad_utf8_wrong_types(tmp_path, data):
    _manifest(tmp_path, data)  # RecursionError / UnicodeDecodeError leaked; calibration list broke export
    with pytest.raises(ManifestError) as e:
        load_manifest(tmp_path)
    _one_line(e)


def test_manifest_valid_still_loads(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "hipart.onnx").write_bytes(b"x")
    man = Manifest(tmp_path, model_hash="ab")
    man.add_file(tmp_path / "sub" / "hipart.onnx", artifact="hipart", kind="onnx", precision="fp32", model_hash="ab")
    man.write()
    assert load_manifest(tmp_path).entries["hipart.fp32"].file == "sub/hipart.onnx"


# ----------------------------------------------------------------------------------------------- sidecar


@pytest.mark.parametrize("data", [b'{"gpu_name": "\xb2"}', b"7", b"[]", b"[" * 100_000])
def test_sidecar_not_utf8_not_object_deep(tmp_path, data):
    cache = EngineCache(tmp_path)
    engine, sidecar = cache.paths("hipart", KEY)
    engine.write_bytes(b"engine")
    sidecar.write_bytes(data)  # was UnicodeDecodeError / AttributeError / RecursionError
    with pytest.raises(EngineMismatchError) as e:
        verify_sidecar(sidecar, KEY)
    _one_line(e)
    with pytest.raises(BackendError):  # TensorRT backend given the .engine itself (its own sidecar read)
        select_engine(engine, None, DEVICE)


# ------------------------------------------------------------------------------------------------- ONNX


def _model_bytes(props: dict[str, str]) -> bytes:
    """A tiny valid ONNX model (x_s -> pose3d) carrying `props` as metadata_props."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x_s", TensorProto.FLOAT, [1, 17, 2])
    y = helper.make_tensor_value_info("pose3d", TensorProto.FLOAT, [1, 17, 2])
    m = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x_s"], ["pose3d"])], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)])  # fmt: skip
    m.ir_version = 8
    onnx.helper.set_model_props(m, props)
    return m.SerializeToString()


META = {"hipart.artifact": "hipart", "hipart.model_hash": "ab", "hipart.opset": "17"}


@pytest.mark.parametrize(
    "props, replace, ok",
    [
        ({"hipart.artifact": "hipart", "hipart.opset": "17"}, None, False),  # TypeError: missing model_hash
        ({**META, "hipart.inputs": "{x"}, None, False),  # JSONDecodeError
        ({**META, "hipart.opset": "[17]"}, None, False),  # int(opset) TypeError downstream
        ({**META, "hipart.inputs": '{"QQ": "a"}'}, (b"QQ", b"\xd6\xff"), True),  # value as bytes: UnicodeDecodeError
        ({**META, "hipart.newfield": "1"}, None, True),  # TypeError: unknown keyword (a newer export): ignored
        ({**META, "hipart.QQ": "1"}, (b"hipart.QQ", b"hipart.\xff\xfe"), True),  # key as bytes: TypeError; ignored
    ],
)
def test_onnx_metadata_malformed(props, replace, ok):
    onnx = pytest.importorskip("onnx")
    from calib import onnx_metadata as md

    data = _model_bytes(props)
    if replace:
        data = data.replace(*replace)
    model = onnx.load_from_string(data)
    if ok:
        assert md.read(model).model_hash == "ab"
        return
    with pytest.raises(KeyError) as e:  # MetadataError is a KeyError: callers' "no metadata" handling applies
        md.read(model)
    assert isinstance(e.value, md.MetadataError)
    _one_line(e)


def test_onnxruntime_backend_metadata_not_utf8(tmp_path):
    pytest.importorskip("onnxruntime")
    from edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    p = tmp_path / "m.onnx"
    p.write_bytes(_model_bytes({**META, "hipart.model_hash": "QQQQ"}).replace(b"QQQQ", b"\xe5\xff\xfe\xfd"))
    with pytest.raises(BackendError, match="not valid UTF-8") as e:  # was UnicodeDecodeError from onnxruntime
        OnnxRuntimeBackend(p, threads=1)
    _one_line(e)
