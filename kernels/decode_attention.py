"""Cached-attention decode step, fused: KV-cache write + all-heads attention + output projection + residual.

One new token per sequence (batch-1 HiPART decode is launch-bound, so the step is one launch per block).
Inputs follow hipart.models.blocks.Attention: `qkv` is the qkv Linear's output [B, 3C] laid out as
(3, heads, head_dim); the cache of one layer is k/v [B, heads, T, head_dim] (last dim contiguous; any other
strides, so a layer slice of the generator's KVCache [layers, B, heads, T=17, head_dim] is passed as is).

Per sequence b (one program each):
  k_cache[b, :, pos] = k;  v_cache[b, :, pos] = v                       (the cache update)
  o[h] = softmax_t<=pos((q[h] * scale) . k_cache[b, h, t]) @ v_cache[b, h, :pos+1]
  out[b] = residual[b] + o.flatten() @ W_proj^T + b_proj                (projection/residual optional)
The new k/v are taken from registers for slot `pos` (never re-read from the cache just written, which
would need a barrier), and slots > pos are never loaded, so stale or poisoned cache entries cannot leak.
"""

from __future__ import annotations

import torch

from kernels.arg_checks import check_decode_attention
from kernels.triton_support import (
    HAS_TRITON,
    check_device,
    kernel_dtype,
    next_pow2,
    require_triton,
    tl,
    triton,
)

BLOCK_C = 32  # output-projection rows per inner iteration
NUM_WARPS = 4


@triton.jit
def decode_attention_kernel(
    qkv_ptr,
    kc_ptr,
    vc_ptr,
    w_ptr,
    bias_ptr,
    res_ptr,
    out_ptr,
    pos,
    H,
    HD,
    C_OUT,
    scale,
    stride_qkv_b,
    stride_cb,
    stride_ch,
    stride_ct,
    stride_wc,
    stride_res_b,
    stride_out_b,
    HAS_PROJ: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_HD: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    b = tl.program_id(0)
    hs = tl.arange(0, BLOCK_H)
    ts = tl.arange(0, BLOCK_T)
    es = tl.arange(0, BLOCK_HD)
    h_ok = hs < H
    e_ok = es < HD
    he_ok = h_ok[:, None] & e_ok[None, :]
    C = H * HD
    row = qkv_ptr + b * stride_qkv_b + hs[:, None] * HD + es[None, :]  # [BLOCK_H, BLOCK_HD]
    q = tl.load(row, mask=he_ok, other=0.0).to(tl.float32) * scale
    k_new = tl.load(row + C, mask=he_ok, other=0.0)
    v_new = tl.load(row + 2 * C, mask=he_ok, other=0.0)

    # Cache slots 0..pos-1 from memory, slot pos from registers.
    off3 = b * stride_cb + hs[:, None, None] * stride_ch + ts[None, :, None] * stride_ct + es[None, None, :]
    old = (ts < pos)[None, :, None] & he_ok[:, None, :]
    k = tl.load(kc_ptr + off3, mask=old, other=0.0).to(tl.float32)
    v = tl.load(vc_ptr + off3, mask=old, other=0.0).to(tl.float32)
    is_new = (ts == pos)[None, :, None]
    k = tl.where(is_new, k_new.to(tl.float32)[:, None, :], k)
    v = tl.where(is_new, v_new.to(tl.float32)[:, None, :], v)
    new_off = b * stride_cb + hs[:, None] * stride_ch + pos * stride_ct + es[None, :]
    tl.store(kc_ptr + new_off, k_new, mask=he_ok)
    tl.store(vc_ptr + new_off, v_new, mask=he_ok)

    scores = tl.sum(q[:, None, :] * k, axis=2)  # [BLOCK_H, BLOCK_T]
    scores = tl.where((ts <= pos)[None, :], scores, float("-inf"))
    m = tl.max(scores, axis=1)
    p = tl.exp(scores - m[:, None])
    p = p / tl.sum(p, axis=1)[:, None]
    o = tl.sum(p[:, :, None] * v, axis=1)  # [BLOCK_H, BLOCK_HD]

    if HAS_PROJ:
        for c0 in range(0, C_OUT, BLOCK_C):
            cs = c0 + tl.arange(0, BLOCK_C)
            c_ok = cs < C_OUT
            w = tl.load(
                w_ptr + cs[:, None, None] * stride_wc + hs[None, :, None] * HD + es[None, None, :],
                mask=c_ok[:, None, None] & he_ok[None, :, :],
                other=0.0,
            ).to(tl.float32)
            y = tl.sum(tl.sum(w * o[None, :, :], axis=2), axis=1)
            if HAS_BIAS:
                y += tl.load(bias_ptr + cs, mask=c_ok, other=0.0).to(tl.float32)
            if HAS_RESIDUAL:
                y += tl.load(res_ptr + b * stride_res_b + cs, mask=c_ok, other=0.0).to(tl.float32)
            tl.store(out_ptr + b * stride_out_b + cs, y, mask=c_ok)
    else:
        o_off = out_ptr + b * stride_out_b + hs[:, None] * HD + es[None, :]
        if HAS_RESIDUAL:
            o += tl.load(res_ptr + b * stride_res_b + hs[:, None] * HD + es[None, :], mask=he_ok, other=0.0).to(
                tl.float32
            )
        tl.store(o_off, o, mask=he_ok)


def decode_attention(
    qkv: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    pos: int,
    proj_weight: torch.Tensor | None = None,
    proj_bias: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    *,
    scale: float | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """One cached decode step of multi-head attention for all heads (writes k/v at `pos`). Triton."""
    if not HAS_TRITON and qkv.is_cuda:  # Jetson: the AOT-built library instead of Triton
        from kernels import library

        return library.decode_attention(
            qkv, k_cache, v_cache, pos, proj_weight, proj_bias, residual, scale=scale, out=out
        )
    require_triton()
    c_out = check_decode_attention(qkv, k_cache, v_cache, pos, proj_weight, proj_bias, residual)
    check_device(*(t for t in (qkv, k_cache, v_cache, proj_weight, proj_bias, residual) if t is not None))
    b, h, t, hd = k_cache.shape
    if k_cache.dtype == torch.bfloat16 and kernel_dtype(k_cache) is not k_cache:
        raise TypeError("bfloat16 caches cannot run under the interpreter (no bf16); use float32 there")
    qkv_k = kernel_dtype(qkv).to(k_cache.dtype)
    if qkv_k.stride(-1) != 1:
        qkv_k = qkv_k.contiguous()
    w = kernel_dtype(proj_weight).contiguous() if proj_weight is not None else qkv_k
    bias = kernel_dtype(proj_bias).contiguous() if proj_bias is not None else qkv_k
    res = kernel_dtype(residual) if residual is not None else qkv_k
    if res.stride(-1) != 1:
        res = res.contiguous()
    if out is None:
        out = torch.empty(b, c_out, dtype=qkv.dtype, device=qkv.device)
    out_k = (
        out
        if (out.dtype == kernel_dtype(out).dtype and out.stride(-1) == 1)
        else torch.empty(b, c_out, dtype=torch.float32, device=out.device)
    )
    scale = hd**-0.5 if scale is None else float(scale)
    if b:
        decode_attention_kernel[(b,)](
            qkv_k,
            k_cache,
            v_cache,
            w,
            bias,
            res,
            out_k,
            int(pos),
            h,
            hd,
            c_out,
            scale,
            qkv_k.stride(0),
            k_cache.stride(0),
            k_cache.stride(1),
            k_cache.stride(2),
            w.stride(0),
            res.stride(0),
            out_k.stride(0),
            HAS_PROJ=proj_weight is not None,
            HAS_BIAS=proj_bias is not None,
            HAS_RESIDUAL=residual is not None,
            BLOCK_H=next_pow2(h),
            BLOCK_T=next_pow2(t),
            BLOCK_HD=next_pow2(hd),
            BLOCK_C=BLOCK_C,
            num_warps=NUM_WARPS,
        )
    if out_k is not out:
        out.copy_(out_k)
    return out


def reference_decode_attention(
    qkv: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    pos: int,
    proj_weight: torch.Tensor | None = None,
    proj_bias: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    *,
    scale: float | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Plain-PyTorch reference with decode_attention's signature (the math of Attention.forward_cached)."""
    c_out = check_decode_attention(qkv, k_cache, v_cache, pos, proj_weight, proj_bias, residual)
    b, h, t, hd = k_cache.shape
    pos = int(pos)
    q, k, v = qkv.view(b, 3, h, hd).unbind(1)  # each [B, H, hd]
    k_cache[:, :, pos] = k.to(k_cache.dtype)
    v_cache[:, :, pos] = v.to(v_cache.dtype)
    scale = hd**-0.5 if scale is None else float(scale)
    kc, vc = k_cache[:, :, : pos + 1].float(), v_cache[:, :, : pos + 1].float()
    scores = ((q.float() * scale)[:, :, None] @ kc.transpose(-2, -1))[:, :, 0]  # [B, H, pos+1]
    o = (scores.softmax(-1)[:, :, None] @ vc)[:, :, 0].reshape(b, h * hd)  # [B, C]
    y = o
    if proj_weight is not None:
        y = torch.nn.functional.linear(o, proj_weight.float(), None if proj_bias is None else proj_bias.float())
    if residual is not None:
        y = y + residual.float()
    if out is None:
        return y.to(qkv.dtype)
    out.copy_(y)
    assert out.shape == (b, c_out)
    return out
