"""Cached-attention decode step: Triton kernel (interpreter on CPU) against its reference and the model."""

from __future__ import annotations

import pytest
import torch

from hipart.models.blocks import Attention
from kernels.decode_attention import decode_attention, reference_decode_attention
from kernels.triton_support import HAS_TRITON, TRITON_IMPORT_ERROR, poison_

pytestmark = pytest.mark.skipif(not HAS_TRITON, reason=f"triton not installed ({TRITON_IMPORT_ERROR})")

T = 17  # the HiARM cache: SOS + 16 pairs


def make(b, heads, hd, layers, device, c_out=None):
    c = heads * hd
    c_out = c_out or c
    qkv = torch.randn(b, 3 * c, device=device)
    cache_k = torch.randn(layers, b, heads, T, hd, device=device)
    cache_v = torch.randn(layers, b, heads, T, hd, device=device)
    w = torch.randn(c_out, c, device=device) / c**0.5
    bias = torch.randn(c_out, device=device)
    res = torch.randn(b, c_out, device=device)
    return qkv, cache_k, cache_v, w, bias, res


@pytest.mark.parametrize(
    "b,heads,hd,pos",
    [(1, 8, 16, 0), (1, 8, 16, 16), (3, 8, 16, 7), (2, 4, 8, 1), (3, 6, 12, 11)],  # HiARM, tiny, non-pow2 heads
)
def test_matches_reference_and_writes_only_slot_pos(b, heads, hd, pos, device, seed):
    qkv, ck, cv, w, bias, res = make(b, heads, hd, 3, device)
    ck[1, :, :, pos + 1 :] = float("nan")  # stale future slots must never be read
    cv[1, :, :, pos + 1 :] = float("nan")
    rk, rv = ck.clone().nan_to_num_(0.0), cv.clone().nan_to_num_(0.0)
    out = poison_(torch.empty(b, heads * hd, device=device))
    y = decode_attention(qkv, ck[1], cv[1], pos, w, bias, residual=res, out=out)
    assert y is out and torch.isfinite(y).all()
    ref = reference_decode_attention(qkv, rk[1], rv[1], pos, w, bias, residual=res)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    # The cache: slot pos of layer 1 now holds k/v, everything else is untouched (other layers, other slots).
    q, k, v = qkv.view(b, 3, heads, hd).unbind(1)
    assert torch.equal(ck[1, :, :, pos], k) and torch.equal(cv[1, :, :, pos], v)
    assert torch.equal(ck[1, :, :, :pos], rk[1, :, :, :pos])
    assert torch.isnan(ck[1, :, :, pos + 1 :]).all() and torch.isnan(cv[1, :, :, pos + 1 :]).all()
    assert torch.equal(ck[[0, 2]], rk[[0, 2]]) and torch.equal(cv[[0, 2]], rv[[0, 2]])


@pytest.mark.parametrize("proj,residual", [(False, False), (False, True), (True, False)])
def test_optional_projection_and_residual(proj, residual, device, seed):
    qkv, ck, cv, w, bias, res = make(2, 8, 16, 1, device, c_out=96)
    rk, rv = ck.clone(), cv.clone()
    args = (w, bias) if proj else (None, None)
    r = (res if proj else torch.randn(2, 128, device=device)) if residual else None
    y = decode_attention(qkv, ck[0], cv[0], 5, *args, residual=r)
    ref = reference_decode_attention(qkv, rk[0], rv[0], 5, *args, residual=r)
    assert y.shape == (2, 96 if proj else 128)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


def test_matches_the_model_attention_over_a_whole_decode(device, seed):
    """blocks.Attention.forward_cached (the generator's own module) step by step, 17 positions, 2 layers."""
    b, dim, heads = 2, 128, 8
    attn = Attention(dim, heads).to(device).eval()
    ref_k, ref_v = torch.zeros(2, b, heads, T, dim // heads, device=device), torch.zeros(2, b, heads, T, 16)
    ref_v = ref_v.to(device)
    ker_k = poison_(torch.empty_like(ref_k))  # the kernel never needs a zeroed cache
    ker_v = poison_(torch.empty_like(ref_v))
    steps = torch.arange(T, device=device)
    with torch.no_grad():
        for pos in range(T):
            x = torch.randn(b, 1, dim, device=device)
            mask = (steps[None, :] <= steps[:, None])[pos][None, None, None, :]
            ref = attn.forward_cached(x, pos, ref_k[1], ref_v[1], mask)[:, 0] + x[:, 0]
            got = decode_attention(
                attn.qkv(x[:, 0]),
                ker_k[1],
                ker_v[1],
                pos,
                attn.proj.weight,
                attn.proj.bias,
                residual=x[:, 0],
                scale=attn.scale,
            )
            torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ker_k[1], ref_k[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(ker_v[1], ref_v[1], rtol=0, atol=1e-6)


def test_argument_errors(device):
    qkv, ck, cv, w, bias, res = make(2, 8, 16, 1, device)
    with pytest.raises(ValueError):
        decode_attention(qkv, ck[0], cv[0], T)  # outside the cache
    with pytest.raises(ValueError):
        decode_attention(qkv[:, :100], ck[0], cv[0], 0)
    with pytest.raises(ValueError):
        decode_attention(qkv, ck[0], cv[0], 0, None, bias)
