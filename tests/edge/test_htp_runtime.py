"""hipart-run's HTP stage: the ring buffer's windows == HTPDenoiser.lift, seeded noise, per-track buffers, JPMA inputs
from the pipeline item, the onnxruntime engine, and `hipart-run --temporal HTP.pt` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edge import cli_run
from edge.backends.base import Result
from edge.camera_space import Intrinsics
from edge.htp_stage import HTPStage, build_htp_stage
from edge.pipeline import Item
from edge.sources import Frame
from hipart.checkpoint import save_checkpoint
from hipart.models.diffusion import normalised_intrinsics
from hipart.models.htp import HTPConfig, HTPDenoiser

T, H, K = 9, 2, 2
DEFAULT_CAMERA = torch.tensor([[2.0, 2.0, 0.0, 0.0]])  # focal = image width, principal point at the centre


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def model(**kw) -> HTPDenoiser:
    torch.manual_seed(0)
    m = HTPDenoiser(HTPConfig.small(T, mgptp_k=2, **kw)).eval()
    with torch.no_grad():  # an untrained head outputs zeros: give it weights so the test sees the windows
        m.head[1].weight.normal_(0, 0.3)
    return m


def frames(n: int, persons: int = 1, seed: int = 0) -> np.ndarray:
    """[n, P, 17, 2]: drifting, jittered 2D poses (no two frames equal)."""
    g = np.random.default_rng(seed)
    base = g.normal(0, 0.3, (persons, 17, 2))
    return np.stack([base + 0.02 * k + g.normal(0, 0.01, base.shape) for k in range(n)]).astype(np.float32)


def lift_window(m: HTPDenoiser, stage: HTPStage, xs: np.ndarray, k: int, camera: torch.Tensor = DEFAULT_CAMERA,
                visible: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """`lift` on the window ending at frame k (frames before 0 replaced by frame 0, the warm-up), the stage's noise."""
    idx = np.clip(np.arange(k - T + 1, k + 1), 0, None)
    x = torch.from_numpy(np.ascontiguousarray(xs[idx].transpose(1, 0, 2, 3)))
    vis = torch.ones(x.shape[0], T, 17, dtype=torch.bool)
    if visible is not None:
        vis = torch.from_numpy(np.ascontiguousarray(visible[idx].swapaxes(0, 1)))
    noise = torch.from_numpy(stage.noise).transpose(0, 1).expand(-1, x.shape[0], -1, -1, -1)
    with torch.no_grad():
        return m.lift(x, noise, stage.steps, intrinsics=camera.expand(x.shape[0], -1), visible=vis)[:, -1].numpy()


def test_causal_stream_equals_lift_on_each_window():
    """Warm-up (the first frame repeated) and the rolling buffer of two persons, against `lift` with the same noise."""
    m = model()
    stage = HTPStage(m, "causal", hypotheses=H, steps=K, seed=3)
    xs = frames(T + 4, persons=2)
    for k in range(len(xs)):
        np.testing.assert_allclose(stage.step(xs[k], k / 30), lift_window(m, stage, xs, k), rtol=1e-5, atol=1e-5)
    assert "HTP H=2 K=2 on torch" in stage.label and "default camera" in stage.label


def test_a_seeded_stream_is_reproducible_and_tracks_are_independent():
    m = model()
    a, b = frames(12, seed=1)[:, 0], frames(12, seed=2)[:, 0]
    both, alone_a, alone_b = (HTPStage(m, hypotheses=H, steps=K, seed=5) for _ in range(3))
    for f in range(12):  # b joins at frame 4 (its own warm-up) and the persons swap places every other frame
        t = f / 30
        if f < 4:
            np.testing.assert_allclose(both.step(a[f][None], t, [5])[0], alone_a.step(a[f][None], t)[0], atol=1e-5)
            continue
        swap = f % 2 == 0
        x, ids = (np.stack([b[f], a[f]]), [8, 5]) if swap else (np.stack([a[f], b[f]]), [5, 8])
        got = both.step(x, t, ids)
        ga, gb = (got[1], got[0]) if swap else (got[0], got[1])
        np.testing.assert_allclose(ga, alone_a.step(a[f][None], t)[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(gb, alone_b.step(b[f][None], t)[0], rtol=1e-5, atol=1e-5)
    both.drop_tracks([8])  # an ended track's buffer goes; seen again, it warms up afresh
    assert sorted(both._tracks) == [5]
    np.testing.assert_allclose(both.step(b[11][None], 12 / 30, [8])[0], lift_window(m, both, b[11:, None], 0)[0],
                               atol=1e-5)  # fmt: skip
    again = HTPStage(m, hypotheses=H, steps=K, seed=5)
    np.testing.assert_array_equal(again.noise, alone_a.noise)
    other = HTPStage(m, hypotheses=H, steps=K, seed=6)
    assert not np.allclose(other.step(a[0][None], 0.0), again.step(a[0][None], 0.0))


def _item(k: int, x: np.ndarray, conf: np.ndarray, camera: Intrinsics | None) -> Item:
    """A pipeline item (640x480) whose keypoints normalise to x [P, 17, 2]."""
    it = Item(Frame(k, k / 30, None, 640, 480), 0.0)
    it.kpts = ((x + [1.0, 480 / 640]) * 640 / 2).astype(np.float32)
    it.conf, it.intrinsics = conf, camera
    p = len(x)
    it.result = Result(np.zeros((p, 48, 2), np.float32), np.zeros((p, 96, 2), np.float32),
                       np.zeros((p, 17, 3), np.float32), np.zeros((p, 64), np.int64))  # fmt: skip
    return it


def test_process_feeds_jpma_the_visibility_and_the_camera():
    m = model()
    camera = Intrinsics(500.0, 520.0, 300.0, 250.0)
    stage = HTPStage(m, hypotheses=H, steps=K, camera_given=True)
    xs = frames(T + 2)
    conf = np.ones((len(xs), 1, 17), np.float32)
    conf[3:, 0, 13] = 0.0  # a wrist drops below min_conf from frame 3 on: JPMA gives it the hypothesis mean
    items = [_item(k, xs[k], conf[k], camera) for k in range(len(xs))]
    out = stage.process(items)
    seen = np.stack([stage.frame_input(it.kpts, it.conf, it.result.dense, it.result.fine, 640, 480) for it in items])
    cam = normalised_intrinsics(torch.tensor([[500.0, 520.0, 300.0, 250.0]]), 640, 480)
    want = lift_window(m, stage, seen, len(xs) - 1, cam, conf > 0.5)  # x_s as the Estimator masks it (wrist moved)
    np.testing.assert_allclose(out[-1].result.pose3d, want, rtol=1e-4, atol=1e-4)
    assert all("JPMA with --intrinsics" in it.temporal for it in out) and "temporal" in out[-1].timings
    blind = lift_window(m, stage, seen, len(xs) - 1, cam)
    assert not np.allclose(want, blind, atol=1e-6)  # the mask changed the aggregate
    with pytest.raises(ValueError, match="no seq2seq"):
        HTPStage(m, "seq2seq")


def test_onnxruntime_engine_is_picked_and_matches_torch(tmp_path, capsys):
    """The export in the artifacts folder is used for the same H and K (else torch, saying why); on windows of
    distinct frames it equals torch. Warm-up windows repeat frames, where TCEP's similarities can tie up to rounding
    and the two engines may pick other neighbours (docs/TEMPORAL.md), so those frames are not compared."""
    from export.temporal_cli import main

    m = model()
    ckpt = save_checkpoint(tmp_path / "htp.pt", m, extra={"deploy": {"hypotheses": H, "steps": K}})
    art = tmp_path / "exported"
    assert main(["export", "--checkpoint", str(ckpt), "--artifacts", str(art)]) == 0, capsys.readouterr().err
    meta = {"extra": {"deploy": {"hypotheses": H, "steps": K}}}
    ort_stage, note = build_htp_stage(m, meta, artifacts=art)
    assert ort_stage.engine.name == "onnxruntime" and "htp_lift.onnx" in note and "on onnxruntime" in ort_stage.label
    torch_stage, note = build_htp_stage(m, meta, artifacts=art, engine="torch")
    xs = frames(2 * T, persons=2)
    for k in range(len(xs)):
        got, ref = ort_stage.step(xs[k], k / 30), torch_stage.step(xs[k], k / 30)
        if k >= T - 1:
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    other, note = build_htp_stage(m, meta, hypotheses=3, artifacts=art)
    assert other.engine.name == "torch" and "exported for H, K = (2, 2), not (3, 2)" in note
    with pytest.raises(ValueError, match="HTP on onnxruntime"):
        build_htp_stage(m, meta, hypotheses=3, artifacts=art, engine="onnxruntime")
    none, note = build_htp_stage(m, {}, artifacts=tmp_path / "nowhere")
    assert (none.hypotheses, none.steps) == (3, 2) and "has no manifest.json" in note


def test_hipart_run_with_an_htp_checkpoint(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "htp.pt", model())
    out = tmp_path / "p.jsonl"
    rc = cli_run.main(["--config", "tiny", "--max-frames", "6", "--poses", str(out), "--temporal", str(ckpt),
                       "--htp-hypotheses", "2", "--htp-steps", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "HTP engine: torch" in err and "HTP H=2 K=1" in err
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in recs] == list(range(6))
    lifted = [r for r in recs if r["persons"]]
    assert lifted and all(r["temporal"].startswith("temporal causal T=9") and "HTP H=2 K=1" in r["temporal"]
                          for r in lifted)  # fmt: skip
    pose = np.asarray(lifted[-1]["persons"][0]["pose_3d"])
    assert pose.shape == (17, 3) and np.isfinite(pose).all() and np.abs(pose[0]).max() < 1e-3  # root-relative


@pytest.mark.parametrize("args, message", [
    (["--htp-steps", "2"], "set the HTP sampler of --temporal"),
    (["--temporal", "{htp}", "--temporal-mode", "seq2seq"], "no seq2seq"),
    (["--temporal", "{h2ot}", "--htp-hypotheses", "2"], "apply to an HTP model"),
])  # fmt: skip
def test_hipart_run_refuses_bad_htp_setups(tmp_path, capsys, args, message):
    from hipart.models.temporal import TemporalConfig, TemporalLifter

    h2ot = TemporalLifter(TemporalConfig(frames=5, dim=16, blocks=1, heads=2, prune="none"))
    paths = {"htp": save_checkpoint(tmp_path / "htp.pt", model()), "h2ot": save_checkpoint(tmp_path / "t.pt", h2ot)}
    argv = ["--config", "tiny", "--max-frames", "1", "--quiet"] + [a.format(**paths) for a in args]
    assert cli_run.main(argv) == 2
    assert message in capsys.readouterr().err


def test_hipart_run_temporal_htp_needs_the_bundled_model(tmp_path, monkeypatch, capsys):
    import edge.temporal

    monkeypatch.setattr(edge.temporal, "BUNDLED_HTP", tmp_path / "htp_default.pt")  # as if none were bundled
    assert cli_run.main(["--config", "tiny", "--temporal", "htp", "--max-frames", "1", "--quiet"]) == 2
    assert "bundles no HTP model" in capsys.readouterr().err


def test_hipart_bench_times_the_htp_stream(tmp_path, capsys):
    from edge import cli_bench

    ckpt = save_checkpoint(tmp_path / "htp.pt", model(), extra={"deploy": {"hypotheses": 2, "steps": 1}})
    out = tmp_path / "b.json"
    assert cli_bench.main(["--temporal", str(ckpt), "--iters", "3", "--json", str(out)]) == 0, capsys.readouterr().err
    rows = json.loads(out.read_text())["temporal"]
    assert [(r["engine"], r["hypotheses"], r["steps"], r["threads"]) for r in rows] == [
        ("torch", 2, 1, 1), ("onnxruntime", 2, 1, 1)]  # the deployed H, K on one thread
    assert all(r["frames"] == 3 and r["frames_per_s"] > 0 for r in rows)
    assert "HTP causal stream" in capsys.readouterr().out
    assert cli_bench.main(["--temporal", str(tmp_path / "missing.pt")]) == 2
