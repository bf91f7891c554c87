"""Prediction-head argmax + gather: Triton kernel (interpreter on CPU) against its PyTorch reference."""

from __future__ import annotations

import pytest
import torch

from kernels.head_argmax import head_argmax, reference_head_argmax
from kernels.triton_support import HAS_TRITON, TRITON_IMPORT_ERROR, NonFiniteInputError, poison_

pytestmark = pytest.mark.skipif(not HAS_TRITON, reason=f"triton not installed ({TRITON_IMPORT_ERROR})")


def run_poisoned(h, weight, bias, table, **kw):
    idx = poison_(torch.empty(h.shape[0], dtype=torch.int64, device=h.device))
    rows = poison_(torch.empty(h.shape[0], table.shape[1], dtype=table.dtype, device=h.device))
    out = head_argmax(h, weight, bias, table, out_idx=idx, out_rows=rows, **kw)
    assert out[0] is idx and out[1] is rows
    return idx, rows


def assert_same_or_near_tie(idx, ref_idx, h, weight, bias, rel=1e-5):
    diff = (idx != ref_idx).nonzero().flatten()
    if diff.numel() == 0:
        return
    logits = h.double()[diff] @ weight.double().t() + (0 if bias is None else bias.double())
    rows = torch.arange(diff.numel())
    gap = (logits[rows, idx[diff]] - logits[rows, ref_idx[diff]]).abs()
    assert (gap <= rel * logits[rows].abs().amax(1).clamp_min(1.0)).all(), f"rows {diff.tolist()} gap {gap}"


@pytest.mark.parametrize("k", [2048, 3072])
@pytest.mark.parametrize("b", [1, 3, 17, 64])
def test_matches_reference(b, k, device, seed):
    h = torch.randn(b, 128, device=device)
    weight = torch.randn(k, 128, device=device) / 128**0.5
    bias = torch.randn(k, device=device) if b % 2 else None  # with and without bias
    table = torch.randn(k, 128, device=device)
    idx, rows = run_poisoned(h, weight, bias, table)
    ref_idx, _ = reference_head_argmax(h, weight, bias, table)
    assert_same_or_near_tie(idx, ref_idx, h, weight, bias)
    assert torch.equal(rows, table[idx])


def test_planted_ties_resolve_to_lowest_index_like_torch_argmax(device, seed):
    k, d = 3072, 128
    g = torch.Generator().manual_seed(seed)
    weight = torch.randint(-3, 4, (k, d), generator=g).float()
    bias = torch.randint(-3, 4, (k,), generator=g).float()
    h = torch.randint(-3, 4, (17, d), generator=g).float()  # integer logits: exact in fp32
    ref_idx, _ = reference_head_argmax(h, weight, bias, weight)
    for row in range(17):  # copy each row's winner to later rows (same tile, later tiles, last row)
        for hi in (ref_idx[row] + 1, ref_idx[row] + 64, k - 1):
            if hi < k and hi not in ref_idx.tolist():
                weight[hi], bias[hi] = weight[ref_idx[row]], bias[ref_idx[row]]
    expect, _ = reference_head_argmax(h, weight, bias, weight)
    idx, rows = run_poisoned(h.to(device), weight.to(device), bias.to(device), weight.to(device))
    assert torch.equal(idx.cpu(), expect)
    assert torch.equal(idx.cpu(), (h @ weight.t() + bias).argmax(1))


def test_fused_gather_of_a_narrow_table(device, seed):
    """E = 96 (odd width, masked chunks) and the table is a different tensor from the weight."""
    h = torch.randn(5, 128, device=device)
    weight = torch.randn(2048, 128, device=device)
    table = torch.randn(2048, 96, device=device)
    idx, rows = run_poisoned(h, weight, None, table)
    assert_same_or_near_tie(idx, reference_head_argmax(h, weight, None, table)[0], h, weight, None)
    assert torch.equal(rows, table[idx])


def test_matches_the_generator_heads(device, seed):
    """HiARM's head_s / head_d Linear + argmax (its own weights are the reference)."""
    from hipart.models.config import GeneratorConfig, TokenizerConfig
    from hipart.models.generator import HiARM

    gen = HiARM(GeneratorConfig(gcsab_blocks=1, head_blocks=1), TokenizerConfig(dense_codebook_size=3072))
    gen = gen.to(device).eval()
    gen.set_codebooks(torch.randn_like(gen.codebook_s), torch.randn_like(gen.codebook_d))
    h = torch.randn(6, 128, device=device)
    for head, codebook in ((gen.head_s, gen.codebook_s), (gen.head_d, gen.codebook_d)):
        idx, rows = run_poisoned(h, head.weight.detach(), head.bias.detach(), codebook)
        with torch.no_grad():
            ref = head(h).argmax(-1)
        assert_same_or_near_tie(idx, ref, h, head.weight.detach(), head.bias.detach())
        assert torch.equal(rows, codebook[idx])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_non_finite_rows_are_reported(device):
    h = torch.randn(4, 128, device=device)
    h[2, 5] = float("nan")
    weight, table = torch.randn(2048, 128, device=device), torch.randn(2048, 128, device=device)
    with pytest.raises(NonFiniteInputError) as err:
        head_argmax(h, weight, None, table)
    assert err.value.rows == [2]
    idx, rows = run_poisoned(h, weight, None, table, on_nan="mark")
    assert idx[2] == -1 and torch.isnan(rows[2]).all() and (idx[[0, 1, 3]] >= 0).all()
    assert torch.equal(idx, reference_head_argmax(h, weight, None, table, on_nan="mark")[0])


def test_half_precision(device, seed):
    h = torch.randn(3, 128, device=device).half()
    weight, table = torch.randn(2048, 128, device=device).half(), torch.randn(2048, 128, device=device).half()
    idx, rows = run_poisoned(h, weight, None, table)
    assert_same_or_near_tie(
        idx, reference_head_argmax(h, weight, None, table)[0], h.float(), weight.float(), None, rel=1e-3
    )
    assert torch.equal(rows, table[idx])
