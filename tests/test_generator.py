import pytest
import torch

from hipart import skeleton
from hipart.models.config import GeneratorConfig, HiPARTConfig
from hipart.models.generator import HiARM


def tiny_generator(seed: int = 0, **overrides) -> HiARM:
    torch.manual_seed(seed)
    cfg = HiPARTConfig.tiny()
    gen = HiARM(GeneratorConfig(**{**cfg.generator.__dict__, **overrides}), cfg.tokenizer).eval()
    gen.set_codebooks(torch.randn_like(gen.codebook_s), torch.randn_like(gen.codebook_d))
    return gen


def random_tokens(gen: HiARM, b: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q_s = torch.randint(0, gen.codebook_s.shape[0], (b, 16), generator=g)
    q_d = torch.randint(0, gen.codebook_d.shape[0], (b, 48), generator=g)
    return q_s, q_d


def test_teacher_forced_shapes():
    gen = tiny_generator()
    x = torch.randn(3, 17, 2)
    ls, ld = gen(x, *random_tokens(gen, 3, 0))
    assert ls.shape == (3, 16, 64) and ld.shape == (3, 48, 96)
    out = gen.loss(ls, ld, *random_tokens(gen, 3, 0))
    assert torch.isfinite(out["loss"]) and 0 <= float(out["acc_dense"]) <= 1


@pytest.mark.parametrize("s2d", [True, False])
def test_causality_perturbing_a_pair_leaves_earlier_predictions_unchanged(s2d):
    gen = tiny_generator(1, sparse_to_dense=s2d)
    x = torch.randn(2, 17, 2)
    q_s, q_d = random_tokens(gen, 2, 1)
    ls0, ld0 = gen(x, q_s, q_d)
    order = gen.order.tolist()
    for m in (0, 4, 9, 14):  # pair generated at step m (0-based) sits at sequence position m + 1
        part = order[m]
        q_d2 = q_d.clone()
        q_d2[:, 3 * part : 3 * part + 3] = (q_d2[:, 3 * part : 3 * part + 3] + 7) % gen.codebook_d.shape[0]
        ls1, ld1 = gen(x, q_s, q_d2)
        before = order[: m + 1]  # predictions made at steps <= m never see pair m's dense tokens as input
        after = order[m + 1 :]
        torch.testing.assert_close(ls1[:, before], ls0[:, before], rtol=0, atol=0)
        dense_before = [3 * p + j for p in before for j in range(3)]
        if s2d:
            torch.testing.assert_close(ld1[:, dense_before], ld0[:, dense_before], rtol=0, atol=0)
        if after:
            assert not torch.allclose(ls1[:, after], ls0[:, after])
        # the sparse token of pair m conditions only its own dense tokens and later steps
        q_s2 = q_s.clone()
        q_s2[:, part] = (q_s2[:, part] + 5) % gen.codebook_s.shape[0]
        ls2, ld2 = gen(x, q_s2, q_d)
        torch.testing.assert_close(ls2[:, before], ls0[:, before], rtol=0, atol=0)
        dense_strictly_before = [3 * p + j for p in order[:m] for j in range(3)]
        torch.testing.assert_close(ld2[:, dense_strictly_before], ld0[:, dense_strictly_before], rtol=0, atol=0)
        assert not torch.allclose(ld2[:, 3 * part : 3 * part + 3], ld0[:, 3 * part : 3 * part + 3])


@pytest.mark.parametrize(
    "overrides",
    [{}, {"sparse_to_dense": False}, {"order": "next_token"}, {"order": "next_token", "sparse_to_dense": False}],
)
def test_cached_decode_equals_uncached_over_many_seeds(overrides):
    for seed in range(8):
        gen = tiny_generator(seed, **overrides)
        x = torch.randn(1 + seed % 4, 17, 2, generator=torch.Generator().manual_seed(100 + seed))
        a = gen.generate(x, use_cache=True, return_logits=True)
        b = gen.generate(x, use_cache=False, return_logits=True)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), f"seed {seed}"
        torch.testing.assert_close(a[2], b[2], rtol=0, atol=1e-5)
        torch.testing.assert_close(a[3], b[3], rtol=0, atol=1e-5)


def test_paper_size_cached_decode_equals_uncached():
    torch.manual_seed(7)
    gen = HiARM().eval()
    gen.set_codebooks(torch.randn_like(gen.codebook_s), torch.randn_like(gen.codebook_d))
    x = torch.randn(2, 17, 2)
    a = gen.generate(x, return_logits=True)
    b = gen.generate(x, use_cache=False, return_logits=True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    torch.testing.assert_close(a[2], b[2], rtol=0, atol=1e-5)
    assert a[0].shape == (2, 16) and a[1].shape == (2, 48) and a[3].shape == (2, 48, 2048)


@pytest.mark.parametrize("s2d", [True, False])
def test_decode_logits_equal_teacher_forced_logits_on_its_own_tokens(s2d):
    gen = tiny_generator(3, sparse_to_dense=s2d)
    x = torch.randn(3, 17, 2)
    q_s, q_d, ls, ld = gen.generate(x, return_logits=True)
    ls_tf, ld_tf = gen(x, q_s, q_d)
    torch.testing.assert_close(ls, ls_tf, rtol=0, atol=1e-5)
    torch.testing.assert_close(ld, ld_tf, rtol=0, atol=1e-5)


def test_generation_follows_center_to_periphery_order():
    gen = tiny_generator(4)
    assert tuple(gen.order.tolist()) == skeleton.CENTER_TO_PERIPHERY
    assert torch.equal(gen.order[gen.inv_order], torch.arange(16))


def test_classification_head_is_one_parallel_pass():
    gen = tiny_generator(5, mode="classification")
    x = torch.randn(2, 17, 2)
    q_s, q_d, ls, ld = gen.generate(x, return_logits=True)
    assert q_s.shape == (2, 16) and q_d.shape == (2, 48)
    # no autoregression: the teacher-forced logits do not depend on the tokens at all
    ls2, ld2 = gen(x, *random_tokens(gen, 2, 9))
    torch.testing.assert_close(ls, ls2)
    torch.testing.assert_close(ld, ld2)


def test_kv_cache_is_static_and_reused():
    gen = tiny_generator(6)
    gen.generate(torch.randn(2, 17, 2))
    cache = gen.cache
    assert cache.k.shape == (2, 2, 4, 17, 8)  # [layers, B, heads, 17, head_dim]
    gen.generate(torch.randn(2, 17, 2))
    assert gen.cache is cache
    gen.generate(torch.randn(3, 17, 2))
    assert gen.cache is not cache and gen.cache.batch == 3


@pytest.mark.gpu
def test_cached_decode_on_cuda_matches_cpu():
    gen = tiny_generator(8)
    x = torch.randn(4, 17, 2)
    cpu = gen.generate(x)
    cuda = gen.cuda().generate(x.cuda())
    assert torch.equal(cpu[0], cuda[0].cpu()) and torch.equal(cpu[1], cuda[1].cpu())


def test_fused_training_attention_matches_the_explicit_inference_graph():
    """Without attention dropout, training uses the fused SDPA kernel; it must equal the explicit graph."""
    from hipart.models.blocks import Attention

    torch.manual_seed(0)
    att = Attention(32, 4, dropout=0.0)
    x = torch.randn(3, 10, 32)
    mask = torch.tril(torch.ones(10, 10, dtype=torch.bool))
    for m in (None, mask):
        att.train()
        fused = att(x, m)
        att.eval()
        torch.testing.assert_close(fused, att(x, m), atol=1e-6, rtol=1e-5)
    assert Attention(32, 4, dropout=0.1, attn_dropout=0.0).attn_drop.p == 0.0
    assert Attention(32, 4, dropout=0.1).attn_drop.p == 0.1
