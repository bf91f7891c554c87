"""TensorRT engine builder for the 10.x (JetPack 6) and 11.x lines, imported lazily.

Written against NVIDIA's documented Python API (Builder, OnnxParser, IBuilderConfig, IOptimizationProfile,
ITimingCache). Precision policy (docs/ARCHITECTURE.md §5):
  10.x  fp16: weakly typed network + BuilderFlag.FP16, LayerNorm/Softmax pinned to FP32 by layer precision;
        int8: the Q/DQ ONNX (explicit quantization) + BuilderFlag.INT8.
  11.x  strongly typed networks only: fp16 from the mixed-precision ONNX, int8 from the Q/DQ ONNX; no
        builder precision flags and no implicit calibrator.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from export.engine_cache import EngineKey, verify_sidecar
from hipart.atomic_write import write_bytes_atomic

SUPPORTED_MAJORS = (10, 11)
PRECISIONS = ("fp32", "fp16", "int8")


class TensorRTUnavailable(RuntimeError):
    """The tensorrt Python package is not importable here."""


class UnsupportedTensorRTVersion(RuntimeError):
    """TensorRT is present but not a line this builder targets."""


class EngineBuildError(RuntimeError):
    """The ONNX parser or the builder failed."""


def import_tensorrt() -> ModuleType:
    """Import tensorrt lazily; raise TensorRTUnavailable / UnsupportedTensorRTVersion with a clear message."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as e:
        raise TensorRTUnavailable(
            "TensorRT is not installed (Python package 'tensorrt' not importable): engines are built on the "
            "target device (JetPack 6 ships TensorRT 10; desktop: pip install tensorrt). "
            f"Import error: {e}"
        ) from None
    major = trt_major(trt.__version__)
    if major not in SUPPORTED_MAJORS:
        raise UnsupportedTensorRTVersion(
            f"TensorRT {trt.__version__} is not supported; hipart-export builds for TensorRT 10.x and 11.x"
        )
    return trt


def trt_major(version: str) -> int:
    """Major version of a TensorRT version string."""
    try:
        return int(version.split(".")[0])
    except ValueError:
        raise UnsupportedTensorRTVersion(f"unreadable TensorRT version {version!r}") from None


def parse_batch(text: str) -> tuple[int, int, int]:
    """'1,8,64' -> (min, opt, max) batch sizes for the optimisation profile (ValueError on bad input)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--batch expects three integers MIN,OPT,MAX, got {text!r}") from None
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise ValueError(f"--batch expects 1 <= MIN <= OPT <= MAX, got {text!r}")
    return values  # type: ignore[return-value]


@dataclass
class BuildSettings:
    """Engine build options."""

    precision: str = "fp16"
    batch: tuple[int, int, int] = (1, 8, 64)
    workspace_mib: int = 1024
    timing_cache: Path | None = None


def device_identity() -> tuple[str, str]:
    """(GPU name, compute capability 'M.m') of CUDA device 0, read through torch.cuda."""
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable("no CUDA device visible: TensorRT engines are built and loaded on the target GPU")
    major, minor = torch.cuda.get_device_capability(0)
    return torch.cuda.get_device_name(0), f"{major}.{minor}"


def engine_key(model_hash: str, precision: str, trt_version: str) -> EngineKey:
    """The cache key of an engine built here now."""
    gpu, cc = device_identity()
    return EngineKey(model_hash, gpu, cc, trt_version, precision)


def _network_flags(trt: ModuleType, major: int) -> int:
    if major >= 11:
        flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        return 0 if flag is None else 1 << int(flag)  # 11.x networks are strongly typed regardless
    return 0  # 10.x: explicit batch is implicit; weakly typed so builder precision flags apply


def _pin_fp32_layers(trt: ModuleType, network) -> int:
    """10.x weakly typed fp16: keep normalisation and softmax layers in FP32; returns how many were pinned."""
    kept = {trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in kept:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            pinned += 1
    return pinned


def build_engine(onnx_path: str | Path, settings: BuildSettings, trt: ModuleType | None = None) -> bytes:
    """Parse `onnx_path` and build a serialized engine with a batch profile; updates the timing cache file."""
    if settings.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {settings.precision!r}")
    trt = trt or import_tensorrt()
    major = trt_major(trt.__version__)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, major))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}:\n  {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mib << 20)
    if major < 11:
        if settings.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
            _pin_fp32_layers(trt, network)
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        elif settings.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # scales come from the Q/DQ nodes, no calibrator

    lo, opt, hi = settings.batch
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        shape = list(inp.shape)
        if shape and shape[0] == -1:
            profile.set_shape(inp.name, [lo, *shape[1:]], [opt, *shape[1:]], [hi, *shape[1:]])
    config.add_optimization_profile(profile)

    cache_blob = b""
    if settings.timing_cache and Path(settings.timing_cache).exists():
        cache_blob = Path(settings.timing_cache).read_bytes()
    timing_cache = config.create_timing_cache(cache_blob)
    config.set_timing_cache(timing_cache, False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    if settings.timing_cache:
        write_bytes_atomic(settings.timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def load_engine(engine_path: str | Path, key: EngineKey, trt: ModuleType | None = None):
    """Deserialize a cached engine after checking its sidecar against this device/TensorRT/model/precision."""
    verify_sidecar(Path(engine_path).with_suffix(".json"), key)
    trt = trt or import_tensorrt()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise EngineBuildError(f"TensorRT could not deserialize {engine_path} (corrupt or from another version)")
    return engine
