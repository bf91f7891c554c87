"""TensorRT backend: runs engines built by `hipart-export` (TensorRT 10/11 named-tensor API).

Device buffers come from pycuda when installed, else cuda-python, else torch CUDA tensors.
An engine's JSON sidecar (written by export/) records the model hash, GPU name, compute capability,
TensorRT version and precision; a mismatch with this machine is a clear error, never a crash.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends.base import Backend, BackendError, BackendUnavailable, Result
from edge.backends.onnxruntime_backend import _ALIASES
from edge.occlusion import DEFAULT_MIN_CONF


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


def check_engine_sidecar(engine_path: Path, trt_version: str, gpu_name: str | None, capability: str | None) -> dict:
    """Read the engine's JSON sidecar and refuse engines built for another TensorRT version or GPU."""
    side = engine_path.with_suffix(".json")
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise BackendError(f"tensorrt backend: engine sidecar {side} is unreadable: {e}") from None
    built = str(meta.get("trt_version") or meta.get("tensorrt_version") or "")  # export/engine_cache.py: trt_version
    if built and built.split(".")[:2] != trt_version.split(".")[:2]:
        raise BackendError(
            f"tensorrt backend: {engine_path.name} was built with TensorRT {built}, this machine has {trt_version}; "
            "rebuild it here with `hipart-export` (engines are not portable across versions)"
        )
    want_cc = str(meta.get("compute_capability") or "").replace(".", "")
    if capability and want_cc and want_cc != str(capability).replace(".", ""):
        raise BackendError(
            f"tensorrt backend: {engine_path.name} was built for {meta.get('gpu_name', '?')} (sm {want_cc}), "
            f"this GPU is {gpu_name} (sm {capability}); rebuild it here with `hipart-export`"
        )
    return meta


def _gpu_identity() -> tuple[str | None, str | None]:
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            return torch.cuda.get_device_name(), f"{major}{minor}"
    except ImportError:
        pass
    return None, None


class TensorRTBackend(Backend):
    """HiPART from a serialized TensorRT engine (`hipart_<precision>.engine` or any .engine path)."""

    name = "tensorrt"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Needs the tensorrt package and a CUDA device."""
        try:
            _import_trt()
        except BackendUnavailable as e:
            return False, str(e)
        if _gpu_identity()[0] is None:
            return False, "tensorrt backend: no CUDA device visible"
        return True, ""

    def __init__(
        self,
        engine: str | os.PathLike,
        model_hash: str = "unknown",
        min_conf: float = DEFAULT_MIN_CONF,
        precision: str | None = None,
    ):
        super().__init__(model_hash, min_conf)
        trt = _import_trt()
        self.trt = trt
        path = Path(engine)
        if path.is_dir():
            engines = sorted(path.glob(f"*{precision}*.engine" if precision else "*.engine"))
            if not engines:
                what = f"{precision} .engine" if precision else ".engine"
                raise BackendError(f"tensorrt backend: no {what} file in {path}; build one with `hipart-export`")
            path = engines[0]
        if not path.is_file():
            raise BackendError(f"tensorrt backend: engine not found: {path}")
        gpu, cc = _gpu_identity()
        self.meta = check_engine_sidecar(path, trt.__version__, gpu, cc)
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

    @staticmethod
    def _pick_engine(
        folder: Path, precision: str | None, trt_version: str, gpu: str | None, cc: str | None
    ) -> tuple[Path, dict]:
        """The first engine in `folder` (hipart.* preferred, `precision` if given) built for this GPU and TensorRT."""
        pattern = f"*{precision}*.engine" if precision else "*.engine"
        engines = sorted(folder.glob(pattern), key=lambda p: (not p.name.startswith("hipart"), p.name))
        if not engines:
            what = f"{precision} .engine" if precision else ".engine"
            raise BackendError(f"tensorrt backend: no {what} file in {folder}; build one with `hipart-export`")
        errors = []
        for e in engines:
            try:
                return e, check_engine_sidecar(e, trt_version, gpu, cc)
            except BackendError as err:
                errors.append(str(err))
        raise BackendError(
            errors[0] + (f" (and {len(errors) - 1} more engines that do not fit)" if len(errors) > 1 else "")
        )

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
