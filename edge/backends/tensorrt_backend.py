"""TensorRT backend: runs engines built by `hipart-export` (TensorRT 10/11 named-tensor API).

Device buffers come from pycuda when installed, else cuda-python, else torch CUDA tensors; the GPU's name and
compute capability come from the CUDA driver (edge/backends/cuda_probe.py), so with pycuda or cuda-python the
backend runs without torch.
The engine is chosen by name from the folder's manifest.json (export/manifest.py) for this GPU and TensorRT
version; its JSON sidecar is then checked by export/engine_cache.verify_sidecar (model hash, GPU name, compute
capability, TensorRT version, precision): a mismatch with this machine is a clear error, never a crash.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends.base import Backend, BackendArgs, BackendError, BackendUnavailable, Result
from edge.backends.cuda_probe import gpu_identity
from edge.backends.onnxruntime_backend import _ALIASES
from edge.occlusion import DEFAULT_MIN_CONF
from export.engine_cache import SIDECAR_SUFFIX, EngineKey, EngineMismatchError, read_sidecar, verify_sidecar
from export.manifest import (
    MANIFEST_NAME,
    ExpectedModel,
    ManifestError,
    ManifestMissing,
    load_manifest,
    resolve_engine,
)


def _import_trt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailable("tensorrt backend: the `tensorrt` package is not installed (TensorRT 10+)") from None
    return trt


class _TorchBuffers:
    """Device memory as torch CUDA tensors (fallback when neither pycuda nor cuda-python is present)."""

    name = "torch"

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("tensorrt backend: no CUDA device visible to torch")
        self.torch = torch
        self.stream = torch.cuda.Stream()

    def alloc(self, nbytes: int) -> Any:
        """Device buffer of at least nbytes."""
        return self.torch.empty(max(nbytes, 1), dtype=self.torch.uint8, device="cuda")

    def ptr(self, buf: Any) -> int:
        """The buffer's device address."""
        return int(buf.data_ptr())

    def stream_handle(self) -> int:
        """The CUDA stream handle TensorRT enqueues on."""
        return int(self.stream.cuda_stream)

    def htod(self, buf: Any, host: np.ndarray) -> None:
        """Copy a host array into the device buffer."""
        src = self.torch.from_numpy(np.ascontiguousarray(host).view(np.uint8).reshape(-1))
        with self.torch.cuda.stream(self.stream):
            buf[: src.numel()].copy_(src, non_blocking=False)

    def dtoh(self, host: np.ndarray, buf: Any) -> None:
        """Copy the device buffer into a host array (synchronises the stream)."""
        self.stream.synchronize()
        host.view(np.uint8).reshape(-1)[:] = buf[: host.nbytes].cpu().numpy()

    def sync(self) -> None:
        """Wait for the stream."""
        self.stream.synchronize()


class _PycudaBuffers:
    """Device memory through pycuda."""

    name = "pycuda"

    def __init__(self) -> None:
        import pycuda.autoinit  # noqa: F401  (creates the context)
        import pycuda.driver as cuda

        self.cuda = cuda
        self.stream = cuda.Stream()

    def alloc(self, nbytes: int) -> Any:
        """Device buffer of at least nbytes."""
        return self.cuda.mem_alloc(max(nbytes, 1))

    def ptr(self, buf: Any) -> int:
        """The buffer's device address."""
        return int(buf)

    def stream_handle(self) -> int:
        """The CUDA stream handle TensorRT enqueues on."""
        return self.stream.handle

    def htod(self, buf: Any, host: np.ndarray) -> None:
        """Copy a host array into the device buffer."""
        self.cuda.memcpy_htod_async(buf, np.ascontiguousarray(host), self.stream)

    def dtoh(self, host: np.ndarray, buf: Any) -> None:
        """Copy the device buffer into a host array (synchronises the stream)."""
        self.cuda.memcpy_dtoh_async(host, buf, self.stream)
        self.stream.synchronize()

    def sync(self) -> None:
        """Wait for the stream."""
        self.stream.synchronize()


class _CudaPythonBuffers:
    """Device memory through cuda-python's runtime bindings."""

    name = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # older cuda-python layout
        self.rt = cudart
        err, self.stream = cudart.cudaStreamCreate()
        self._check(err, "cudaStreamCreate")

    def _check(self, err: Any, what: str) -> None:
        if int(err) != 0:
            raise BackendError(f"tensorrt backend: {what} failed with CUDA error {int(err)}")

    def alloc(self, nbytes: int) -> Any:
        """Device buffer of at least nbytes."""
        err, p = self.rt.cudaMalloc(max(nbytes, 1))
        self._check(err, "cudaMalloc")
        return p

    def ptr(self, buf: Any) -> int:
        """The buffer's device address."""
        return int(buf)

    def stream_handle(self) -> int:
        """The CUDA stream handle TensorRT enqueues on."""
        return int(self.stream)

    def htod(self, buf: Any, host: np.ndarray) -> None:
        """Copy a host array into the device buffer."""
        host = np.ascontiguousarray(host)
        (err,) = self.rt.cudaMemcpyAsync(
            buf, host.ctypes.data, host.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream
        )
        self._check(err, "cudaMemcpyAsync(HtoD)")

    def dtoh(self, host: np.ndarray, buf: Any) -> None:
        """Copy the device buffer into a host array (synchronises the stream)."""
        (err,) = self.rt.cudaMemcpyAsync(
            host.ctypes.data, buf, host.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream
        )
        self._check(err, "cudaMemcpyAsync(DtoH)")
        self.sync()

    def sync(self) -> None:
        """Wait for the stream."""
        (err,) = self.rt.cudaStreamSynchronize(self.stream)
        self._check(err, "cudaStreamSynchronize")


def device_buffers() -> Any:
    """The first device-memory provider that works: pycuda, cuda-python, torch."""
    reasons = []
    for cls in (_PycudaBuffers, _CudaPythonBuffers, _TorchBuffers):
        try:
            return cls()
        except (ImportError, BackendUnavailable, BackendError, Exception) as e:  # driver errors vary by package
            reasons.append(f"{cls.name}: {e}")
    raise BackendUnavailable("tensorrt backend: no CUDA device memory provider works (" + "; ".join(reasons) + ")")


def _gpu_identity() -> tuple[str | None, str | None]:
    """(GPU name, compute capability 'M.m') of CUDA device 0, as export/ records them; (None, None) without CUDA.
    Through the CUDA driver, not torch (`edge.backends.cuda_probe`): the TensorRT path runs without torch."""
    return gpu_identity()


def select_engine(
    path: str | os.PathLike,
    precision: str | None,
    device: tuple[str, str, str],
    expected: ExpectedModel | None = None,
    artifact: str = "hipart",
) -> tuple[Path, dict]:
    """(engine, sidecar) by name from the folder's manifest (or an explicit .engine), checked for this device/model."""
    p = Path(path)
    gpu, cc, trt_version = device
    known = expected is not None and expected.model_hash not in ("", "unknown")
    try:
        if p.is_file():  # an explicit engine: its sidecar says what it is, the key check says whether it fits
            sidecar = p.with_suffix(SIDECAR_SUFFIX)
            side = read_sidecar(sidecar) if sidecar.is_file() else {}  # EngineMismatchError if unreadable
            mhash = expected.model_hash if known else str(side.get("model_hash", ""))
            prec = precision or str(side.get("precision", ""))
        else:
            try:
                man = load_manifest(p)
            except ManifestMissing:
                raise BackendError(
                    f"tensorrt backend: no {MANIFEST_NAME} in {p}: engines are chosen by name through the manifest "
                    f"hipart-export writes; re-run `hipart-export --fp16 --out {p}` on this GPU (or pass the .engine "
                    "file itself)"
                ) from None
            p, entry = resolve_engine(p, artifact, precision, device, expected, man)
            mhash, prec = entry.model_hash, entry.precision
        side = verify_sidecar(p.with_suffix(SIDECAR_SUFFIX), EngineKey(mhash, gpu, cc, trt_version, prec))
    except (ManifestError, EngineMismatchError) as e:
        raise BackendError(f"tensorrt backend: {e}") from None
    except (OSError, ValueError) as e:
        raise BackendError(f"tensorrt backend: engine sidecar of {p} is unreadable: {e}") from None
    return p, side


class TensorRTBackend(Backend):
    """HiPART from a TensorRT engine: the manifest's `hipart` engine for this GPU (or an explicit .engine path)."""

    name = "tensorrt"

    @classmethod
    def availability(
        cls, artifacts: str | os.PathLike | None = None, expected: ExpectedModel | None = None,
        precision: str | None = None,
    ) -> tuple[bool, str]:  # fmt: skip
        """Needs the tensorrt package, a CUDA device and, when `artifacts` is given, an engine there for this GPU."""
        try:
            trt = _import_trt()
        except BackendUnavailable as e:
            return False, str(e)
        gpu, cc = _gpu_identity()
        if gpu is None:
            return False, "tensorrt backend: no CUDA device visible"
        if artifacts is not None:
            try:
                select_engine(artifacts, precision, (gpu, cc or "", trt.__version__), expected)
            except BackendError as e:
                return False, str(e)
        return True, ""

    @classmethod
    def create(cls, a: BackendArgs) -> TensorRTBackend:
        """The registry's builder: the engine for this GPU from `artifacts` (device 0; `model`, `device` unused)."""
        ok, why = cls.availability()
        if not ok:
            raise BackendUnavailable(why)
        return cls(a.artifacts, model_hash=a.model_hash, min_conf=a.min_conf, precision=a.precision,
                   expected=a.expected)

    def __init__(
        self,
        engine: str | os.PathLike,
        model_hash: str = "unknown",
        min_conf: float = DEFAULT_MIN_CONF,
        precision: str | None = None,
        expected: ExpectedModel | None = None,
    ):
        super().__init__(model_hash, min_conf)
        trt = _import_trt()
        self.trt = trt
        gpu, cc = _gpu_identity()
        path, self.meta = select_engine(engine, precision, (gpu or "", cc or "", trt.__version__), expected)
        self.device = f"cuda ({gpu})"
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendError(
                f"tensorrt backend: cannot deserialize {path} (corrupt, or built for another TensorRT/GPU); "
                "rebuild it with `hipart-export`"
            )
        self.context = self.engine.create_execution_context()
        self.path = path
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in self.names if n not in self.inputs]
        self.mem = device_buffers()
        self._bufs: dict[str, tuple[Any, int]] = {}

    def _buffer(self, name: str, nbytes: int) -> Any:
        buf, size = self._bufs.get(name, (None, 0))
        if size < nbytes:  # grow, never shrink: steady-state calls allocate nothing
            buf = self.mem.alloc(nbytes)
            self._bufs[name] = (buf, nbytes)
        return buf

    def _infer(self, x_s: np.ndarray) -> Result:
        trt = self.trt
        t0 = time.perf_counter()
        name = self.inputs[0]
        self.context.set_input_shape(name, tuple(x_s.shape))
        dbuf = self._buffer(name, x_s.nbytes)
        self.mem.htod(dbuf, x_s)
        self.context.set_tensor_address(name, self.mem.ptr(dbuf))
        hosts = {}
        for out in self.outputs:
            shape = tuple(self.context.get_tensor_shape(out))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(out)))
            hosts[out] = np.empty(shape, dtype)
            self.context.set_tensor_address(out, self.mem.ptr(self._buffer(out, hosts[out].nbytes)))
        if not self.context.execute_async_v3(self.mem.stream_handle()):
            raise BackendError("tensorrt backend: execute_async_v3 failed (see TensorRT log above)")
        for out, host in hosts.items():
            self.mem.dtoh(host, self._bufs[out][0])
        got = {}
        for key, aliases in _ALIASES.items():
            for a in aliases:
                if a in hosts:
                    got[key] = hosts[a]
                    break
        missing = sorted(set(_ALIASES) - set(got))
        if missing:
            raise BackendError(f"tensorrt backend: engine outputs lack {missing}; rebuild from hipart.onnx")
        return Result(
            dense=got["dense"].astype(np.float32),
            fine=got["fine"].astype(np.float32),
            pose3d=got["pose3d"].astype(np.float32),
            tokens=np.concatenate([got["q_s"], got["q_d"]], 1).astype(np.int64),
            timings={"engine": (time.perf_counter() - t0) * 1e3},
        )

    def info(self) -> dict[str, Any]:
        """Adds the TensorRT version, engine file, sidecar metadata and buffer provider."""
        return {
            **super().info(),
            "tensorrt": self.trt.__version__,
            "engine": str(self.path),
            "buffers": self.mem.name,
            "engine_meta": self.meta,
        }
