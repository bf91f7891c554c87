"""The Estimator: input policy once, pure backend call, pixels out, batching, and the pipeline/builder around it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import edge.backends.base
import edge.estimator
import edge.temporal
from edge import Estimator, FrameResult
from edge.occlusion import DEFAULT_MIN_CONF, MIN_VISIBLE_JOINTS, mask_low_confidence
from edge.pipeline import Pipeline
from edge.sinks import JsonlSink
from edge.sources import open_source
from edge.temporal import TemporalStage
from hipart import skeleton
from hipart.models.temporal import TemporalConfig, TemporalLifter

W, H = 1280, 720  # not 4:3, so the y offset (h / w) of the normalisation matters


class Spy:
    """A backend wrapper that records every `infer` input and can fail on a marked pose (x_s[:, 0, 0] > 0.9)."""

    def __init__(self, inner, fail_marked: bool = False):
        self.inner, self.fail_marked, self.calls = inner, fail_marked, []

    def infer(self, x_s):
        self.calls.append(np.array(x_s))
        if self.fail_marked and (x_s[:, 0, 0] > 0.9).any():
            raise RuntimeError("marked pose")
        return self.inner.infer(x_s)


def _persons(walk_px, n: int, shift: float = 150.0) -> np.ndarray:
    """n persons [n,17,2] in pixels of the W x H frame: walk poses side by side."""
    return np.array([walk_px[3 * i] + [200.0 + shift * i, 100.0] for i in range(n)], np.float32).reshape(n, 17, 2)


def _reference(tiny_model, kpts_px: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, dict]:
    """Normalise and mask by hand (no edge code), then the torch model itself."""
    x = kpts_px / W * 2 - np.array([1.0, H / W], np.float32)
    for b, j in zip(*np.nonzero(conf < DEFAULT_MIN_CONF), strict=True):
        assert j != skeleton.ROOT and conf[b, skeleton.PARENTS[j]] >= DEFAULT_MIN_CONF  # one level of collapse
        x[b, j] = x[b, skeleton.PARENTS[j]]
    with torch.no_grad():
        out = tiny_model(torch.from_numpy(x.astype(np.float32)))
    return x, {k: v.numpy() for k, v in out.items()}


def _px(x_norm: np.ndarray) -> np.ndarray:
    return (x_norm + np.array([1.0, H / W], np.float32)) * W / 2


def test_from_keypoints_equals_the_model_on_the_normalised_masked_input(tiny_model, torch_backend, walk_px):
    k = _persons(walk_px, 2)
    c = np.full((2, 17), 0.9, np.float32)
    c[0, 13] = 0.1  # a low-confidence wrist: collapses onto its parent before HiPART
    c[1, [3, 6]] = 0.05
    res = Estimator(torch_backend).from_keypoints(k, c, W, H, timestamp=0.5)
    x, ref = _reference(tiny_model, k, c)
    assert isinstance(res, FrameResult) and len(res) == 2 and res.status == "ok" and res.dropped_persons == 0
    np.testing.assert_allclose(res.x_s, x, atol=1e-6)
    np.testing.assert_array_equal(res.q_s, ref["q_s"])
    np.testing.assert_array_equal(res.q_d, ref["q_d"])
    np.testing.assert_allclose(res.pose3d, ref["pose3d"], atol=1e-4)
    np.testing.assert_allclose(res.dense, _px(ref["dense"]), atol=1e-2)  # pixels
    np.testing.assert_allclose(res.fine, _px(ref["fine"]), atol=1e-2)
    np.testing.assert_array_equal(res.kpts, k)
    np.testing.assert_array_equal(res.conf, c)
    assert res.timestamp == 0.5 and (res.width, res.height) == (W, H)
    assert {"detect", "hipart", "hipart.decode", "hipart.lift"} <= set(res.timings)


def test_masking_happens_once_and_the_pure_backend_path_does_not_mask(torch_backend, walk_px, monkeypatch):
    counts = {"estimator": 0, "backend": 0}

    def counting(where):
        def mask(*a, **kw):
            counts[where] += 1
            return mask_low_confidence(*a, **kw)

        return mask

    monkeypatch.setattr(edge.estimator, "mask_low_confidence", counting("estimator"))
    monkeypatch.setattr(edge.backends.base, "mask_low_confidence", counting("backend"))
    spy = Spy(torch_backend)
    k = _persons(walk_px, 1)
    c = np.ones((1, 17), np.float32)
    c[0, 13] = 0.0
    res = Estimator(spy).from_keypoints(k, c, W, H)
    assert counts == {"estimator": 1, "backend": 0}
    seen = spy.calls[0]  # what reached the model: the wrist already on its parent (the elbow)
    np.testing.assert_array_equal(seen[0, 13], seen[0, skeleton.PARENTS[13]])
    np.testing.assert_array_equal(seen, res.x_s)
    # infer is pure: an unmasked input goes through as given; run() is the convenience that masks first
    x = k / W * 2 - np.array([1.0, H / W], np.float32)
    pure, masked = torch_backend.infer(x), torch_backend.run(x, c)
    assert counts["backend"] == 1
    np.testing.assert_array_equal(masked.tokens, torch_backend.infer(res.x_s).tokens)
    with torch.no_grad():
        direct = torch_backend.model(torch.from_numpy(x.astype(np.float32)))
    np.testing.assert_array_equal(pure.q_s, direct["q_s"].numpy())
    assert not np.array_equal(res.x_s, x)  # the masked input really differs from the raw one


def test_persons_with_too_few_confident_joints_are_dropped_and_counted(torch_backend, walk_px):
    k = _persons(walk_px, 4)
    c = np.ones((4, 17), np.float32)
    c[1, MIN_VISIBLE_JOINTS - 1 :] = 0.1  # 3 confident joints: dropped
    k[2] = [9000.0, -9000.0]  # entirely out of frame: confidence zeroed, dropped
    k[3, 5] = np.nan  # one NaN joint: sanitised (confidence 0, masked), person kept
    spy = Spy(torch_backend)
    res = Estimator(spy).from_keypoints(k, c, W, H)
    assert res.dropped_persons == 2 and len(res) == 2 and res.pose3d.shape == (2, 17, 3)
    np.testing.assert_array_equal(res.kpts[0], k[0])
    assert res.conf[1, 5] == 0.0 and np.isfinite(res.kpts).all() and np.isfinite(res.x_s).all()
    np.testing.assert_array_equal(res.x_s[1, 5], res.x_s[1, skeleton.PARENTS[5]])
    assert spy.calls[0].shape == (2, 17, 2)
    rec = json.loads(json.dumps(res.to_record()))  # strict JSON
    assert rec["dropped_persons"] == 2 and len(rec["persons"]) == 2 and rec["persons"][1]["confidence"][5] == 0.0


def test_pixel_round_trip_of_dense_fine_and_x_s(torch_backend, walk_px):
    k = _persons(walk_px, 2)
    res = Estimator(torch_backend).from_keypoints(k, None, W, H)
    norm = lambda p: p / W * 2 - np.array([1.0, H / W], np.float32)  # noqa: E731
    np.testing.assert_allclose(norm(res.dense), res.result.dense, atol=1e-5)
    np.testing.assert_allclose(norm(res.fine), res.result.fine, atol=1e-5)
    np.testing.assert_allclose(_px(res.x_s), k, atol=1e-3)  # every joint confident: x_s is k, normalised
    assert res.dense.shape == (2, 48, 2) and res.fine.shape == (2, 96, 2)


def test_a_frame_without_persons_gives_an_empty_result(torch_backend, scripted):
    spy = Spy(torch_backend)
    det = scripted([(np.zeros((0, 17, 2)), np.zeros((0, 17)))])
    est = Estimator(spy, det)
    results = [est(np.zeros((H, W, 3), np.uint8)), est.from_keypoints(np.zeros((0, 17, 2)), None, W, H)]
    for res in results:
        assert len(res) == 0 and res.status == "ok" and res.dropped_persons == 0 and res.result is None
        assert res.pose3d.shape == (0, 17, 3) and res.dense.shape == (0, 48, 2) and res.fine.shape == (0, 96, 2)
        assert res.q_s.shape == (0, 16) and res.q_d.shape == (0, 48) and res.x_s.shape == (0, 17, 2)
        assert res.to_record()["persons"] == [] and res.timings["hipart"] >= 0
    assert spy.calls == [] and [r.index for r in results] == [0, 1]  # the backend is not called; calls counted


def test_image_path_runs_the_detector_then_the_same_policy(torch_backend, walk_px, scripted):
    k = _persons(walk_px, 1)
    c = np.full((1, 17), 0.8, np.float32)
    c[0, 16] = 0.2
    est = Estimator(torch_backend, scripted([(k, c)]))
    res = est(np.zeros((H, W, 3), np.uint8), timestamp=1.0)
    ref = Estimator(torch_backend).from_keypoints(k, c, W, H)
    np.testing.assert_array_equal(res.x_s, ref.x_s)
    np.testing.assert_array_equal(res.q_s, ref.q_s)
    np.testing.assert_array_equal(res.q_d, ref.q_d)
    np.testing.assert_allclose(res.pose3d, ref.pose3d, atol=1e-5)
    with pytest.raises(ValueError, match="no detector"):
        Estimator(torch_backend)(np.zeros((H, W, 3), np.uint8))


def test_batched_lift_equals_per_frame_calls_and_isolates_a_failing_frame(torch_backend, walk_px):
    counts = [1, 0, 2, 1]
    frames = [_persons(walk_px[i:], n) for i, n in enumerate(counts)]
    frames[2][:, :, 0] = np.clip(frames[2][:, :, 0] + 700.0, None, W)  # frame 2: a pose near the right edge
    single = [Estimator(torch_backend).from_keypoints(k, None, W, H, timestamp=i) for i, k in enumerate(frames)]
    spy = Spy(torch_backend)
    est = Estimator(spy)
    batch = [est.prepare(FrameResult(index=i, timestamp=i, width=W, height=H), kpts_px=k) for i, k in enumerate(frames)]
    assert est.lift(batch) == [None] * 4
    assert len(spy.calls) == 1 and spy.calls[0].shape == (4, 17, 2)  # all persons of all frames: one call
    for b, s in zip(batch, single, strict=True):
        assert len(b) == len(s) and b.batch_frames == 4
        np.testing.assert_array_equal(b.q_s, s.q_s)
        np.testing.assert_allclose(b.pose3d, s.pose3d, atol=1e-4)
        np.testing.assert_allclose(b.fine, s.fine, atol=1e-2)
    # a backend that fails on frame 2's poses: the batch is retried frame by frame, only frame 2 fails
    assert (single[2].x_s[:, 0, 0] > 0.9).any() and not any((s.x_s[:, 0, 0] > 0.9).any() for s in single[:2])
    flaky = Estimator(Spy(torch_backend, fail_marked=True))
    batch = [flaky.prepare(FrameResult(width=W, height=H), kpts_px=k) for k in frames]
    errors = flaky.lift(batch)
    assert [e is None for e in errors] == [True, True, False, True]
    assert batch[2].status.startswith("error: hipart: RuntimeError: marked pose") and batch[2].result is None
    np.testing.assert_allclose(batch[3].pose3d, single[3].pose3d, atol=1e-4)
    with pytest.raises(RuntimeError, match="marked pose"):
        flaky.from_keypoints(frames[2], None, W, H)


def _temporal_model() -> TemporalLifter:
    torch.manual_seed(0)
    cfg = TemporalConfig(frames=5, dim=16, blocks=2, heads=2, prune="tpa", recover="tra", schedule_r=(3,),
                         schedule_b=(0,))  # fmt: skip
    return TemporalLifter(cfg).eval()


def test_the_temporal_stage_takes_the_estimators_x_s(torch_backend, walk_px, monkeypatch, one_torch_thread):
    m = _temporal_model()
    k = _persons(walk_px, 1)
    c = np.ones((1, 17), np.float32)
    c[0, 13] = 0.0
    per_frame = Estimator(torch_backend).from_keypoints(k, c, W, H, timestamp=0.0)
    want = TemporalStage(m, "causal").step(np.concatenate([per_frame.x_s, per_frame.result.dense,
                                                           per_frame.result.fine], 1), 0.0)  # fmt: skip
    monkeypatch.setattr(edge.temporal, "lift_input", lambda *a: pytest.fail("the temporal stage recomputed x_s"))
    res = Estimator(torch_backend, temporal=TemporalStage(m, "causal")).from_keypoints(k, c, W, H, timestamp=0.0)
    np.testing.assert_allclose(res.pose3d, want, rtol=1e-5, atol=1e-5)
    assert res.temporal.startswith("temporal causal T=5") and "temporal" in res.timings
    with pytest.raises(ValueError, match="seq2seq"):
        Estimator(torch_backend, temporal=TemporalStage(m, "seq2seq")).from_keypoints(k, c, W, H)


def test_pipeline_around_an_estimator(tmp_path, walk_px, torch_backend, scripted):
    np.savez(tmp_path / "k.npz", keypoints=walk_px[:5], format="h36m17")
    est = Estimator(torch_backend)
    st = Pipeline(open_source(str(tmp_path / "k.npz")), est, sinks=[JsonlSink(tmp_path / "o.jsonl")]).run()
    assert st.error is None and st.frames_out == 5
    recs = [json.loads(line) for line in open(tmp_path / "o.jsonl", encoding="utf-8")]
    for i, r in enumerate(recs):
        ref = Estimator(torch_backend).from_keypoints(walk_px[i][None], None, 640, 480, timestamp=i / 30)
        np.testing.assert_allclose(r["persons"][0]["pose_3d"], ref.pose3d[0], atol=1e-4)
        assert r["persons"][0]["tokens"]["sparse"] == ref.q_s[0].tolist()
        np.testing.assert_allclose(r["persons"][0]["dense_2d"], ref.dense[0], atol=0.01)
    with pytest.raises(ValueError, match="Estimator was given"):
        Pipeline(open_source(str(tmp_path / "k.npz")), est, scripted([]))


def test_one_builder_and_one_detector_rule(tmp_path, loaded, walk_px):
    from edge.run import RunError, RunOptions, build_estimator, build_runtime, needs_detector
    from edge.sources import sample_path

    np.savez(tmp_path / "k.npz", keypoints=walk_px[:3], format="h36m17")
    assert not needs_detector(open_source(str(tmp_path / "k.npz")))
    assert needs_detector(open_source(str(sample_path(video=True))))
    opts = RunOptions(source=str(tmp_path / "k.npz"), poses=[str(tmp_path / "o.jsonl")], min_conf=0.5, smooth=True,
                      backend="torch")  # fmt: skip
    with build_runtime(opts, loaded) as rt:
        est = rt.estimator
        assert est.detector is None and est.min_conf == 0.5 and est.smoothing is not None
        assert est.backend.name == "torch" and est.backend.min_conf == 0.5
        st = rt.pipeline().run()
    assert st.frames_out == 3 and len((tmp_path / "o.jsonl").read_text().splitlines()) == 3
    with pytest.raises(RunError, match="detector-model"):  # no source means images: a detector is built
        build_estimator(RunOptions(detector="onnx"), loaded, source=None)
    est = build_estimator(RunOptions(), loaded, source=open_source(str(tmp_path / "k.npz")))
    assert est.min_conf == DEFAULT_MIN_CONF and est.smoothing is None and est.temporal is None and not est.detector


def test_bundled_model_on_sample_keypoints():
    from edge import create_backend, load_model
    from edge.sources import sample_path

    d = np.load(sample_path())  # the bundled walk: [T, 17, 2] pixels + confidence
    loaded = load_model()
    with Estimator(create_backend("torch", loaded.model)) as est:
        res = est.from_keypoints(d["keypoints"][:1], d["conf"][:1], int(d["width"]), int(d["height"]))
    assert res.pose3d.shape == (1, 17, 3) and res.dense.shape == (1, 48, 2) and res.fine.shape == (1, 96, 2)
    assert np.isfinite(res.pose3d).all() and np.abs(res.pose3d).max() < 3.0  # metres, root-relative
