"""Codebook nearest neighbour, fused: squared distance + running argmin over codebook tiles + gather.

For z [N, D] and a codebook C [K, D] it returns idx [N] (int64) and codes = C[idx] [N, D] in one launch,
without materialising the [N, K] distance matrix. Used by the MSST tokenizer's vector quantizers.

Distance: d[n, k] = |C_k|^2 - 2 <z_n, C_k>  (|z_n|^2 is constant per row and does not change the argmin).
Ties resolve to the lowest index, exactly like torch.argmin: within a tile by Triton's tie-break-left
argmin, across tiles by a strict `<` so an earlier tile keeps a tie.
Non-finite input rows (any NaN/Inf in z_n) get idx -1 and NaN codes; the launcher raises
NonFiniteInputError for them unless on_nan="mark" (which never syncs, for CUDA-graph use).
Dot products run in IEEE fp32 (never TF32) so fp32 results match the reference bit for bit on exact ties.
"""

from __future__ import annotations

import torch

from kernels.arg_checks import check_codebook_nn
from kernels.triton_support import (
    HAS_TRITON,
    check_device,
    finish_reference,
    interpreting,
    kernel_dtype,
    raise_on_invalid,
    require_triton,
    tl,
    triton,
)

BLOCK_N = 16  # rows of z per program (tl.dot needs >= 16)
BLOCK_D = 32  # feature chunk (the interpreter uses 128: one Python-level step per tile)
# (codebook rows per tile, warps) by input dtype: the fp32 IEEE dot is FMA-based and needs 8 warps to stay
# spill-free (96-113 registers); fp16/bf16 use tensor cores. The AOT variants (kernels/aot.py) use the same.
LAUNCH_CONFIG = {torch.float32: (64, 8), torch.float16: (64, 4), torch.bfloat16: (64, 4)}


@triton.jit
def codebook_nn_kernel(
    z_ptr,
    c_ptr,
    idx_ptr,
    codes_ptr,
    N,
    K,
    D,
    stride_zn,
    stride_ck,
    stride_on,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    # z * 0 is NaN exactly where z is NaN or +-Inf: a finiteness test that needs no isnan.
    bad = tl.zeros([BLOCK_N], tl.float32)
    for d0 in range(0, D, BLOCK_D):
        ds = d0 + tl.arange(0, BLOCK_D)
        z = tl.load(
            z_ptr + rows[:, None] * stride_zn + ds[None, :],
            mask=row_ok[:, None] & (ds < D)[None, :],
            other=0.0,
        )
        bad += tl.sum((z * 0.0).to(tl.float32), axis=1)
    finite = bad == 0.0

    best_d = tl.full([BLOCK_N], float("inf"), tl.float32)
    best_i = tl.zeros([BLOCK_N], tl.int32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        dots = tl.zeros([BLOCK_N, BLOCK_K], tl.float32)
        c_sq = tl.zeros([BLOCK_K], tl.float32)
        for d0 in range(0, D, BLOCK_D):  # D in chunks keeps the tiles in registers (no spills at D = 128)
            ds = d0 + tl.arange(0, BLOCK_D)
            d_ok = (ds < D)[None, :]
            z = tl.load(z_ptr + rows[:, None] * stride_zn + ds[None, :], mask=row_ok[:, None] & d_ok, other=0.0)
            z = tl.where(finite[:, None], z, tl.zeros_like(z))  # keep NaN out of the tiles; reported below
            c = tl.load(c_ptr + ks[:, None] * stride_ck + ds[None, :], mask=k_ok[:, None] & d_ok, other=0.0)
            cf = c.to(tl.float32)
            c_sq += tl.sum(cf * cf, axis=1)
            if z.dtype == tl.float32:
                dots = tl.dot(z, tl.trans(c), dots, input_precision="ieee")
            else:
                dots = tl.dot(z, tl.trans(c), dots)
        d = c_sq[None, :] - 2.0 * dots
        d = tl.where(k_ok[None, :], d, float("inf"))
        tile_d, tile_i = tl.min(d, axis=1, return_indices=True, return_indices_tie_break_left=True)
        better = tile_d < best_d
        best_i = tl.where(better, tile_i + k0, best_i)
        best_d = tl.where(better, tile_d, best_d)

    best_i = tl.where(finite, best_i, -1)
    tl.store(idx_ptr + rows, best_i.to(tl.int64), mask=row_ok)
    src = c_ptr + tl.maximum(best_i, 0)[:, None] * stride_ck
    for d0 in range(0, D, BLOCK_D):
        ds = d0 + tl.arange(0, BLOCK_D)
        m = row_ok[:, None] & (ds < D)[None, :]
        g = tl.load(src + ds[None, :], mask=m, other=0.0)
        g = tl.where(finite[:, None], g, float("nan"))
        tl.store(codes_ptr + rows[:, None] * stride_on + ds[None, :], g, mask=m)


def codebook_nn(
    z: torch.Tensor,
    codebook: torch.Tensor,
    *,
    out_idx: torch.Tensor | None = None,
    out_codes: torch.Tensor | None = None,
    on_nan: str = "raise",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest codebook row for each row of z: (idx [N] int64, codes [N, D] in codebook's dtype). Triton."""
    if not HAS_TRITON and z.is_cuda:  # Jetson: the AOT-built library instead of Triton
        from kernels import library

        return library.codebook_nn(z, codebook, out_idx=out_idx, out_codes=out_codes, on_nan=on_nan)
    require_triton()
    check_codebook_nn(z, codebook, on_nan)
    check_device(z, codebook)
    n, d = z.shape
    k = codebook.shape[0]
    zk = kernel_dtype(z).contiguous()
    ck = kernel_dtype(codebook).contiguous()
    if zk.dtype != ck.dtype:
        zk = zk.to(ck.dtype)
    if out_idx is None:
        out_idx = torch.empty(n, dtype=torch.int64, device=z.device)
    if out_codes is None:
        out_codes = torch.empty(n, d, dtype=codebook.dtype, device=z.device)
    codes_k = out_codes if out_codes.dtype == ck.dtype else torch.empty_like(out_codes, dtype=ck.dtype)
    if n:
        grid = (triton.cdiv(n, BLOCK_N),)
        codebook_nn_kernel[grid](
            zk,
            ck,
            out_idx,
            codes_k,
            n,
            k,
            d,
            zk.stride(0),
            ck.stride(0),
            codes_k.stride(0),
            BLOCK_N=BLOCK_N,
            BLOCK_K=LAUNCH_CONFIG[ck.dtype][0],
            BLOCK_D=128 if interpreting() else BLOCK_D,
            num_warps=LAUNCH_CONFIG[ck.dtype][1],
        )
    if codes_k is not out_codes:
        out_codes.copy_(codes_k)
    if on_nan == "raise":
        raise_on_invalid("codebook_nn", out_idx)
    return out_idx, out_codes


def reference_codebook_nn(
    z: torch.Tensor,
    codebook: torch.Tensor,
    *,
    out_idx: torch.Tensor | None = None,
    out_codes: torch.Tensor | None = None,
    on_nan: str = "raise",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch reference with codebook_nn's signature and semantics (fp32 math, torch.argmin ties)."""
    check_codebook_nn(z, codebook, on_nan)
    zf, cf = z.float(), codebook.float()
    dist = (cf * cf).sum(1)[None, :] - 2.0 * (zf @ cf.t())
    idx = dist.argmin(1) if z.shape[0] else torch.empty(0, dtype=torch.int64, device=z.device)
    finite = torch.isfinite(zf).all(1)
    return finish_reference("reference_codebook_nn", idx, finite, codebook, out_idx, out_codes, on_nan)


def install(device_type: str = "cuda") -> bool:
    """Serve the model's quantisers (hipart.models.quantizer.nearest_code) with this kernel on `device_type`.

    True when installed: CUDA with Triton or libhipart_kernels, or 'cpu' under Triton's interpreter (tests)."""
    from hipart.models.quantizer import set_nearest_kernel

    if device_type == "cuda":
        from kernels import library

        if not torch.cuda.is_available() or not (HAS_TRITON or library.available()):
            return False
    elif not (HAS_TRITON and interpreting()):
        return False

    def nearest(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """Token ids of z's rows (the kernel's argmin; its gathered rows are not needed here)."""
        return codebook_nn(z.contiguous(), codebook, on_nan="raise")[0]

    set_nearest_kernel(device_type, nearest)
    return True
