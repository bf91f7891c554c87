"""hipart-run's temporal stage: ring buffer == offline model calls, warm-up, resets, seq2seq chunks, CLI wiring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edge import cli_run
from edge.backends.base import Result
from edge.pipeline import Item
from edge.sources import Frame
from edge.temporal import TemporalStage
from hipart.checkpoint import save_checkpoint
from hipart.models.temporal import TemporalConfig, TemporalLifter

T = 5


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def model(**kw) -> TemporalLifter:
    torch.manual_seed(0)
    base = dict(frames=T, dim=16, blocks=2, heads=2, prune="tpa", recover="tra", schedule_r=(3,), schedule_b=(0,))
    return TemporalLifter(TemporalConfig(**{**base, **kw})).eval()


def frames(n: int, persons: int = 1, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    base = g.normal(0, 0.3, (persons, 161, 2))
    return np.stack([base + 0.02 * k + g.normal(0, 0.01, base.shape) for k in range(n)]).astype(np.float32)


def offline(m: TemporalLifter, xs: np.ndarray, k: int, out: int) -> np.ndarray:
    """The model on the window ending at frame k, frames before 0 replaced by frame 0."""
    idx = np.clip(np.arange(k - T + 1, k + 1), 0, None)
    window = torch.from_numpy(np.ascontiguousarray(xs[idx].transpose(1, 0, 2, 3)))
    with torch.no_grad():
        return m.forward_frame(window, out).numpy()


@pytest.mark.parametrize("mode, out", [("causal", T - 1), ("centred", T // 2)])
def test_streaming_equals_the_offline_window(mode, out):
    m = model()
    stage = TemporalStage(m, mode)
    xs = frames(11, persons=2)
    for k in range(11):  # the first T - 1 frames are the warm-up: the window is padded with frame 0
        got = stage.step(xs[k], k / 30)
        np.testing.assert_allclose(got, offline(m, xs, k, out), rtol=1e-5, atol=1e-5)
    assert stage.lag_frames == (0 if mode == "causal" else T - 1 - T // 2)


def test_tps_tri_causal_streaming_matches_seq2frame_last():
    m = model(prune="tps", recover="tri", pipeline="seq2frame", output_frame="last")
    stage = TemporalStage(m, "causal")
    xs = frames(8)
    for k in range(8):
        got = stage.step(xs[k], k / 30)
    window = torch.from_numpy(np.ascontiguousarray(xs[3:8].transpose(1, 0, 2, 3)))
    np.testing.assert_allclose(got, m(window).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_discontinuities_restart_the_warm_up():
    m = model()
    stage = TemporalStage(m, "causal", max_gap_s=0.2)
    xs = frames(6)
    for k in range(4):
        stage.step(xs[k], k / 30)
    got = stage.step(xs[4], 5.0)  # a jump in time: the window is frame 4 replicated
    np.testing.assert_allclose(got, offline(m, xs[4:], 0, T - 1), rtol=1e-5, atol=1e-5)
    assert stage.resets == 1
    stage.step(frames(1, persons=2)[0], 5.03)  # person count changed
    stage.step(xs[5], 5.0)  # time went backwards (looped file)
    assert stage.resets == 3


def _item(k: int, x: np.ndarray | None) -> Item:
    """A pipeline item whose keypoints (640x480 px) and HiPART result carry frame x [P, 161, 2]."""
    it = Item(Frame(k, k / 30, None, 640, 480), 0.0)
    if x is not None:
        p = x.shape[0]
        it.kpts = ((x[:, :17] + [1.0, 480 / 640]) * 640 / 2).astype(np.float32)  # inverse of the normalisation
        it.conf = np.ones((p, 17), np.float32)
        it.result = Result(x[:, 17:65].copy(), x[:, 65:].copy(), np.zeros((p, 17, 3), np.float32),
                           np.zeros((p, 64), np.int64))  # fmt: skip
    return it


def test_seq2seq_holds_chunks_of_t_frames_in_order():
    m = model(prune="tps", recover="tri", schedule_r=(3,), schedule_b=(0,))
    stage = TemporalStage(m, "seq2seq")
    xs = frames(7)
    items = [_item(k, xs[k]) for k in range(7)]
    np.testing.assert_allclose(stage.frame_input(items[0].kpts, items[0].conf, items[0].result.dense,
                                                 items[0].result.fine, 640, 480), xs[0], atol=1e-5)  # fmt: skip
    assert stage.process(items[:4]) == []
    released = stage.process(items[4:])
    assert [it.frame.index for it in released] == [0, 1, 2, 3, 4]
    released += stage.flush()
    assert [it.frame.index for it in released] == list(range(7))
    with torch.no_grad():
        ref = m.forward_sequence(torch.from_numpy(xs[:5].transpose(1, 0, 2, 3).copy())).numpy()
        tail = m.forward_sequence(torch.from_numpy(xs[[5, 6, 6, 6, 6]].transpose(1, 0, 2, 3).copy())).numpy()
    np.testing.assert_allclose(np.stack([it.result.pose3d for it in items[:5]], 1), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.stack([it.result.pose3d for it in items[5:]], 1), tail[:, :2], rtol=1e-4,
                               atol=1e-4)  # fmt: skip
    assert all(it.temporal == "temporal seq2seq T=5" for it in released)


def test_seq2seq_breaks_the_chunk_at_a_frame_without_persons():
    m = model()
    stage = TemporalStage(m, "seq2seq")
    xs = frames(3)
    items = [_item(0, xs[0]), _item(1, xs[1]), _item(2, None), _item(3, xs[2])]
    out = stage.process(items) + stage.flush()
    assert [it.frame.index for it in out] == [0, 1, 2, 3]
    assert [it.temporal is not None for it in out] == [True, True, False, True]


def test_hipart_run_with_a_temporal_checkpoint(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "temporal.pt", model())
    out = tmp_path / "p.jsonl"
    for mode in ("causal", "centred", "seq2seq"):
        rc = cli_run.main(["--config", "tiny", "--max-frames", "7", "--poses", str(out), "--temporal", str(ckpt),
                           "--temporal-mode", mode, "--quiet"] + (["--save", str(tmp_path / "o.mp4")]
                                                                  if mode == "centred" else []))  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 0, err
        recs = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["frame"] for r in recs] == list(range(7))
        assert all(r["temporal"].startswith(f"temporal {mode}") for r in recs if r["persons"])
        assert np.asarray(recs[0]["persons"][0]["pose_3d"]).shape == (17, 3)
        if mode == "centred":
            assert "3D lags 2 frames" in recs[0]["temporal"]


def test_hipart_run_refuses_bad_temporal_setups(tmp_path, capsys, tiny_model):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    assert cli_run.main(["--config", "tiny", "--temporal", str(bad)]) == 2
    assert "cannot load the temporal model" in capsys.readouterr().err
    hip = save_checkpoint(tmp_path / "hipart.pt", tiny_model)
    assert cli_run.main(["--config", "tiny", "--temporal", str(hip)]) == 2
    assert "holds a 'hipart' checkpoint, expected 'temporal'" in capsys.readouterr().err
    ok = save_checkpoint(tmp_path / "t.pt", model())
    assert cli_run.main(["--config", "tiny", "--temporal", str(ok), "--smooth"]) == 2
    assert "choose one" in capsys.readouterr().err
    with pytest.raises(ValueError, match="temporal mode"):
        TemporalStage(model(), "future")
