"""ctypes loader for libhipart_kernels (the AOT-built kernels), used when Triton is absent (Jetson).

The launchers here take torch CUDA tensors and have the signatures of the Triton launchers and the
reference_* functions; the kernel files call them automatically for CUDA tensors when Triton is missing.
The library is found at $HIPART_KERNELS_LIB, else next to this file (kernels/lib/), else in ./build/,
else on the system library path. Its argument types come from kernels/aot/manifest.json, the same file
the C launchers were generated from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import threading
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "aot" / "manifest.json"
LIB_NAME = "libhipart_kernels.so"
ERRORS = {
    -1: "no CUDA driver",
    -2: "CUDA error",
    -3: "no cubin for this GPU",
    -4: "bad arguments",
    -5: "misaligned pointer",
    -6: "bad index",
}
_CTYPES = {"i32": ctypes.c_int32, "fp32": ctypes.c_float}
_DTYPES = {torch.float32: "fp32", torch.float16: "fp16"}


class LibraryError(RuntimeError):
    """libhipart_kernels is missing or one of its calls failed (the message carries hipart_last_error)."""


def candidate_paths() -> list[Path]:
    paths = []
    if os.environ.get("HIPART_KERNELS_LIB"):
        paths.append(Path(os.environ["HIPART_KERNELS_LIB"]))
    paths += [HERE / "lib" / LIB_NAME, HERE.parent / "build" / LIB_NAME, Path.cwd() / "build" / LIB_NAME]
    found = ctypes.util.find_library("hipart_kernels")
    if found:
        paths.append(Path(found))
    return paths


class KernelLibrary:
    """One loaded libhipart_kernels with typed entry points (hipart_<variant>)."""

    def __init__(self, path: str | os.PathLike, manifest: str | os.PathLike = MANIFEST):
        self.path = Path(path)
        try:
            self.lib = ctypes.CDLL(str(self.path))
        except OSError as exc:
            raise LibraryError(f"cannot load {self.path}: {exc}") from exc
        lib = self.lib
        lib.hipart_last_error.restype = ctypes.c_char_p
        lib.hipart_triton_version.restype = ctypes.c_char_p
        lib.hipart_kernel_info.argtypes = [
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
        ]
        lib.hipart_kernel_resources.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_int),
        ]
        self.manifest = json.loads(Path(manifest).read_text())
        self.variants = {}
        for v in self.manifest["variants"]:
            fn = getattr(lib, f"hipart_{v['name']}")
            batch = any("batch" in g for g in v["grid"]) or any("batch" in c for c in v["checks"])
            fn.argtypes = (
                [ctypes.c_void_p]
                + ([ctypes.c_int32] if batch else [])
                + [ctypes.c_uint64 if t.startswith("*") else _CTYPES[t] for _, t in v["args"]]
            )
            fn.restype = ctypes.c_int
            self.variants[v["name"]] = fn

    @property
    def triton_version(self) -> str:
        return self.lib.hipart_triton_version().decode()

    def kernels(self) -> dict[str, dict[int, dict]]:
        """{variant: {arch: {registers, shared_bytes}}} as embedded in the library."""
        out = {}
        for i in range(self.lib.hipart_kernel_count()):
            name = ctypes.c_char_p()
            archs = (ctypes.c_int * 8)()
            n = ctypes.c_int()
            self.lib.hipart_kernel_info(i, ctypes.byref(name), archs, 8, ctypes.byref(n))
            per_arch = {}
            for arch in archs[: n.value]:
                regs, smem = ctypes.c_int(), ctypes.c_int()
                self.lib.hipart_kernel_resources(i, arch, ctypes.byref(regs), ctypes.byref(smem))
                per_arch[arch] = {"registers": regs.value, "shared_bytes": smem.value}
            out[name.value.decode()] = per_arch
        return out

    def check(self, rc: int, what: str) -> None:
        if rc != 0:
            msg = self.lib.hipart_last_error().decode()
            raise LibraryError(f"{what}: {ERRORS.get(rc, rc)}: {msg}")

    def init(self) -> None:
        self.check(self.lib.hipart_init(), "hipart_init")

    def launch(self, variant: str, *args) -> None:
        if variant not in self.variants:
            raise LibraryError(f"{self.path} has no kernel {variant!r} (has {sorted(self.variants)})")
        self.check(self.variants[variant](*args), variant)


_lock = threading.Lock()
_loaded: KernelLibrary | None = None
_load_error: str | None = None


def load(path: str | os.PathLike | None = None) -> KernelLibrary:
    """The process-wide library (first loadable candidate), or LibraryError saying where it looked."""
    global _loaded, _load_error
    if path is not None:
        return KernelLibrary(path)
    with _lock:
        if _loaded is None:
            tried = []
            for p in candidate_paths():
                if p.exists():
                    try:
                        _loaded = KernelLibrary(p)
                        break
                    except LibraryError as exc:
                        tried.append(str(exc))
                else:
                    tried.append(f"{p}: not found")
            if _loaded is None:
                _load_error = "; ".join(tried)
                raise LibraryError(
                    f"libhipart_kernels not found (build it: cmake -S . -B build && cmake "
                    f"--build build). Tried: {_load_error}"
                )
        return _loaded


def available() -> bool:
    try:
        load()
        return True
    except LibraryError:
        return False


# -- torch-facing launchers (same signatures as the Triton launchers) -------------------------------------
def _stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


def _variant(kind: str, dtype: torch.dtype) -> str:
    if dtype not in _DTYPES:
        raise TypeError(f"libhipart_kernels has {kind} for float32/float16, not {dtype}")
    return f"{kind}_{_DTYPES[dtype]}"


def _cuda(*ts: torch.Tensor) -> None:
    for t in ts:
        if t is not None and not t.is_cuda:
            raise ValueError("libhipart_kernels launchers need CUDA tensors")


def codebook_nn(z, codebook, *, out_idx=None, out_codes=None, on_nan="raise"):
    from kernels.arg_checks import check_codebook_nn
    from kernels.triton_support import raise_on_invalid

    check_codebook_nn(z, codebook, on_nan)
    _cuda(z, codebook)
    lib = load()
    c = codebook.contiguous()
    zc = z.to(c.dtype).contiguous()
    n, d = zc.shape
    idx = out_idx if out_idx is not None else torch.empty(n, dtype=torch.int64, device=z.device)
    codes = out_codes if out_codes is not None else torch.empty(n, d, dtype=c.dtype, device=z.device)
    codes_k = (
        codes
        if (codes.dtype == c.dtype and codes.stride(-1) == 1)
        else torch.empty(n, d, dtype=c.dtype, device=z.device)
    )
    lib.launch(
        _variant("codebook_nn", c.dtype),
        _stream(zc),
        zc.data_ptr(),
        c.data_ptr(),
        idx.data_ptr(),
        codes_k.data_ptr(),
        n,
        c.shape[0],
        d,
        zc.stride(0),
        c.stride(0),
        codes_k.stride(0),
    )
    if codes_k is not codes:
        codes.copy_(codes_k)
    if on_nan == "raise":
        raise_on_invalid("codebook_nn", idx)
    return idx, codes


def head_argmax(h, weight, bias, table, *, out_idx=None, out_rows=None, on_nan="raise"):
    from kernels.arg_checks import check_head_argmax
    from kernels.triton_support import raise_on_invalid

    check_head_argmax(h, weight, bias, table, on_nan)
    _cuda(h, weight, bias, table)
    lib = load()
    w = weight.contiguous()
    hc = h.to(w.dtype).contiguous()
    b = bias.to(w.dtype).contiguous() if bias is not None else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    t = table.to(w.dtype).contiguous()
    nb, d = hc.shape
    e = t.shape[1]
    idx = out_idx if out_idx is not None else torch.empty(nb, dtype=torch.int64, device=h.device)
    rows = out_rows if out_rows is not None else torch.empty(nb, e, dtype=table.dtype, device=h.device)
    rows_k = (
        rows if (rows.dtype == t.dtype and rows.stride(-1) == 1) else torch.empty(nb, e, dtype=t.dtype, device=h.device)
    )
    lib.launch(
        _variant("head_argmax", w.dtype),
        _stream(hc),
        hc.data_ptr(),
        w.data_ptr(),
        b.data_ptr(),
        t.data_ptr(),
        idx.data_ptr(),
        rows_k.data_ptr(),
        nb,
        w.shape[0],
        d,
        e,
        hc.stride(0),
        w.stride(0),
        t.stride(0),
        rows_k.stride(0),
    )
    if rows_k is not rows:
        rows.copy_(rows_k)
    if on_nan == "raise":
        raise_on_invalid("head_argmax", idx)
    return idx, rows


def decode_attention(
    qkv, k_cache, v_cache, pos, proj_weight=None, proj_bias=None, residual=None, *, scale=None, out=None
):
    from kernels.arg_checks import check_decode_attention

    c_out = check_decode_attention(qkv, k_cache, v_cache, pos, proj_weight, proj_bias, residual)
    _cuda(qkv, k_cache, v_cache, proj_weight, proj_bias, residual)
    lib = load()
    b, h, t, hd = k_cache.shape
    dt = k_cache.dtype
    # The library's variant always projects, adds bias and residual: supply identity/zeros when absent.
    w = proj_weight.to(dt).contiguous() if proj_weight is not None else torch.eye(h * hd, dtype=dt, device=qkv.device)
    bias = proj_bias.to(dt).contiguous() if proj_bias is not None else torch.zeros(c_out, dtype=dt, device=qkv.device)
    res = residual.to(dt).contiguous() if residual is not None else torch.zeros(b, c_out, dtype=dt, device=qkv.device)
    q = qkv.to(dt).contiguous()
    o = (
        out
        if (out is not None and out.dtype == dt and out.stride(-1) == 1)
        else torch.empty(b, c_out, dtype=dt, device=qkv.device)
    )
    lib.launch(
        _variant("decode_attention", dt),
        _stream(q),
        b,
        q.data_ptr(),
        k_cache.data_ptr(),
        v_cache.data_ptr(),
        w.data_ptr(),
        bias.data_ptr(),
        res.data_ptr(),
        o.data_ptr(),
        int(pos),
        h,
        hd,
        c_out,
        hd**-0.5 if scale is None else float(scale),
        q.stride(0),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        w.stride(0),
        res.stride(0),
        o.stride(0),
    )
    if out is None:
        return o if o.dtype == qkv.dtype else o.to(qkv.dtype)
    if o is not out:
        out.copy_(o)
    return out
