import math

import pytest
import torch
import torch.nn.functional as F

from hipart.models.config import HiPARTConfig, TokenizerConfig
from hipart.models.quantizer import VectorQuantizer, nearest_code
from hipart.models.tokenizer import MSSTokenizer, local_alignment_loss


def test_nearest_code_ties_resolve_to_lowest_index_and_nan_is_reported():
    cb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    z = torch.tensor([[1.0, 0.0], [0.5, 0.5], [-0.9, 0.1]])
    assert nearest_code(z, cb).tolist() == [0, 0, 3]  # row 1 ties codes 0, 1, 2 -> 0
    with pytest.raises(ValueError, match="NaN in quantiser input rows \\[1\\]"):
        nearest_code(torch.tensor([[0.0, 0.0], [float("nan"), 0.0]]), cb)


def test_ema_update_matches_hand_computation():
    torch.manual_seed(0)
    k, d, decay, eps = 4, 3, 0.9, 1e-5
    vq = VectorQuantizer(k, d, decay=decay, eps=eps)
    count0, sum0 = vq.ema_count.clone(), vq.ema_sum.clone()
    z = torch.randn(6, d)
    idx = torch.tensor([0, 0, 2, 2, 2, 3])
    vq.ema_update(z, idx)
    counts = torch.tensor([2.0, 0.0, 3.0, 1.0])
    sums = torch.stack([z[0] + z[1], torch.zeros(d), z[2] + z[3] + z[4], z[5]])
    want_count = decay * count0 + (1 - decay) * counts
    want_sum = decay * sum0 + (1 - decay) * sums
    n = want_count.sum()
    smoothed = (want_count + eps) / (n + k * eps) * n
    torch.testing.assert_close(vq.ema_count, want_count)
    torch.testing.assert_close(vq.ema_sum, want_sum)
    torch.testing.assert_close(vq.codebook, want_sum / smoothed[:, None])


def test_dead_codes_are_reinitialised_from_the_batch():
    torch.manual_seed(1)
    vq = VectorQuantizer(8, 2, dead_threshold=0.5)
    vq.ema_count[:] = 1.0
    vq.ema_count[[2, 5]] = 0.1
    z = torch.randn(10, 2)
    assert vq.reinit_dead_codes(z) == 2
    for c in (2, 5):
        assert any(torch.equal(vq.codebook[c], row) for row in z)
        assert vq.ema_count[c] == 1.0
    assert vq.usage() == 1.0


def test_perplexity_and_usage():
    vq = VectorQuantizer(8, 2)
    assert math.isclose(float(vq.perplexity(torch.tensor([0, 1, 2, 3]))), 4.0, rel_tol=1e-5)
    assert math.isclose(float(vq.perplexity(torch.tensor([5, 5, 5]))), 1.0, rel_tol=1e-5)


def test_local_alignment_matches_hand_written_infonce():
    torch.manual_seed(2)
    b, js, r, d, tau = 2, 3, 2, 4, 0.07
    zs, zd = torch.randn(b, js, d), torch.randn(b, js * r, d)
    total = 0.0
    for bi in range(b):
        for i in range(js):
            s = F.normalize(zs[bi, i], dim=0)
            sims = [float(s @ F.normalize(zd[bi, k * r : (k + 1) * r].mean(0), dim=0)) / tau for k in range(js)]
            total += -(sims[i] - math.log(sum(math.exp(v) for v in sims)))
    assert math.isclose(float(local_alignment_loss(zs, zd, tau)), total / b, rel_tol=1e-4)


def test_straight_through_gradient_reaches_the_encoders():
    torch.manual_seed(3)
    tok = MSSTokenizer(HiPARTConfig.tiny().tokenizer).train()
    x_f, x_d = torch.randn(4, 96, 2) * 0.3, torch.randn(4, 48, 2) * 0.3
    out = tok(x_f, x_d, action=torch.tensor([0, 1, 2, 3]))
    out["loss_rec_fine"].backward()  # only through the quantised path: needs the straight-through estimator
    g = tok.enc_fine.embed.weight.grad
    assert g is not None and g.abs().sum() > 0
    assert tok.enc_dense.embed.weight.grad.abs().sum() > 0
    for key in ("loss", "loss_local", "loss_global", "loss_commit", "perplexity_sparse"):
        assert torch.isfinite(out[key]), key


def test_tokenizer_shapes_encode_decode_and_ablations():
    torch.manual_seed(4)
    cfg = HiPARTConfig.tiny().tokenizer
    tok = MSSTokenizer(cfg).train()
    x_f = torch.randn(5, 96, 2) * 0.3
    tok(x_f)  # initialises the codebooks from data
    tok.eval()
    q_s, q_d = tok.encode(x_f)
    assert q_s.shape == (5, 16) and q_d.shape == (5, 48) and q_s.dtype == torch.long
    out = tok(x_f)
    assert torch.equal(out["q_s"], q_s) and torch.equal(out["q_d"], q_d)
    x_d, x_f2 = tok.decode(q_s, q_d)
    assert x_d.shape == (5, 48, 2) and x_f2.shape == (5, 96, 2)
    torch.testing.assert_close(x_f2, out["x_f"])

    shared = MSSTokenizer(TokenizerConfig(**{**cfg.__dict__, "shared_codebook": True, "dense_codebook_size": 64}))
    assert shared.sparse_quantizer is shared.dense_quantizer
    off = MSSTokenizer(TokenizerConfig(**{**cfg.__dict__, "local_alignment": False, "global_alignment": False}))
    o = off(x_f, action=torch.zeros(5, dtype=torch.long))
    assert "loss_local" not in o and "loss_global" not in o and off.action_proj is None
    with pytest.raises(ValueError, match="shared_codebook"):
        TokenizerConfig(shared_codebook=True, dense_codebook_size=3072)


def test_paper_size_tokenizer_shapes():
    tok = MSSTokenizer(TokenizerConfig(dense_codebook_size=3072)).eval()
    q_s, q_d = tok.encode(torch.randn(2, 96, 2))
    assert int(q_d.max()) < 3072 and tok.dense_quantizer.codebook.shape == (3072, 128)
    x_d, x_f = tok.decode(q_s, q_d)
    assert x_d.shape == (2, 48, 2) and x_f.shape == (2, 96, 2)
