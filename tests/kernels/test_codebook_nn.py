"""Codebook nearest neighbour: Triton kernel (interpreter on CPU) against its PyTorch reference."""

from __future__ import annotations

import pytest
import torch

from hipart.models.quantizer import nearest_code
from kernels.codebook_nn import codebook_nn, reference_codebook_nn
from kernels.triton_support import HAS_TRITON, TRITON_IMPORT_ERROR, NonFiniteInputError, poison_

pytestmark = pytest.mark.skipif(not HAS_TRITON, reason=f"triton not installed ({TRITON_IMPORT_ERROR})")


def run_poisoned(z, codebook, **kw):
    """Launch with NaN / int-min poisoned output buffers, so unwritten elements cannot pass."""
    idx = poison_(torch.empty(z.shape[0], dtype=torch.int64, device=z.device))
    codes = poison_(torch.empty(z.shape[0], codebook.shape[1], dtype=codebook.dtype, device=z.device))
    out = codebook_nn(z, codebook, out_idx=idx, out_codes=codes, **kw)
    assert out[0] is idx and out[1] is codes
    return idx, codes


def assert_same_or_near_tie(idx, ref_idx, z, codebook, rel=1e-5):
    """Indices must agree except where two codes are equally near to fp32 rounding (then either is right)."""
    diff = (idx != ref_idx).nonzero().flatten()
    if diff.numel() == 0:
        return
    z64, c64 = z.double()[diff], codebook.double()
    d = ((z64[:, None, :] - c64[None]) ** 2).sum(-1)
    rows = torch.arange(diff.numel())
    gap = (d[rows, idx[diff]] - d[rows, ref_idx[diff]]).abs()
    assert (gap <= rel * d[rows, ref_idx[diff]].abs().clamp_min(1.0)).all(), f"rows {diff.tolist()} differ, gap {gap}"


@pytest.mark.parametrize("k", [2048, 3072])
@pytest.mark.parametrize("n", [1, 3, 17, 64, 300])
def test_matches_reference(n, k, device, seed):
    z = torch.randn(n, 128, device=device)
    codebook = torch.randn(k, 128, device=device)
    idx, codes = run_poisoned(z, codebook)
    ref_idx, _ = reference_codebook_nn(z, codebook)
    assert idx.dtype == torch.int64 and idx.shape == (n,)
    assert_same_or_near_tie(idx, ref_idx, z, codebook)
    assert torch.equal(codes, codebook[idx]), "codes must be the winning rows, bit for bit"


def test_agrees_with_the_model_quantizer(device, seed):
    """hipart.models.quantizer.nearest_code (|z|^2 kept) picks the same codes up to rounding ties."""
    z = torch.randn(64, 128, device=device) * 0.3
    codebook = torch.randn(2048, 128, device=device) / 128**0.5
    idx, _ = run_poisoned(z, codebook)
    assert_same_or_near_tie(idx, nearest_code(z, codebook), z, codebook)


def test_planted_ties_resolve_to_lowest_index_like_torch_argmin(device, seed):
    k, d = 2048, 128
    g = torch.Generator().manual_seed(seed)
    codebook = torch.randint(-8, 9, (k, d), generator=g).float()
    z = torch.randint(-8, 9, (17, d), generator=g).float()
    picks = (5 * torch.randperm((k - 200) // 5, generator=g)[:17]).tolist()  # duplicates (= 1 mod 5) never hit a pick
    for row, lo in enumerate(picks):
        # Exact duplicates: next row (same tile), one and two tiles later, and the very last row.
        for hi in (lo + 1, lo + 66, lo + 131, k - 1):
            codebook[hi] = codebook[lo]
        z[row] = codebook[lo]
    codebook, z = codebook.to(device), z.to(device)
    idx, _ = run_poisoned(z, codebook)
    ref_idx, _ = reference_codebook_nn(z, codebook)
    assert torch.equal(idx, ref_idx)
    for row, lo in enumerate(picks):
        assert idx[row] == lo, f"row {row}: expected lowest duplicate {lo}, got {idx[row]}"


def test_equidistant_pair_across_tiles(device):
    d = 128
    codebook = torch.full((3072, d), 50.0)
    z = torch.zeros(1, d)
    e = torch.zeros(d)
    e[7] = 3.0
    codebook[2999], codebook[65] = z[0] + e, z[0] - e  # |d| equal exactly; 65 is in tile 1, 2999 in tile 46
    idx, codes = run_poisoned(z.to(device), codebook.to(device))
    assert idx.tolist() == [65] == reference_codebook_nn(z, codebook)[0].tolist()
    assert torch.equal(codes.cpu(), codebook[65:66])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_rows_are_reported_not_mapped(bad, device):
    z = torch.randn(17, 128, device=device)
    codebook = torch.randn(2048, 128, device=device)
    z[4, 100] = bad
    z[16, 0] = bad
    with pytest.raises(NonFiniteInputError) as err:
        codebook_nn(z, codebook)
    assert err.value.rows == [4, 16]
    with pytest.raises(NonFiniteInputError):
        reference_codebook_nn(z, codebook)
    idx, codes = run_poisoned(z, codebook, on_nan="mark")
    ref_idx, ref_codes = reference_codebook_nn(z, codebook, on_nan="mark")
    assert idx[4] == -1 and idx[16] == -1
    assert torch.isnan(codes[[4, 16]]).all()
    ok = [i for i in range(17) if i not in (4, 16)]
    assert_same_or_near_tie(idx[ok], ref_idx[ok], z[ok], codebook)
    assert torch.equal(codes[ok], codebook[idx[ok]])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype, device, seed):
    z = torch.randn(17, 128, device=device).to(dtype)
    codebook = torch.randn(2048, 128, device=device).to(dtype)
    idx, codes = run_poisoned(z, codebook)
    ref_idx, _ = reference_codebook_nn(z, codebook)
    assert codes.dtype == dtype
    assert_same_or_near_tie(idx, ref_idx, z.float(), codebook.float(), rel=1e-3)
    assert torch.equal(codes, codebook[idx])


def test_odd_feature_size_and_strided_input(device, seed):
    """D = 160 is not a power of two (masked chunks); z is a non-contiguous view."""
    z = torch.randn(40, 2 * 160, device=device)[::2, ::2]
    codebook = torch.randn(300, 160, device=device)
    idx, codes = run_poisoned(z, codebook)
    assert_same_or_near_tie(idx, reference_codebook_nn(z, codebook)[0], z, codebook)
    assert torch.equal(codes, codebook[idx])


def test_empty_input_and_shape_errors(device):
    codebook = torch.randn(64, 128, device=device)
    idx, codes = codebook_nn(torch.empty(0, 128, device=device), codebook)
    assert idx.shape == (0,) and codes.shape == (0, 128)
    with pytest.raises(ValueError):
        codebook_nn(torch.randn(3, 64, device=device), codebook)
    with pytest.raises(ValueError):
        codebook_nn(torch.randn(3, 128, device=device), codebook, on_nan="ignore")


def test_installed_kernel_serves_the_model_quantiser(seed):
    """kernels.codebook_nn.install routes hipart's nearest_code to the kernel (CPU here, under the interpreter)."""
    from hipart.models.quantizer import VectorQuantizer, set_nearest_kernel
    from kernels.codebook_nn import install

    vq = VectorQuantizer(64, 32)
    z = torch.randn(5, 7, 32)
    want = vq.nearest(z)
    calls = []
    assert install("cpu")
    try:
        import hipart.models.quantizer as q

        fused = q._fused["cpu"]
        q._fused["cpu"] = lambda a, b: calls.append(1) or fused(a, b)
        got = vq.nearest(z)
    finally:
        set_nearest_kernel("cpu", None)
    assert calls and torch.equal(got, want)
