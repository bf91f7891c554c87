"""Is there a CUDA GPU, and which one, without importing torch: the NVIDIA driver API (libcuda) through ctypes.

The torch-free deploy path (onnxruntime / TensorRT on a Jetson) must still know the GPU's name and compute
capability (TensorRT engines are keyed by them) and whether `auto` may offer GPU backends. The driver reports the
same name as `torch.cuda.get_device_name` (both read cuDeviceGetName), so engine keys written by `hipart-export`
(through torch) match.
"""

from __future__ import annotations

import ctypes
import sys
from functools import lru_cache

_CC_MAJOR, _CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR
_LIBS = ("libcuda.so.1", "libcuda.so", "nvcuda.dll", "libcuda.dylib")


@lru_cache(maxsize=1)
def _driver_identity() -> tuple[str | None, str | None]:
    """(name, 'M.m') of CUDA device 0 from libcuda; (None, None) without a driver or a visible device."""
    lib = None
    for name in _LIBS:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        return None, None
    try:
        if lib.cuInit(0) != 0:
            return None, None
        count, dev = ctypes.c_int(0), ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
            return None, None
        if lib.cuDeviceGet(ctypes.byref(dev), 0) != 0:
            return None, None
        buf = ctypes.create_string_buffer(256)
        if lib.cuDeviceGetName(buf, ctypes.c_int(len(buf)), dev) != 0:
            return None, None
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        if lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, dev) != 0:
            return None, None
        if lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, dev) != 0:
            return None, None
    except AttributeError:  # not a CUDA driver library after all
        return None, None
    return buf.value.decode(errors="replace"), f"{major.value}.{minor.value}"


def _torch_identity(torch: object) -> tuple[str | None, str | None]:
    cuda = torch.cuda  # type: ignore[attr-defined]
    if not cuda.is_available():
        return None, None
    major, minor = cuda.get_device_capability(0)
    return cuda.get_device_name(0), f"{major}.{minor}"


def gpu_identity() -> tuple[str | None, str | None]:
    """(GPU name, compute capability 'M.m') of CUDA device 0; (None, None) without CUDA. Imports no torch: the
    driver's answer, else torch's when torch is already loaded (a driver library ctypes could not open)."""
    gpu, cc = _driver_identity()
    torch = sys.modules.get("torch")
    if gpu is None and torch is not None:
        try:
            return _torch_identity(torch)
        except Exception:  # a half-initialised or CPU-only torch: no GPU from it either
            return None, None
    return gpu, cc


def cuda_available() -> bool:
    """A CUDA device is visible (see `gpu_identity`), without importing torch."""
    return gpu_identity()[0] is not None
