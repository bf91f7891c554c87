"""Prediction-head argmax + gather, fused: logits = h W^T (+ b) over K classes -> argmax -> table row.

The [B, K] logits never reach memory: each program keeps a running (max, argmax) over K tiles, like
codebook_nn keeps a running argmin. Ties resolve to the lowest index, exactly like torch.argmax.
`table` is whatever the token index selects next (a VQ codebook or the generator's token embedding),
so the decode step's "argmax, then look the token up" is one launch.
Non-finite rows of h get idx -1 and NaN rows; the launcher raises unless on_nan="mark".
"""

from __future__ import annotations

import torch

from kernels.arg_checks import check_head_argmax
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

BLOCK_B = 16
BLOCK_D = 32  # feature chunk (the interpreter uses 128: one Python-level step per tile)
BLOCK_E = 32
# (classes per tile, warps) by weight dtype; spill-free on sm_87/89/90 (kernels/aot/manifest.json).
LAUNCH_CONFIG = {torch.float32: (32, 8), torch.float16: (64, 4), torch.bfloat16: (64, 4)}


@triton.jit
def head_argmax_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    t_ptr,
    idx_ptr,
    rows_ptr,
    B,
    K,
    D,
    E,
    stride_hb,
    stride_wk,
    stride_tk,
    stride_ob,
    HAS_BIAS: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_E: tl.constexpr,
):
    pid = tl.program_id(0)
    bs = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    b_ok = bs < B
    bad = tl.zeros([BLOCK_B], tl.float32)
    for d0 in range(0, D, BLOCK_D):
        ds = d0 + tl.arange(0, BLOCK_D)
        h = tl.load(h_ptr + bs[:, None] * stride_hb + ds[None, :], mask=b_ok[:, None] & (ds < D)[None, :], other=0.0)
        bad += tl.sum((h * 0.0).to(tl.float32), axis=1)  # NaN exactly where a row holds NaN/Inf
    finite = bad == 0.0

    best_v = tl.full([BLOCK_B], float("-inf"), tl.float32)
    best_i = tl.zeros([BLOCK_B], tl.int32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        logits = tl.zeros([BLOCK_B, BLOCK_K], tl.float32)
        for d0 in range(0, D, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            d_ok = (ds < D)[None, :]
            h = tl.load(h_ptr + bs[:, None] * stride_hb + ds[None, :], mask=b_ok[:, None] & d_ok, other=0.0)
            h = tl.where(finite[:, None], h, tl.zeros_like(h))
            w = tl.load(w_ptr + ks[:, None] * stride_wk + ds[None, :], mask=k_ok[:, None] & d_ok, other=0.0)
            if h.dtype == tl.float32:
                logits = tl.dot(h, tl.trans(w), logits, input_precision="ieee")
            else:
                logits = tl.dot(h, tl.trans(w), logits)
        if HAS_BIAS:
            logits += tl.load(b_ptr + ks, mask=k_ok, other=0.0).to(tl.float32)[None, :]
        logits = tl.where(k_ok[None, :], logits, float("-inf"))
        tile_v, tile_i = tl.max(logits, axis=1, return_indices=True, return_indices_tie_break_left=True)
        better = tile_v > best_v
        best_i = tl.where(better, tile_i + k0, best_i)
        best_v = tl.where(better, tile_v, best_v)

    best_i = tl.where(finite, best_i, -1)
    tl.store(idx_ptr + bs, best_i.to(tl.int64), mask=b_ok)
    src = t_ptr + tl.maximum(best_i, 0)[:, None] * stride_tk
    for e0 in range(0, E, BLOCK_E):
        es = e0 + tl.arange(0, BLOCK_E)
        m = b_ok[:, None] & (es < E)[None, :]
        row = tl.load(src + es[None, :], mask=m, other=0.0)
        row = tl.where(finite[:, None], row, float("nan"))
        tl.store(rows_ptr + bs[:, None] * stride_ob + es[None, :], row, mask=m)


def head_argmax(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    table: torch.Tensor,
    *,
    out_idx: torch.Tensor | None = None,
    out_rows: torch.Tensor | None = None,
    on_nan: str = "raise",
) -> tuple[torch.Tensor, torch.Tensor]:
    """argmax_k (h W^T + b) per row and table[argmax]: (idx [B] int64, rows [B, E], table's dtype). Triton."""
    if not HAS_TRITON and h.is_cuda:  # Jetson: the AOT-built library instead of Triton
        from kernels import library

        return library.head_argmax(h, weight, bias, table, out_idx=out_idx, out_rows=out_rows, on_nan=on_nan)
    require_triton()
    check_head_argmax(h, weight, bias, table, on_nan)
    check_device(*(t for t in (h, weight, bias, table) if t is not None))
    nb, d = h.shape
    k, e = table.shape
    wk = kernel_dtype(weight).contiguous()
    hk = kernel_dtype(h).to(wk.dtype).contiguous()
    bk = kernel_dtype(bias).contiguous() if bias is not None else wk  # dummy pointer when HAS_BIAS=False
    tk = kernel_dtype(table).contiguous()
    if out_idx is None:
        out_idx = torch.empty(nb, dtype=torch.int64, device=h.device)
    if out_rows is None:
        out_rows = torch.empty(nb, e, dtype=table.dtype, device=h.device)
    rows_k = out_rows if out_rows.dtype == tk.dtype else torch.empty_like(out_rows, dtype=tk.dtype)
    if nb:
        grid = (triton.cdiv(nb, BLOCK_B),)
        head_argmax_kernel[grid](
            hk,
            wk,
            bk,
            tk,
            out_idx,
            rows_k,
            nb,
            k,
            d,
            e,
            hk.stride(0),
            wk.stride(0),
            tk.stride(0),
            rows_k.stride(0),
            HAS_BIAS=bias is not None,
            BLOCK_B=BLOCK_B,
            BLOCK_K=LAUNCH_CONFIG[wk.dtype][0],
            BLOCK_D=128 if interpreting() else BLOCK_D,
            BLOCK_E=BLOCK_E,
            num_warps=LAUNCH_CONFIG[wk.dtype][1],
        )
    if rows_k is not out_rows:
        out_rows.copy_(rows_k)
    if on_nan == "raise":
        raise_on_invalid("head_argmax", out_idx)
    return out_idx, out_rows


def reference_head_argmax(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    table: torch.Tensor,
    *,
    out_idx: torch.Tensor | None = None,
    out_rows: torch.Tensor | None = None,
    on_nan: str = "raise",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain-PyTorch reference with head_argmax's signature: materialises the logits, torch.argmax ties."""
    check_head_argmax(h, weight, bias, table, on_nan)
    hf = h.float()
    logits = hf @ weight.float().t()
    if bias is not None:
        logits = logits + bias.float()
    idx = logits.argmax(1) if h.shape[0] else torch.empty(0, dtype=torch.int64, device=h.device)
    return finish_reference("reference_head_argmax", idx, torch.isfinite(hf).all(1), table, out_idx, out_rows, on_nan)
