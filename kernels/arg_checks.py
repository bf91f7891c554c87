"""Argument contracts of the kernels, shared by the Triton launchers, the reference_* functions and the
AOT-library launchers (kernels/library.py): one check per kernel, raising ValueError with the reason."""

from __future__ import annotations

import torch

from kernels.triton_support import check_on_nan


def check_codebook_nn(z: torch.Tensor, codebook: torch.Tensor, on_nan: str) -> None:
    """codebook_nn's argument contract: z [N, D], codebook [K > 0, D], on_nan."""
    if z.dim() != 2 or codebook.dim() != 2 or z.shape[1] != codebook.shape[1]:
        raise ValueError(f"expected z [N, D] and codebook [K, D], got {tuple(z.shape)} and {tuple(codebook.shape)}")
    if codebook.shape[0] == 0:
        raise ValueError("empty codebook")
    check_on_nan(on_nan)


def check_head_argmax(h, weight, bias, table, on_nan) -> None:
    """head_argmax's argument contract: h [B, D], weight [K > 0, D], bias [K] or None, table [K, E], on_nan."""
    if h.dim() != 2 or weight.dim() != 2 or h.shape[1] != weight.shape[1]:
        raise ValueError(f"expected h [B, D] and weight [K, D], got {tuple(h.shape)} and {tuple(weight.shape)}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must be [K]={weight.shape[0]}, got {tuple(bias.shape)}")
    if table.dim() != 2 or table.shape[0] != weight.shape[0]:
        raise ValueError(f"table must be [K={weight.shape[0]}, E], got {tuple(table.shape)}")
    if weight.shape[0] == 0:
        raise ValueError("no classes (K = 0)")
    check_on_nan(on_nan)


def check_decode_attention(qkv, k_cache, v_cache, pos, proj_weight, proj_bias, residual) -> int:
    """decode_attention's argument contract; returns the output width C_out."""
    if k_cache.dim() != 4 or k_cache.shape != v_cache.shape:
        raise ValueError(
            f"k/v cache must both be [B, heads, T, head_dim], got {tuple(k_cache.shape)}, {tuple(v_cache.shape)}"
        )
    b, h, t, hd = k_cache.shape
    if qkv.shape != (b, 3 * h * hd):
        raise ValueError(f"qkv must be [B={b}, 3*heads*head_dim={3 * h * hd}], got {tuple(qkv.shape)}")
    if not 0 <= int(pos) < t:
        raise ValueError(f"pos {pos} outside the cache's {t} slots")
    if k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1 or k_cache.stride() != v_cache.stride():
        raise ValueError("k/v caches need a contiguous last dim and equal strides")
    c_out = h * hd
    if proj_weight is not None:
        if proj_weight.dim() != 2 or proj_weight.shape[1] != h * hd:
            raise ValueError(f"proj_weight must be [C_out, {h * hd}], got {tuple(proj_weight.shape)}")
        c_out = proj_weight.shape[0]
    elif proj_bias is not None:
        raise ValueError("proj_bias without proj_weight")
    if proj_bias is not None and proj_bias.shape != (c_out,):
        raise ValueError(f"proj_bias must be [{c_out}], got {tuple(proj_bias.shape)}")
    if residual is not None and residual.shape != (b, c_out):
        raise ValueError(f"residual must be [{b}, {c_out}], got {tuple(residual.shape)}")
    return c_out
