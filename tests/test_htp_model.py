"""HTP diffusion lifter: TCEP mask, SFT-MHSA, MGPTP, the denoiser's switches, DDIM, JPMA and the root fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hipart.camera import normalize_screen_coordinates, root_translation_lsq
from hipart.models.blocks import TransformerBlock
from hipart.models.config import LifterConfig
from hipart.models.diffusion import GaussianDiffusion, ddim_timesteps, jpma, normalised_intrinsics, project, sample
from hipart.models.htp import (
    TCEP,
    HTPConfig,
    HTPDenoiser,
    htp_cost,
    mgptp_scores,
    mgptp_select,
    sft_bias,
    sft_block,
    tcep_mask,
)
from hipart.models.lifter import build_lifter

T = 9
SWITCHES = {"baseline": dict(tcep=False, sft=False, mgptp=False), "tcep": dict(sft=False, mgptp=False),
            "tcep+sft": dict(mgptp=False), "tcep+mgptp": dict(sft=False), "htp": {}}  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _inputs(b: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, T, 17, 3, generator=g), torch.tensor([5, 999])[:b], torch.randn(b, T, 17, 2, generator=g)


def test_config_defaults_validation_and_round_trip():
    assert (HTPConfig(frames=27).keep, HTPConfig(frames=27).tcep_k) == (6, 9)
    assert HTPConfig.paper().keep == 54 and HTPConfig.paper().tcep_k == 162
    cfg = HTPConfig.small(T, mgptp_k=2)
    assert HTPConfig.from_dict(cfg.to_dict()) == cfg
    for bad in (dict(tcep=False), dict(keep=T), dict(keep=1), dict(tcep_k=T), dict(sft_layers=4), dict(condition="x")):
        with pytest.raises(ValueError):
            HTPConfig.small(T, **bad)
    with pytest.raises(ValueError, match="unknown HTPConfig fields"):
        HTPConfig.from_dict({"frames": T, "bogus": 1})


@pytest.mark.parametrize("name", list(SWITCHES))
def test_denoiser_shapes_root_relative_and_gradients(name):
    torch.manual_seed(0)
    model = HTPDenoiser(HTPConfig.small(T, mgptp_k=2, **SWITCHES[name]))
    y, t, x = _inputs()
    out = model(y, t, x)
    assert out.shape == (2, T, 17, 3) and torch.all(out[:, :, 0] == 0)
    out.square().mean().backward()
    assert model.embed.weight.grad is not None and model.embed.weight.grad.abs().sum() > 0
    kept = model.kept_frames(y, t, x)
    n = 2 if model.config.mgptp else T  # keep = round(9 * 54 / 243) = 2
    assert kept.shape == (2, n) and torch.all(kept[:, 1:] > kept[:, :-1])


def test_tcep_mask_keeps_k_per_row_then_self_loops_and_symmetry():
    s = torch.randn(3, 17, T, T)
    mask, sel = tcep_mask(s, 3)
    assert torch.all(sel.sum(-1) == 3)  # exactly k chosen per row before completion
    eye = torch.eye(T, dtype=torch.bool)
    assert not sel[..., eye].any() and mask[..., eye].all()  # never chosen as a neighbour; restored as self-loop
    assert torch.equal(mask, mask.transpose(-1, -2)) and torch.equal(mask, sel | sel.transpose(-1, -2) | eye)
    # the chosen ones are the k highest off-diagonal scores; ties go to the lower index
    off = s.masked_fill(eye, float("-inf"))
    assert torch.all(off.masked_fill(~sel, float("inf")).amin(-1) >= off.masked_fill(sel | eye, -1e9).amax(-1))
    _, tied = tcep_mask(torch.zeros(1, T, T), 2)
    assert tied[0, 0].nonzero().flatten().tolist() == [1, 2] and tied[0, 5].nonzero().flatten().tolist() == [0, 1]


def test_tcep_module_returns_mask_and_starts_on_the_chain_graph():
    tcep = TCEP(T, 16, 3)
    h = torch.randn(2, T, 17, 16)
    out, mask = tcep(h)
    assert out.shape == h.shape and mask.shape == (2, 17, T, T) and mask.dtype == torch.bool
    assert torch.count_nonzero(tcep.p) == 0  # A = A0 at init (chain + self-loops, normalised)
    a0 = tcep.a0
    assert torch.allclose(a0, a0.T) and torch.count_nonzero(a0) == T + 2 * (T - 1)


@pytest.mark.parametrize("training", [False, True])
def test_sft_equals_dense_attention_when_the_mask_keeps_everything(training):
    torch.manual_seed(0)
    block = TransformerBlock(16, 4).train(training)
    x = torch.randn(5, T, 16)
    full = sft_bias(torch.ones(1, 5, T, T, dtype=torch.bool))
    assert torch.allclose(sft_block(block, x, full), block(x), atol=1e-6)


def test_sft_ignores_masked_frames():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4).eval()
    mask = torch.ones(1, 1, T, T, dtype=torch.bool)
    mask[0, 0, 0, 4:] = mask[0, 0, 4:, 0] = False  # frame 0 may not attend to frames 4..8
    x = torch.randn(1, T, 16)
    y = x.clone()
    y[0, 6] += torch.randn(16)
    a, b = sft_block(block, x, sft_bias(mask)), sft_block(block, y, sft_bias(mask))
    assert torch.allclose(a[0, 0], b[0, 0], atol=1e-6) and not torch.allclose(a[0, 1], b[0, 1])


def test_mgptp_keeps_n_sorted_frames_deterministically():
    torch.manual_seed(0)
    h = torch.randn(3, 27, 17, 8)
    mask, _ = tcep_mask(torch.randn(3, 17, 27, 27), 9)
    mask = mask | mask.transpose(-1, -2)
    kept = mgptp_select(h, mask, 6, 3)
    assert kept.shape == (3, 6) and torch.all(kept[:, 1:] > kept[:, :-1])
    assert torch.equal(kept, mgptp_select(h, mask, 6, 3))
    same = mgptp_select(torch.zeros(1, 27, 17, 8), None, 4, 3)  # all frames equal: ties go to the lower index
    assert same.tolist() == [[0, 1, 2, 3]]
    # the mask moves pairs apart: a duplicate frame stops being a near neighbour once the mask cuts the pair
    f = torch.randn(1, 10, 8)
    f[0, 7] = f[0, 0]
    cut = torch.ones(1, 10, 10)
    cut[0, 0, 7] = cut[0, 7, 0] = 0
    dense, masked = mgptp_scores(f, torch.ones(1, 10, 10), 1), mgptp_scores(f, cut, 1)
    assert int(dense.argmax()) in (0, 7) and masked[0, 0] < dense[0, 0]


def test_mgptp_model_restores_all_frames_and_gathers_in_time():
    torch.manual_seed(0)
    model = HTPDenoiser(HTPConfig.small(27)).eval()
    y, t, x = torch.randn(2, 27, 17, 3), torch.tensor([10, 500]), torch.randn(2, 27, 17, 2)
    h, kept, _, _ = model.encode(y, t, x)
    assert h.shape == (2, 6, 17, 32) and kept.shape == (2, 6)
    assert model(y, t, x).shape == (2, 27, 17, 3)


def test_skip_restore_queries_carry_each_frames_own_tokens_and_own_base():
    torch.manual_seed(0)
    model = HTPDenoiser(HTPConfig.small(27, restore_query="skip")).eval()
    y, t, x = torch.randn(1, 27, 17, 3), torch.tensor([10]), torch.randn(1, 27, 17, 2)
    kept = model.kept_frames(y, t, x)[0]
    dropped = int(next(f for f in range(27) if f not in kept.tolist()))
    x2 = x.clone()
    x2[0, dropped] += 0.5  # only a dropped frame's 2D changes
    with torch.no_grad():
        a, b = model(y, t, x), model(y, t, x2)
    if torch.equal(model.kept_frames(y, t, x2)[0], kept):  # same selection: the change reaches that frame (skip)
        assert (a[0, dropped] - b[0, dropped]).abs().max() > 1e-6
    learned = HTPDenoiser(HTPConfig.small(27)).eval()
    assert learned.encode(y, t, x)[3] is None and model.encode(y, t, x)[3].shape == (1, 27, 17, 32)
    with pytest.raises(ValueError, match="restore_query"):
        HTPConfig.small(27, restore_query="x")
    with pytest.raises(ValueError, match="restore_base"):
        HTPConfig.small(27, restore_base="x")


def _lifter_cfg() -> dict:
    return {**LifterConfig(num_points=17, kind="mlp", dim=8, width=16, blocks=1).__dict__}


@pytest.mark.parametrize("mgptp", [False, True])
def test_residual_lifter_model_starts_at_the_single_frame_pose(mgptp):
    torch.manual_seed(0)
    cfg = HTPConfig.small(T, condition="lifter", lifter=_lifter_cfg(), mgptp=mgptp, mgptp_k=2, pose_scale=2.0)
    model = HTPDenoiser(cfg)
    model.load_lifter(build_lifter(LifterConfig(**_lifter_cfg())))
    y, t, x = _inputs()
    p1 = model.lifter_features(x)[..., -3:]
    p1 = p1 - p1[..., :1, :]
    out = model.diffusion.to_metres(model(y, t, x))
    if not mgptp:
        assert torch.allclose(out, p1, atol=1e-6)
    else:  # kept frames are their own p_1; the others interpolate between kept frames
        kept = model.kept_frames(y, t, x)
        for b in range(2):
            assert torch.allclose(out[b, kept[b]], p1[b, kept[b]], atol=1e-6)
    assert not any(p.requires_grad for p in model.lifter.parameters())


def test_ddim_one_step_is_one_denoiser_call_and_timesteps():
    assert ddim_timesteps(1000, 1) == [(999, -1)]
    assert ddim_timesteps(1000, 5) == [(999, 799), (799, 599), (599, 399), (399, 199), (199, -1)]
    torch.manual_seed(0)
    model = HTPDenoiser(HTPConfig.small(T, mgptp_k=2, pose_scale=1.5)).eval()
    _, _, x = _inputs()
    noise = torch.randn(3, 2, T, 17, 3)
    hyps = model.sample_hypotheses(x, steps=1, noise=noise)
    with torch.no_grad():
        direct = model(noise.reshape(6, T, 17, 3), torch.full((6,), 999), x.repeat(3, 1, 1, 1)) / 1.5
    assert hyps.shape == (3, 2, T, 17, 3) and torch.allclose(hyps, direct.view(3, 2, T, 17, 3), atol=1e-6)


def test_q_sample_and_ddim_step_recover_x0_from_a_perfect_denoiser():
    diff = GaussianDiffusion(1000, scale=2.0)
    ac = diff.alphas_cumprod
    assert torch.all(ac[1:] < ac[:-1]) and ac[0] > 0.99 and ac[-1] < 1e-3
    y0 = torch.randn(4, T, 17, 3) * 0.3
    noise = torch.randn_like(y0)
    t = torch.tensor([0, 10, 500, 999])
    y_t = diff.q_sample(y0, t, noise)
    a = ac[t].view(-1, 1, 1, 1)
    assert torch.allclose(y_t, a.sqrt() * 2.0 * y0 + (1 - a).sqrt() * noise)
    # DDIM with the true x0 lands exactly on the noise-consistent trajectory, and sample returns x0 in metres
    out = sample(lambda y, tt, x: 2.0 * y0[:1].expand_as(y), {"x": torch.zeros(1)}, diff, steps=4,
                 noise=torch.randn(2, 1, T, 17, 3))  # fmt: skip
    assert torch.allclose(out, y0[:1].expand(2, 1, -1, -1, -1), atol=1e-5)


def test_fixed_seed_sampling_is_reproducible():
    torch.manual_seed(0)
    model = HTPDenoiser(HTPConfig.small(T, mgptp_k=2)).eval()
    _, _, x = _inputs()
    with torch.no_grad():
        runs = [model.sample_hypotheses(x, 3, 3, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert torch.equal(runs[0], runs[1]) and not torch.allclose(runs[0], runs[2])


def _camera_scene(seed: int = 0):
    rng = np.random.default_rng(seed)
    pose = rng.normal(0, 0.3, (17, 3))
    pose -= pose[:1]
    root = np.array([0.3, -0.2, 4.5])
    k_px = np.array([1000.0, 990.0, 480.0, 520.0])
    px = k_px[:2] * (pose + root)[:, :2] / (pose + root)[:, 2:] + k_px[2:]
    return pose, root, k_px, px


def test_root_fit_equals_least_squares_and_is_exact_without_noise():
    pose, root, k_px, px = _camera_scene()
    np.testing.assert_allclose(root_translation_lsq(pose, px, np.ones(17), k_px), root, atol=1e-9)
    rng = np.random.default_rng(1)
    noisy, w = px + rng.normal(0, 5.0, px.shape), rng.uniform(0, 1, 17)
    du, dv = noisy[:, 0] - k_px[2], noisy[:, 1] - k_px[3]
    a = np.zeros((34, 3))
    a[:17, 0], a[:17, 2], a[17:, 1], a[17:, 2] = k_px[0], -du, k_px[1], -dv
    b = np.concatenate([du * pose[:, 2] - k_px[0] * pose[:, 0], dv * pose[:, 2] - k_px[1] * pose[:, 1]])
    sw = np.sqrt(np.concatenate([w, w]))
    ref = np.linalg.lstsq(a * sw[:, None], b * sw, rcond=None)[0]
    np.testing.assert_allclose(root_translation_lsq(pose, noisy, w, k_px), ref, rtol=1e-9)
    got = root_translation_lsq(torch.tensor(pose), torch.tensor(noisy), torch.tensor(w), torch.tensor(k_px))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9)


def test_jpma_picks_per_joint_the_hypothesis_that_reprojects_closest():
    pose, root, k_px, px = _camera_scene()
    w = h = 1000
    x2d = torch.tensor(normalize_screen_coordinates(px, w, h), dtype=torch.float64)[None, None]  # [1, 1, 17, 2]
    intr = normalised_intrinsics(torch.tensor(k_px)[None], w, h)
    assert torch.allclose(project(torch.tensor(pose + root)[None], intr), x2d[0], atol=1e-9)
    truth = torch.tensor(pose)
    a, b, c = truth.clone(), truth.clone(), truth.clone()
    a[[3, 6]] += torch.tensor([0.25, -0.2, 0.0], dtype=torch.float64)  # A is wrong at the ankles ...
    b[[13, 16]] += torch.tensor([0.0, 0.3, 0.1], dtype=torch.float64)  # ... B at the wrists ...
    c[[3, 6, 13, 16]] += torch.tensor([-0.2, 0.2, 0.0], dtype=torch.float64)  # ... C at both
    hyps = torch.stack([a, b, c])[:, None, None]  # [H=3, B=1, T=1, 17, 3]
    out = jpma(hyps, x2d, intr)[0, 0]
    assert torch.allclose(out, truth)  # every joint taken from a hypothesis that has it right
    assert not torch.allclose(hyps.mean(0)[0, 0], truth)
    visible = torch.ones(1, 1, 17, dtype=torch.bool)
    visible[0, 0, 3] = False  # a masked joint falls back to the hypothesis mean
    out = jpma(hyps, x2d, intr, visible)[0, 0]
    assert torch.allclose(out[3], hyps[:, 0, 0, 3].mean(0)) and torch.allclose(out[6], truth[6])


def test_cost_counts_pruning_savings_and_hypotheses_times_steps():
    base = htp_cost(HTPConfig.small(27, tcep=False, sft=False, mgptp=False), 5, 5)
    full = htp_cost(HTPConfig.small(27), 5, 5)
    assert full["train_gmacs_per_frame"] < base["train_gmacs_per_frame"] and full["params"] > base["params"]
    assert np.isclose(full["infer_gmacs_per_frame"], 25 * full["train_gmacs_per_frame"])
