"""Temporal lifter: H2OT pruning strategies, recovery, shapes, gradients, bad inputs, checkpoints, complexity."""

from __future__ import annotations

import pytest
import torch

from hipart.checkpoint import CheckpointError, load_checkpoint, model_hash, save_checkpoint
from hipart.models.complexity import count_flops, count_params
from hipart.models.temporal import TemporalConfig, TemporalLifter, default_schedule
from hipart.models.token_pruning import density_peaks_scores, motion_scores, top_r_sorted, uniform_indices
from hipart.models.token_recovery import interpolate_frames, interpolation_table


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def tiny(**kw) -> TemporalConfig:
    base = dict(frames=9, dim=16, blocks=3, heads=2, prune="tps", recover="tri", schedule_r=(5, 3),
                schedule_b=(0, 1))  # fmt: skip
    base.update(kw)
    return TemporalConfig(**base)


def window(b: int = 2, t: int = 9, n: int = 161, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, n, 2, generator=g) * 0.3


def test_tps_indices_are_exact_and_static():
    assert uniform_indices(9, 5).tolist() == [0, 2, 4, 6, 8]
    assert uniform_indices(9, 4).tolist() == [0, 3, 5, 8]
    assert uniform_indices(243, 122).tolist() == list(range(0, 243, 2))
    assert uniform_indices(7, 1).tolist() == [3]
    m = TemporalLifter(tiny()).eval()
    # [9] -> 5 kept [0,2,4,6,8] -> 3 of those [0,2,4] -> frames 0, 4, 8; the same for every input
    assert m.tps_kept.tolist() == [0, 4, 8]
    assert m.kept_frames(window()).tolist() == [[0, 4, 8], [0, 4, 8]]
    with pytest.raises(ValueError, match="1 <= r <= n"):
        uniform_indices(4, 5)


@pytest.mark.parametrize("prune", ["tpc", "tpa", "tpmo", "tps"])
def test_each_strategy_keeps_the_scheduled_count_in_temporal_order(prune):
    m = TemporalLifter(tiny(prune=prune, recover="tra")).eval()
    kept = m.kept_frames(window(3))
    assert kept.shape == (3, 3)
    assert bool((kept[:, 1:] > kept[:, :-1]).all()) and int(kept.min()) >= 0 and int(kept.max()) < 9
    out = m(window(3))
    assert out.shape == (3, 9, 17, 3) and torch.isfinite(out).all()
    torch.testing.assert_close(out[..., 0, :], torch.zeros(3, 9, 3))  # root-relative


def test_tpmo_keeps_the_highest_motion_frames():
    x = torch.zeros(1, 9, 17, 2)
    # still, except jumps arriving at frames 3 (large), 6 (medium) and 7 (small)
    x[:, 3:] += 1.0
    x[:, 6:] += 0.5
    x[:, 7:] += 0.2
    scores = motion_scores(x)
    assert top_r_sorted(scores, 3).tolist() == [[3, 6, 7]]
    assert top_r_sorted(scores, 2).tolist() == [[3, 6]]
    cfg = tiny(num_points=17, reduction="none", prune="tpmo", recover="tra", schedule_r=(3,), schedule_b=(0,))
    assert TemporalLifter(cfg).eval().kept_frames(x).tolist() == [[3, 6, 7]]


def test_tpc_picks_one_centre_per_cluster():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 0, 1])  # clusters interleaved in time
    feats = (centres[labels] + 0.05 * torch.randn(12, 3, generator=g))[None]
    idx = top_r_sorted(density_peaks_scores(feats, k=2), 3)[0]
    assert sorted(labels[idx].tolist()) == [0, 1, 2]
    assert idx.tolist() == sorted(idx.tolist())


def test_tri_reproduces_linear_motion_exactly():
    kept = torch.tensor([0, 3, 5, 8])
    left, right, w = interpolation_table(kept, torch.arange(9))
    t = torch.arange(9, dtype=torch.float32)
    motion = torch.stack([0.1 * t - 0.3, -0.05 * t, 0.02 * t + 1.0], -1)[None, :, None, :].expand(2, 9, 17, 3)
    out = interpolate_frames(motion[:, kept], left, right, w)
    torch.testing.assert_close(out, motion, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="strictly increasing"):
        interpolation_table(torch.tensor([0, 5, 3]), torch.arange(9))


def test_tri_model_interpolates_its_kept_frames():
    m = TemporalLifter(tiny()).eval()
    x = window(1)
    seq = m.forward_sequence(x)  # kept frames 0, 4, 8: the others lie on straight lines between them
    torch.testing.assert_close(seq[:, 2], 0.5 * (seq[:, 0] + seq[:, 4]))
    torch.testing.assert_close(seq[:, 7], 0.25 * seq[:, 4] + 0.75 * seq[:, 8])
    for f in (0, 2, 8):
        torch.testing.assert_close(m.forward_frame(x, f), seq[:, f])


def test_tri_needs_tps():
    with pytest.raises(ValueError, match="TRI interpolates over time"):
        tiny(prune="tpc", recover="tri")


def test_tra_shapes_and_gradients():
    m = TemporalLifter(tiny(prune="tpc", recover="tra"))
    x = window(2)
    out = m(x)
    assert out.shape == (2, 9, 17, 3)
    out.square().mean().backward()
    for name, p in m.recovery.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert m.recovery.queries.shape == (9, 16)
    frame = TemporalLifter(tiny(prune="tps", recover="tra", pipeline="seq2frame", output_frame="last")).eval()
    assert frame(x).shape == (2, 17, 3)
    torch.testing.assert_close(frame(x), frame.forward_sequence(x)[:, -1])


@pytest.mark.parametrize("reduction", ["none", "linear", "sparse"])
def test_spatial_reduction_and_sparse_input(reduction):
    m = TemporalLifter(tiny(reduction=reduction, prune="none")).eval()
    assert m(window(1)).shape == (1, 9, 17, 3)
    s = TemporalLifter(tiny(num_points=17, reduction="none")).eval()
    assert s(window(1, n=17)).shape == (1, 9, 17, 3)
    with pytest.raises(ValueError, match="reduction"):
        tiny(num_points=17, reduction="linear")


def test_reduction_cuts_flops():
    x = window(1)
    flops = {r: count_flops(TemporalLifter(tiny(reduction=r, prune="none")).eval(), x) for r in ("none", "linear")}
    assert flops["linear"] < 0.6 * flops["none"]
    pruned = count_flops(TemporalLifter(tiny(reduction="linear")).eval(), x)
    assert pruned < flops["linear"]
    assert count_params(TemporalLifter(tiny())) == count_params(TemporalLifter(tiny(prune="none")))  # TPS+TRI: free


def test_frame_tokens_cache_gives_the_same_output():
    m = TemporalLifter(tiny(prune="tpa", recover="tra")).eval()
    x = window(2)
    tokens = torch.cat([m.frame_tokens(x[:, i : i + 1]) for i in range(9)], 1)  # one frame at a time
    torch.testing.assert_close(m.forward_frame(x, 8, tokens=tokens), m.forward_frame(x, 8), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "bad, msg",
    [
        (torch.zeros(2, 9, 160, 2), r"shape \[B, 9, 161, 2\]"),
        (torch.zeros(2, 8, 161, 2), "8 frames but the model was built for T = 9"),
        (torch.zeros(9, 161, 2), r"shape \[B, 9, 161, 2\]"),
        (torch.zeros(2, 9, 161, 2, dtype=torch.int64), "floating-point"),
        (torch.zeros(0, 9, 161, 2), "empty batch"),
        ([[0.0]], "must be a torch.Tensor"),
    ],
)
def test_bad_inputs_raise_clear_value_errors(bad, msg):
    m = TemporalLifter(tiny()).eval()
    with pytest.raises(ValueError, match=msg):
        m(bad)


def test_nan_input_and_bad_frame_and_bad_schedule():
    m = TemporalLifter(tiny()).eval()
    x = window(2)
    x[1, 4, 7, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf values \(batch rows \[1\]\)"):
        m(x)
    with pytest.raises(ValueError, match="outside the window"):
        m.forward_frame(window(1), 9)
    with pytest.raises(ValueError, match="decrease strictly"):
        tiny(schedule_r=(5, 5))
    with pytest.raises(ValueError, match="equal, non-zero length"):
        tiny(schedule_r=(5,), schedule_b=(0, 1))
    with pytest.raises(ValueError, match="increase strictly"):
        tiny(schedule_b=(1, 3))
    with pytest.raises(ValueError, match="prune must be one of"):
        tiny(prune="random")


def test_presets_and_default_schedule():
    assert default_schedule(243, 8) == ((122, 81), (0, 3))
    assert default_schedule(27, 4) == ((14, 9), (0, 1))
    e = TemporalConfig.edge(81)
    assert (e.dim, e.blocks, e.frames, e.schedule_r, e.prune, e.recover) == (128, 8, 81, (41, 27), "tps", "tri")
    s = TemporalConfig.small(27, num_points=17, prune="none")
    assert s.reduction == "none" and s.schedule_r == () and s.dim == 32
    assert TemporalConfig.from_dict(e.to_dict()) == e
    with pytest.raises(ValueError, match="unknown TemporalConfig fields"):
        TemporalConfig.from_dict({"frames": 9, "bogus": 1})


def test_checkpoint_round_trip_of_the_temporal_kind(tmp_path):
    m = TemporalLifter(tiny(prune="tpc", recover="tra")).eval()
    p = save_checkpoint(tmp_path / "t.pt", m, data_version="sha256:abc", extra={"step": 3})
    back, meta = load_checkpoint(p, expect_kind="temporal")
    assert meta["kind"] == "temporal" and meta["config"] == m.config.to_dict()
    assert back.config == m.config and model_hash(back) == model_hash(m)
    x = window(1)
    assert torch.equal(back(x), m(x))
    with pytest.raises(CheckpointError, match="holds a 'temporal' checkpoint, expected 'hipart'"):
        load_checkpoint(p)
