"""Temporal lifter on the frozen single-frame HiPART lifter (reduction='lifter'): identity at start, caches,
frozen weights, feature cache, CLI and ONNX parity."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from export.temporal_onnx import check_temporal_parity, export_temporal
from hipart.checkpoint import load_checkpoint, save_checkpoint
from hipart.cli.temporal import main
from hipart.data.sequences import PoseWindows
from hipart.models.config import LifterConfig
from hipart.models.lifter import Lifter
from hipart.models.temporal import TemporalConfig, TemporalLifter
from hipart.training.loop import LoopConfig
from hipart.training.temporal import TemporalRecipe, attach_lifter_features, train_temporal


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def single_frame(seed: int = 0) -> Lifter:
    torch.manual_seed(seed)
    lf = Lifter(LifterConfig(dim=16, blocks=2, heads=2)).eval()
    with torch.no_grad():
        lf.head.weight.normal_(0, 0.5)  # a lifter with a non-trivial output
    return lf


def stage_model(lifter: Lifter, **kw) -> TemporalLifter:
    base = dict(frames=9, dim=16, blocks=3, heads=2, prune="tps", recover="tri", schedule_r=(5, 3), schedule_b=(0, 1),
                reduction="lifter", lifter=asdict(lifter.config))  # fmt: skip
    base.update(kw)
    torch.manual_seed(1)
    return TemporalLifter(TemporalConfig(**base)).load_lifter(lifter).eval()


def window(b: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 9, 161, 2, generator=g) * 0.3


def reference(lifter: Lifter, x: torch.Tensor) -> torch.Tensor:
    """The single-frame lifter on every frame, made root-relative (independent of the temporal code)."""
    with torch.no_grad():
        p = torch.stack([lifter(x[:, t]) for t in range(x.shape[1])], 1)
    return p - p[..., :1, :]


def interpolated(ref: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """np.interp of every coordinate over time from the kept frames (ends held): an independent TRI reference."""
    r, out = ref.numpy(), np.empty(tuple(ref.shape), np.float32)
    t = np.arange(ref.shape[1])
    for b, k in enumerate(kept.numpy()):
        for j in range(ref.shape[2]):
            for c in range(3):
                out[b, :, j, c] = np.interp(t, k, r[b, k, j, c])
    return torch.from_numpy(out)


@pytest.mark.parametrize("kw", [dict(prune="none", schedule_r=(), schedule_b=()), dict(), dict(recover="tra"),
                                dict(prune="tpa", recover="tra"), dict(prune="tpmo", recover="tra"),
                                dict(pipeline="seq2frame", output_frame="last"),
                                dict(pipeline="seq2frame", output_frame="centre", recover="tra", prune="tpc")])
def test_untrained_model_is_the_single_frame_lifter(kw):
    lf = single_frame()
    m = stage_model(lf, **kw)
    x = window()
    ref = reference(lf, x)
    with torch.no_grad():
        out = m(x)
    if m.config.prune != "none":  # pruned: the kept frames' (here: single-frame) poses, interpolated over time
        ref = interpolated(ref, m.kept_frames(x))
    want = ref if m.config.pipeline == "seq2seq" else ref[:, m.config.output_index]
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    assert out.abs().max() > 0.05  # a real pose, not zeros


def test_features_and_streaming_tokens_give_the_same_output():
    lf = single_frame()
    m = stage_model(lf)
    with torch.no_grad():  # a trained-like, non-zero correction
        m.head[1].weight.normal_(0, 0.3)
    x = window()
    with torch.no_grad():
        full = m.forward_sequence(x)
        feats = m.lifter_features(x)
        assert feats.shape == (2, 9, 17, 16 + 3)
        torch.testing.assert_close(feats[..., 16:], torch.stack([lf(x[:, t]) for t in range(9)], 1))
        torch.testing.assert_close(m.forward_sequence(x, features=feats), full)
        tokens = torch.cat([m.frame_tokens(x[:, i : i + 1]) for i in range(9)], 1)  # one frame at a time
        torch.testing.assert_close(m.forward_frame(x, 8, tokens=tokens), full[:, 8], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(full, reference(lf, x), atol=1e-3)  # the correction now matters


def test_training_leaves_the_single_frame_lifter_untouched_and_caches_features(data, tmp_path):
    lf = single_frame()
    m = stage_model(lf, frames=5, schedule_r=(3,), schedule_b=(0,))
    ds = PoseWindows(data, "train", 5, stride=2, input_2d="gt")
    attach_lifter_features(m, ds, tmp_path / "feat")
    files = list((tmp_path / "feat").glob("lifter_features_*.npy"))
    assert len(files) == 1 and ds.features.shape == (len(ds.rows), 17, 19)
    with torch.no_grad():  # the table is the lifter on each frame
        torch.testing.assert_close(torch.from_numpy(ds.features[:4, :, 16:]),
                                   lf(torch.from_numpy(ds.frame_inputs(np.arange(4)))))  # fmt: skip
    before = {k: v.clone() for k, v in m.state_dict().items()}
    train_temporal(m, ds, TemporalRecipe(lr=1e-2, batch_size=4, epochs=1), LoopConfig(progress=False), tmp_path)
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("lifter."))
    assert not torch.equal(before["head.1.weight"], after["head.1.weight"])
    m.train()
    assert m.training and not m.lifter.training  # no dropout in the frozen stage
    # a second attach reads the cache; other lifter weights -> another key
    ds2 = PoseWindows(data, "train", 5, stride=2, input_2d="gt")
    attach_lifter_features(m, ds2, tmp_path / "feat")
    np.testing.assert_array_equal(ds2.features, ds.features)
    attach_lifter_features(stage_model(single_frame(seed=3), frames=5, schedule_r=(3,), schedule_b=(0,)),
                           ds2, tmp_path / "feat")  # fmt: skip
    assert len(list((tmp_path / "feat").glob("lifter_features_*.npy"))) == 2


def test_config_checks():
    lf = single_frame()
    with pytest.raises(ValueError, match="only to reduction='lifter'"):
        TemporalConfig(frames=9, dim=16, blocks=3, heads=2, prune="none", lifter=asdict(lf.config))
    with pytest.raises(ValueError, match="reduce_after must be 0"):
        TemporalConfig(frames=9, dim=16, blocks=3, heads=2, prune="none", reduction="lifter", reduce_after=1)
    with pytest.raises(ValueError, match="takes 17 points"):
        TemporalConfig(frames=9, dim=16, blocks=3, heads=2, prune="none", reduction="lifter",
                       lifter=asdict(LifterConfig(num_points=17)))  # fmt: skip
    with pytest.raises(ValueError, match="no single-frame lifter stage"):
        TemporalLifter(TemporalConfig(frames=9, dim=16, blocks=3, heads=2, prune="none")).load_lifter(lf)


def test_checkpoint_keeps_the_lifter_and_onnx_matches(tmp_path):
    lf = single_frame()
    m = stage_model(lf, pipeline="seq2frame", output_frame="last")
    with torch.no_grad():
        m.head[1].weight.normal_(0, 0.3)
    path = save_checkpoint(tmp_path / "temporal.pt", m)
    back, _ = load_checkpoint(path, expect_kind="temporal")
    x = window()
    with torch.no_grad():
        torch.testing.assert_close(back(x), m(x))
    onnx_path = export_temporal(back, tmp_path / "temporal_lift.onnx")
    assert check_temporal_parity(onnx_path, back).max_abs_err["pose3d"] < 1e-5


def test_cli_train_and_eval_on_the_bundled_style_hipart(data, tmp_path, tiny_model, capsys):
    hip = save_checkpoint(tmp_path / "hipart.pt", tiny_model)
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--frames", "5", "--batch-size", "4", "--input-2d", "gt",
            "--lifter-from", str(hip), "--feature-cache", str(tmp_path / "feat"), "--max-steps", "2", "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    assert "frozen single-frame lifter" in capsys.readouterr().out
    model, _ = load_checkpoint(out / "temporal.pt", expect_kind="temporal")
    assert model.config.reduction == "lifter" and model.config.lifter["dim"] == tiny_model.lifter.config.dim
    for k, v in tiny_model.lifter.state_dict().items():
        torch.testing.assert_close(model.lifter.state_dict()[k], v)
    ev = ["eval", "--checkpoint", str(out / "temporal.pt"), "--data", str(data), "--input-2d", "gt", "--no-progress",
          "--feature-cache", str(tmp_path / "feat"), "--json", str(tmp_path / "e.json"), "--single-frame", str(hip)]
    assert main(ev) == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "e.json").read_text())
    # two steps from a zero correction: still close to the single-frame lifter on the same frames (PA-MPJPE: the
    # untrained tiny lifter's pelvis is far from 0, and the temporal output is root-relative by construction)
    temporal, single = rep["metrics"], rep["single_frame"]
    assert temporal["n"] == single["n"]
    assert abs(temporal["pa_mpjpe_mm"] - single["pa_mpjpe_mm"]) < 0.2 * single["pa_mpjpe_mm"]
    bad = save_checkpoint(tmp_path / "lifter_only.pt", tiny_model.lifter)
    assert main(args[:-7] + ["--lifter-from", str(bad), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "hipart" in err and "Traceback" not in err


def test_hipart_run_stage_streams_the_lifter_backed_model():
    from edge.temporal import TemporalStage

    lf = single_frame()
    m = stage_model(lf, pipeline="seq2frame", output_frame="last")
    with torch.no_grad():
        m.head[1].weight.normal_(0, 0.3)
    stage = TemporalStage(m, "causal")
    xs = window(b=1, seed=4)[0].numpy()  # [9, 161, 2], one person
    for k in range(9):
        got = stage.step(xs[k][None], k / 30)
    with torch.no_grad():
        want = m.forward_frame(torch.from_numpy(xs)[None], 8).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_interpolate_kept_matches_the_static_table_and_exports():
    from hipart.models.token_recovery import interpolate_frames, interpolate_kept, interpolation_table

    values = torch.randn(2, 4, 17, 3)
    kept = torch.tensor([[0, 3, 5, 8], [1, 2, 6, 7]])
    got = interpolate_kept(values, kept, torch.arange(9))
    for b in range(2):
        table = interpolation_table(kept[b], torch.arange(9))
        torch.testing.assert_close(got[b : b + 1], interpolate_frames(values[b : b + 1], *table))
    torch.testing.assert_close(got[1, 0], values[1, 0])  # before the first kept frame: held


@pytest.mark.parametrize("prune", ["tpmo", "tpa"])
def test_dynamic_lifter_models_export_with_opt_in(tmp_path, prune):
    m = stage_model(single_frame(), prune=prune, recover="tra")
    with torch.no_grad():
        m.head[1].weight.normal_(0, 0.3)
    path = export_temporal(m, tmp_path / "temporal_lift.onnx", allow_dynamic=True)
    assert check_temporal_parity(path, m).max_abs_err["pose3d"] < 1e-4


def test_pruning_the_input_frames_runs_the_lifter_on_the_kept_frames_only(tmp_path):
    from hipart.models.complexity import count_flops

    lf = single_frame()
    m = stage_model(lf, schedule_r=(5, 3), schedule_b=(-1, 1))
    with torch.no_grad():
        m.head[1].weight.normal_(0, 0.3)
    x = window()
    assert m.tps_kept.tolist() == [0, 4, 8] and m.kept_frames(x).tolist() == [[0, 4, 8]] * 2
    with torch.no_grad():
        full = m.forward_sequence(x)
        # only frames 0, 2, 4, 6, 8 matter: the others may be anything
        y = x.clone()
        y[:, 1::2] = 7.0
        torch.testing.assert_close(m.forward_sequence(y), full)
        tokens = torch.cat([m.frame_tokens(x[:, i : i + 1]) for i in range(9)], 1)  # streaming: all frames cached
        torch.testing.assert_close(m.forward_frame(x, 8, tokens=tokens), full[:, 8], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(m.forward_sequence(x, features=m.lifter_features(x)), full)
    assert count_flops(m.forward_sequence, x[:1]) < 0.6 * count_flops(stage_model(lf).forward_sequence, x[:1])
    path = export_temporal(m, tmp_path / "temporal_lift.onnx")  # static: Gather with constant indices
    assert check_temporal_parity(path, m).max_abs_err["pose3d"] < 1e-5
    with pytest.raises(ValueError, match="schedule_b = -1"):
        TemporalConfig(frames=9, dim=16, blocks=3, heads=2, prune="tps", schedule_r=(5,), schedule_b=(-1,))


def test_hipart_run_temporal_default_is_the_bundled_causal_model(tmp_path, capsys, monkeypatch):
    import edge.temporal
    from edge import cli_run
    from hipart.checkpoint import CheckpointError, bundled_temporal_checkpoint

    if bundled_temporal_checkpoint() is None:
        pytest.skip("this build bundles no temporal model")
    m = edge.temporal.load_temporal("default")
    cfg = m.config
    assert (cfg.reduction, cfg.pipeline, cfg.output_frame, cfg.frames) == ("lifter", "seq2frame", "last", 27)
    out = tmp_path / "p.jsonl"
    assert cli_run.main(["--max-frames", "4", "--poses", str(out), "--temporal", "default", "--quiet"]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in recs] == [0, 1, 2, 3]
    assert all(r["temporal"].startswith("temporal causal T=27") for r in recs if r["persons"])
    monkeypatch.setattr(edge.temporal, "bundled_temporal_checkpoint", lambda: None)  # as if none were bundled
    with pytest.raises(CheckpointError, match="bundles no temporal model"):
        edge.temporal.load_temporal("default")
    assert cli_run.main(["--temporal", "default", "--max-frames", "1", "--quiet"]) == 2
    assert "cannot load the temporal model" in capsys.readouterr().err
