"""Engine builder control flow, engine cache and sidecar checks - without TensorRT.

The recording stand-in below only checks which documented API calls the builder makes for each
TensorRT line; it never produces or claims an engine result (TensorRT is not installable here).
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest

from export.engine_cache import EngineCache, EngineKey, EngineMismatchError, verify_sidecar
from export.trt_builder import (
    BuildSettings,
    TensorRTUnavailable,
    UnsupportedTensorRTVersion,
    build_engine,
    import_tensorrt,
    load_engine,
    parse_batch,
)


def test_missing_tensorrt_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails as if not installed
    with pytest.raises(TensorRTUnavailable, match="TensorRT is not installed"):
        import_tensorrt()


def test_unsupported_tensorrt_version(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="8.6.1"))
    with pytest.raises(UnsupportedTensorRTVersion, match="10.x and 11.x"):
        import_tensorrt()


@pytest.mark.parametrize(("text", "ok"), [("1,8,64", True), ("4,4,4", True), ("8,1,64", False), ("0,1,2", False),
                                          ("1,8", False), ("a,b,c", False)])  # fmt: skip
def test_parse_batch(text, ok):
    if ok:
        assert parse_batch(text) == tuple(int(v) for v in text.split(","))
    else:
        with pytest.raises(ValueError, match="--batch"):
            parse_batch(text)


class _Recorder:
    """Minimal object graph mirroring the documented TensorRT Python API; records calls."""

    def __init__(self, version):
        self.__version__ = version
        self.calls = []
        rec = self

        class Enum(SimpleNamespace):
            pass

        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, lvl: None})
        self.NetworkDefinitionCreationFlag = Enum(STRONGLY_TYPED=1)
        self.MemoryPoolType = Enum(WORKSPACE="WORKSPACE")
        self.BuilderFlag = Enum(FP16="FP16", INT8="INT8", OBEY_PRECISION_CONSTRAINTS="OBEY")
        self.LayerType = Enum(NORMALIZATION="NORM", SOFTMAX="SOFTMAX", MATRIX_MULTIPLY="MM")
        self.float32 = "float32"

        class Layer:
            def __init__(self, t):
                self.type, self.num_outputs, self.precision = t, 1, None

            def set_output_type(self, i, t):
                rec.calls.append(("output_type", self.type, t))

        class Network:
            num_inputs, num_layers = 1, 3
            layers = [Layer("NORM"), Layer("MM"), Layer("SOFTMAX")]

            def get_input(self, i):
                return SimpleNamespace(name="x_s", shape=(-1, 17, 2))

            def get_layer(self, i):
                return self.layers[i]

        class Parser:
            num_errors = 0

            def __init__(self, net, log):
                pass

            def parse(self, data):
                rec.calls.append(("parse", len(data)))
                return True

        class Cache:
            def serialize(self):
                return b"timing"

        class Config:
            def set_memory_pool_limit(self, pool, size):
                rec.calls.append(("workspace", size))

            def set_flag(self, flag):
                rec.calls.append(("flag", flag))

            def add_optimization_profile(self, p):
                rec.calls.append(("profile_added",))

            def create_timing_cache(self, blob):
                rec.calls.append(("timing_cache_in", blob))
                return Cache()

            def set_timing_cache(self, cache, ignore_mismatch):
                pass

            def get_timing_cache(self):
                return Cache()

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                rec.calls.append(("shape", name, tuple(lo), tuple(opt), tuple(hi)))

        class Builder:
            def __init__(self, log):
                pass

            def create_network(self, flags):
                rec.calls.append(("network_flags", flags))
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, net, cfg):
                rec.calls.append(("build",))
                return b"not-an-engine"

        self.Builder, self.OnnxParser = Builder, Parser


@pytest.mark.parametrize("version", ["10.3.0", "11.0.0"])
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_builder_api_calls_per_line(tmp_path, standin_onnx, version, precision):
    trt = _Recorder(version)
    cache = tmp_path / "timing.cache"
    build_engine(standin_onnx, BuildSettings(precision, (1, 8, 64), 256, cache), trt)
    calls = trt.calls
    assert ("workspace", 256 << 20) in calls
    assert ("shape", "x_s", (1, 17, 2), (8, 17, 2), (64, 17, 2)) in calls
    flags = {c[1] for c in calls if c[0] == "flag"}
    if version.startswith("10"):
        assert ("network_flags", 0) in calls
        assert flags == ({"FP16", "OBEY"} if precision == "fp16" else {"INT8"})
        if precision == "fp16":  # LayerNorm and Softmax pinned to FP32, MatMul left to the builder
            pinned = {c[1] for c in calls if c[0] == "output_type"}
            assert pinned == {"NORM", "SOFTMAX"}
    else:
        assert ("network_flags", 1 << 1) in calls and flags == set()  # strongly typed, no precision flags
    assert cache.read_bytes() == b"timing"


def _key(**kw):
    base = dict(model_hash="abc", gpu_name="NVIDIA Jetson AGX Orin", compute_capability="8.7",
                trt_version="10.3.0", precision="int8")  # fmt: skip
    return EngineKey(**{**base, **kw})


def test_engine_cache_roundtrip_and_mismatch(tmp_path):
    cache = EngineCache(tmp_path)
    key = _key()
    assert cache.lookup("hipart", key) is None
    path = cache.store("hipart", key, b"\x00engine-bytes", {"onnx": "hipart.int8.onnx"})
    assert "sm87" in path.name and "trt10.3.0" in path.name and path.read_bytes() == b"\x00engine-bytes"
    assert cache.lookup("hipart", key) == path
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["gpu_name"] == "NVIDIA Jetson AGX Orin" and sidecar["engine_bytes"] == 13
    with pytest.raises(EngineMismatchError, match="trt_version: engine has '10.3.0', this system has '10.4.0'"):
        verify_sidecar(path.with_suffix(".json"), _key(trt_version="10.4.0"))
    with pytest.raises(EngineMismatchError, match="compute_capability"):
        verify_sidecar(path.with_suffix(".json"), _key(compute_capability="8.9", gpu_name="RTX 4090"))
    assert _key(precision="fp16").digest() != key.digest()
    with pytest.raises(EngineMismatchError, match="missing"):
        verify_sidecar(tmp_path / "nope.json", key)


def test_load_engine_checks_sidecar_before_tensorrt(tmp_path):
    cache = EngineCache(tmp_path)
    path = cache.store("lift", _key(), b"bytes")
    with pytest.raises(EngineMismatchError, match="gpu_name"):
        load_engine(path, _key(gpu_name="NVIDIA GeForce RTX 4090", compute_capability="8.9"))
