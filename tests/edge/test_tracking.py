"""Person tracking (edge.tracking) and the per-track state of smoothing, the temporal stage, outputs and overlay."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("norfair")

from edge.backends.base import Backend, Result  # noqa: E402
from edge.estimator import Estimator, FrameResult  # noqa: E402
from edge.sinks import NpzSink, _npz_arrays  # noqa: E402
from edge.smoothing import PoseSmoother  # noqa: E402
from edge.tracking import PersonTracker  # noqa: E402
from edge.visualize import render_frame, track_colour  # noqa: E402
from hipart import skeleton  # noqa: E402

W, H = 640, 480
TEMPLATE = np.array([[0, 0], [-15, 0], [-15, 50], [-15, 100], [15, 0], [15, 50], [15, 100], [0, -30], [0, -60],
                     [0, -75], [0, -90], [-25, -60], [-40, -30], [-45, 0], [25, -60], [40, -30], [45, 0]],
                    np.float32)  # fmt: skip


def person(x: float, y: float = 240.0, scale: float = 1.0) -> np.ndarray:
    """A standing 17-joint person [17,2] px with the pelvis at (x, y)."""
    return TEMPLATE * scale + np.array([x, y], np.float32)


def crossing(frames: int = 60, seed: int = 0) -> list[tuple[np.ndarray, list[int]]]:
    """Two persons walking towards each other at the same height (they overlap mid-way), noisy, order shuffled."""
    rng = np.random.default_rng(seed)
    out = []
    for f in range(frames):
        ps = [person(80 + 8 * f, 240 + 4 * np.sin(f / 3)), person(560 - 8 * f, 250)]
        gt = [0, 1]
        if rng.random() < 0.5:
            ps, gt = ps[::-1], gt[::-1]
        out.append((np.stack(ps) + rng.normal(0, 2.0, (2, 17, 2)).astype(np.float32), gt))
    return out


def test_two_persons_crossing_keep_their_ids():
    tr = PersonTracker()
    first: dict[int, int] = {}
    for k, gt in crossing():
        ids = tr(k, np.ones((2, 17), np.float32))
        assert sorted(ids.tolist()) == sorted(set(ids.tolist()))
        for g, i in zip(gt, ids, strict=True):
            assert first.setdefault(g, int(i)) == i
    assert sorted(first.values()) == [0, 1]


def test_a_person_leaving_then_a_new_one_gets_a_new_id_and_the_timeout_ends_the_track():
    tr = PersonTracker(max_age=5)
    for f in range(20):
        assert tr(person(100 + 2 * f)[None]).tolist() == [0]
    ended_at = None
    for f in range(10):  # nobody: the established track lives max_age frames, then ends
        assert tr(np.zeros((0, 17, 2), np.float32)).tolist() == []
        if tr.ended:
            assert tr.ended == [0] and ended_at is None
            ended_at = f
    assert ended_at is not None and 4 <= ended_at <= 6 and tr.active == []
    assert tr(person(500)[None]).tolist() == [1]  # a new person elsewhere: a new id, never a reused one


def test_a_short_gap_keeps_the_id_and_reset_forgets_everything():
    tr = PersonTracker(max_age=10)
    for f in range(10):
        tr(person(100 + 3 * f)[None])
    for _ in range(3):
        tr(np.zeros((0, 17, 2), np.float32))
    assert tr(person(139)[None]).tolist() == [0] and tr.ended == []
    tr.reset()
    assert tr.active == [] and tr(person(500)[None]).tolist() == [0]


class PassBackend(Backend):
    """A fake HiPART: pose3d = the normalised 2D input (z = 0), so each person's 3D follows its own motion."""

    name = "pass"

    def _infer(self, x_s: np.ndarray) -> Result:
        b = len(x_s)
        pose = np.concatenate([x_s, np.zeros((b, 17, 1), np.float32)], -1)
        return Result(np.zeros((b, 48, 2), np.float32), np.zeros((b, 96, 2), np.float32), pose,
                      np.zeros((b, 64), np.int64))  # fmt: skip


def test_estimator_tracks_and_outputs_carry_track_id(tmp_path):
    est = Estimator(PassBackend(), tracker=PersonTracker())
    sink = NpzSink(tmp_path / "out.npz")
    records = []
    for f, (k, gt) in enumerate(crossing(20)):
        res = est.from_keypoints(k, None, W, H, timestamp=f / 30)
        assert res.tracked and res.track_ids.tolist() == gt  # the first frame's order fixes ids 0 and 1
        rec = res.to_record()
        assert [p["track_id"] for p in rec["persons"]] == gt and [p["id"] for p in rec["persons"]] == [0, 1]
        json.dumps(rec)
        records.append(rec)
        sink.write(rec)
    sink.close()
    z = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(z["track_id"], [g for _, gt in crossing(20) for g in gt])
    assert z["track_id"].shape == z["person_frame"].shape
    untracked = Estimator(PassBackend()).from_keypoints(crossing(1)[0][0], None, W, H)
    assert not untracked.tracked and [p["track_id"] for p in untracked.to_record()["persons"]] == [0, 1]
    old = [{**r, "persons": [{k: v for k, v in p.items() if k != "track_id"} for p in r["persons"]]} for r in records]
    np.testing.assert_array_equal(_npz_arrays(old)["track_id"], np.tile([0, 1], 20))  # old journals: the index


def test_stateless_estimator_carries_nothing_from_one_image_to_the_next():
    tracker = PersonTracker()
    est = Estimator(PassBackend(), tracker=tracker, smoothing=PoseSmoother(), stateless=True)
    for f in range(4):
        k = np.stack([person(100 + 50 * f), person(400 - 30 * f)])
        res = est.from_keypoints(k, None, W, H, timestamp=f / 30)
        assert res.restart and not res.tracked and res.track_ids.tolist() == [0, 1]
        np.testing.assert_allclose(res.pose3d[..., :2], res.x_s)  # no smoothing across images: passes through
    assert tracker.active == []


def test_smoother_keeps_one_filter_per_track():
    rng = np.random.default_rng(0)
    a = np.cumsum(rng.normal(0, 0.05, (30, 17, 3)), 0).astype(np.float32)
    b = (np.cumsum(rng.normal(0, 0.2, (30, 17, 3)), 0) + 1).astype(np.float32)
    both, alone_a, alone_b = PoseSmoother(), PoseSmoother(), PoseSmoother()
    for f in range(30):
        t = f / 30
        swap = f % 3 == 0  # the detector order changes: the track ids follow the persons
        x, ids = (np.stack([b[f], a[f]]), [9, 4]) if swap else (np.stack([a[f], b[f]]), [4, 9])
        got = both(x, t, ids)
        ga, gb = (got[1], got[0]) if swap else (got[0], got[1])
        np.testing.assert_allclose(ga, alone_a(a[f][None], t)[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(gb, alone_b(b[f][None], t)[0], rtol=1e-6, atol=1e-6)
    assert not np.allclose(ga, a[-1]) and sorted(both.filters) == [4, 9]
    both.drop([4])
    assert sorted(both.filters) == [9]
    np.testing.assert_array_equal(both(a[0][None], 2.0, [4])[0], a[0])  # a track seen again starts afresh


def test_temporal_stage_keeps_one_buffer_per_track():
    torch = pytest.importorskip("torch")
    from edge.temporal import TemporalStage
    from hipart.models.temporal import TemporalConfig, TemporalLifter

    torch.manual_seed(0)
    m = TemporalLifter(TemporalConfig(frames=4, dim=16, blocks=1, heads=2, prune="tpa", recover="tra",
                                      schedule_r=(2,), schedule_b=(0,))).eval()  # fmt: skip
    g = np.random.default_rng(1)
    n = m.config.num_points
    a = (g.normal(0, 0.3, (1, n, 2)) + 0.02 * np.arange(9)[:, None, None, None]).astype(np.float32)[:, 0]
    b = (g.normal(0, 0.3, (1, n, 2)) - 0.05 * np.arange(9)[:, None, None, None]).astype(np.float32)[:, 0]
    both, alone_a, alone_b = TemporalStage(m, "causal"), TemporalStage(m, "causal"), TemporalStage(m, "causal")
    for f in range(9):
        t = f / 30
        if f < 3:  # b joins at frame 3: its own warm-up, a's buffer goes on
            got = both.step(a[f][None], t, [5])
            np.testing.assert_allclose(got[0], alone_a.step(a[f][None], t)[0], rtol=1e-5, atol=1e-5)
            continue
        swap = f % 2 == 0
        x, ids = (np.stack([b[f], a[f]]), [8, 5]) if swap else (np.stack([a[f], b[f]]), [5, 8])
        got = both.step(x, t, ids)
        ga, gb = (got[1], got[0]) if swap else (got[0], got[1])
        np.testing.assert_allclose(ga, alone_a.step(a[f][None], t)[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(gb, alone_b.step(b[f][None], t)[0], rtol=1e-5, atol=1e-5)
    assert sorted(both._tracks) == [5, 8] and both.resets == 0
    both.drop_tracks([8])
    assert sorted(both._tracks) == [5]


def test_overlay_colours_and_ids_per_track():
    from edge.pipeline import Item
    from edge.sources import Frame

    assert track_colour(3) == track_colour(3) and len({track_colour(i) for i in range(8)}) == 8
    est = Estimator(PassBackend(), tracker=PersonTracker())
    it = Item(Frame(0, 0.0, np.zeros((H, W, 3), np.uint8), W, H), 0.0)
    est.prepare(it, kpts_px=np.stack([person(200), person(450)]), conf=None)
    assert est.lift([it]) == [None] and it.tracked
    img = render_frame(it, {"detect": 1.0}, 30.0)
    assert img.shape == (H, W + H, 3)
    colour = np.array(track_colour(int(it.track_ids[0])))
    assert (np.abs(img[:, :W].reshape(-1, 3).astype(int) - colour).sum(1) < 30).any()  # the skeleton in its colour
    panel = img[:, W:]
    assert (np.abs(panel.reshape(-1, 3).astype(int) - np.array(track_colour(int(it.track_ids[1])))).sum(1) < 30).any()
    assert isinstance(FrameResult().track_id(0), int) and skeleton.NUM_JOINTS == 17
