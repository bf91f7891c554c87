"""The pipeline end to end on a short synthetic clip, and its fault handling."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from edge import cli_run
from edge.detectors import Detections
from edge.pipeline import Pipeline
from edge.run import RunError, RunOptions, run_pipeline
from edge.sinks import JsonlSink, NpzSink, SinkError, VideoSink
from edge.sources import LiveCaptureSource, Source, open_source
from edge.visualize import render_frame
from hipart.camera import normalize_screen_coordinates


def _lines(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def _video_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def test_clip_frames_in_equal_frames_out_and_3d_matches_torch(tmp_path, clip, walk_px, torch_backend, scripted):
    conf = np.full((1, 17), 0.9, np.float32)
    det = scripted([(walk_px[i][None], conf) for i in range(12)])
    out_j, out_v, out_n = tmp_path / "p.jsonl", tmp_path / "v.mp4", tmp_path / "p.npz"
    sinks = [JsonlSink(out_j), VideoSink(out_v, 30), NpzSink(out_n)]
    st = Pipeline(
        open_source(clip),
        torch_backend,
        det,
        sinks,
        render=lambda it, ema, fps: render_frame(it, ema, fps, "UNTRAINED"),
    ).run()
    assert st.error is None and st.frames_in == st.frames_out == 12 and st.dropped == 0
    recs = _lines(out_j)
    assert [r["frame"] for r in recs] == list(range(12))
    assert _video_frames(out_v) == 12
    x = normalize_screen_coordinates(walk_px[:12], 640.0, 480.0)
    ref = torch_backend.run(x, np.repeat(conf, 12, 0))
    got = np.array([r["persons"][0]["pose_3d"] for r in recs])
    np.testing.assert_allclose(got, ref.pose3d, atol=1e-4)
    assert [r["persons"][0]["tokens"]["sparse"] for r in recs] == ref.q_s.tolist()
    z = np.load(out_n)
    assert z["pose_3d"].shape == (12, 17, 3) and z["fine_2d"].shape == (12, 96, 2)
    np.testing.assert_allclose(z["pose_3d"], ref.pose3d, atol=1e-4)
    assert not (tmp_path / "p.npz.partial.jsonl").exists()


def test_zero_and_many_persons(tmp_path, clip, walk_px, torch_backend, scripted):
    many = np.stack([walk_px[0] + [dx, 0] for dx in (-200, -100, 0, 100, 200)])
    c = np.ones((5, 17), np.float32)
    det = scripted([(np.zeros((0, 17, 2)), np.zeros((0, 17))), (many, c)])
    st = Pipeline(open_source(clip), torch_backend, det, [JsonlSink(tmp_path / "o.jsonl")], max_frames=4).run()
    recs = _lines(tmp_path / "o.jsonl")
    assert [len(r["persons"]) for r in recs] == [0, 5, 0, 5] and st.persons == 10


def test_nan_inf_out_of_frame_and_low_confidence_keypoints(tmp_path, clip, walk_px, torch_backend, scripted):
    k = np.stack([walk_px[0]] * 4).astype(np.float32)
    c = np.ones((4, 17), np.float32)
    k[0, 13] = np.nan  # one NaN wrist: masked, person kept
    k[1, 3] = [np.inf, -np.inf]
    k[2, :] = [5000.0, -4000.0]  # entirely out of frame: dropped
    c[3, :14] = 0.01  # almost nothing visible: dropped
    det = scripted([(k, c)])
    st = Pipeline(open_source(clip), torch_backend, det, [JsonlSink(tmp_path / "o.jsonl")], max_frames=2).run()
    recs = _lines(tmp_path / "o.jsonl")  # strict JSON: no NaN/inf leaked
    assert st.error is None and [len(r["persons"]) for r in recs] == [2, 2]
    assert recs[0]["dropped_persons"] == 2 and recs[0]["persons"][0]["confidence"][13] == 0.0


def test_detector_failure_on_one_frame_does_not_stop_the_run(tmp_path, clip, walk_px, torch_backend, scripted):
    good = (walk_px[0][None], np.ones((1, 17)))
    det = scripted([good, RuntimeError("model hiccup"), good])
    st = Pipeline(open_source(clip), torch_backend, det, [JsonlSink(tmp_path / "o.jsonl")], max_frames=3).run()
    recs = _lines(tmp_path / "o.jsonl")
    assert st.frames_out == 3 and st.failed == 1 and st.error is None
    assert recs[1]["status"].startswith("error: detect") and len(recs[2]["persons"]) == 1


def test_corrupt_frame_keeps_the_count(tmp_path, walk_px, torch_backend):
    folder = tmp_path / "imgs"
    folder.mkdir()
    from edge.sample import draw_figure

    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.jpg"), draw_figure(walk_px[i]))
    (folder / "2.jpg").write_bytes(b"corrupt jpeg")
    det = lambda img: Detections(walk_px[0][None], np.ones((1, 17), np.float32))  # noqa: E731
    st = Pipeline(
        open_source(str(folder)),
        torch_backend,
        det,
        [JsonlSink(tmp_path / "o.jsonl"), VideoSink(tmp_path / "o.avi", 10)],
        render=lambda it, e, f: render_frame(it, e, f),
    ).run()
    recs = _lines(tmp_path / "o.jsonl")
    assert st.frames_out == 4 and st.corrupt == 1 and [r["status"] for r in recs][2] == "corrupt"
    assert _video_frames(tmp_path / "o.avi") == 4


class _SlowBackend:
    """Wraps a backend's pure `infer` and sleeps `delay` per pose (batching does not make it faster), so sources
    outrun it."""

    def __init__(self, inner, delay):
        self.inner, self.delay = inner, delay

    def infer(self, x_s):
        time.sleep(self.delay * len(x_s))
        return self.inner.infer(x_s)


class _FastLive(Source):
    live = True

    def __init__(self, n, walk_px):
        super().__init__("fake live")
        self.n, self.i, self.walk = n, 0, walk_px

    def read(self):
        from edge.sources import Frame

        if self.i >= self.n:
            return None
        time.sleep(0.002)
        f = Frame(self.i, time.time(), None, 640, 480, self.walk[self.i % len(self.walk)][None], np.ones((1, 17)))
        self.i += 1
        return f


def test_live_source_drops_oldest_when_behind_and_files_drop_nothing(tmp_path, walk_px, torch_backend):
    st = Pipeline(
        _FastLive(60, walk_px), _SlowBackend(torch_backend, 0.02), None, [JsonlSink(tmp_path / "o.jsonl")], queue_size=2
    ).run()
    recs = _lines(tmp_path / "o.jsonl")
    assert st.dropped > 0 and st.frames_out + st.dropped == st.frames_in == 60
    idx = [r["frame"] for r in recs]
    assert idx == sorted(idx) and idx[-1] == 59  # newest frames survive; order kept
    np.savez(tmp_path / "k.npz", keypoints=walk_px[:20], format="h36m17")
    st = Pipeline(open_source(str(tmp_path / "k.npz")), _SlowBackend(torch_backend, 0.01), None, [], queue_size=1).run()
    assert st.dropped == 0 and st.frames_out == 20


def test_camera_disappearing_mid_stream_keeps_the_pipeline_running(tmp_path, torch_backend, walk_px, scripted):
    class Cap:
        def __init__(self, n):
            self.n = n

        def isOpened(self):
            return True

        def read(self):
            self.n -= 1
            if self.n < 0:
                raise OSError("unplugged")
            return True, np.zeros((480, 640, 3), np.uint8)

        def release(self):
            pass

    caps = iter([Cap(3), None, Cap(3)])
    src = LiveCaptureSource("camera fake", lambda: next(caps, None), sleep=lambda s: None, give_up_s=2)
    det = scripted([(walk_px[0][None], np.ones((1, 17)))])
    st = Pipeline(src, torch_backend, det, [JsonlSink(tmp_path / "o.jsonl")]).run()
    # ran on after the first loss (live: a frame may be dropped when behind); clear final reason
    assert st.frames_in == 6 and st.frames_out + st.dropped == 6 and "giving up" in st.error
    assert any("reconnected" in e for e in st.events)
    assert len(_lines(tmp_path / "o.jsonl")) == st.frames_out


def test_stop_midway_flushes_and_closes_outputs(tmp_path, walk_px, torch_backend):
    np.savez(tmp_path / "k.npz", keypoints=walk_px, format="h36m17")
    pipe = None

    def on_frame(item, st):
        if st.frames_out == 3:
            pipe.stop()  # what Ctrl-C does

    pipe = Pipeline(
        open_source(str(tmp_path / "k.npz")),
        torch_backend,
        None,
        [JsonlSink(tmp_path / "o.jsonl"), VideoSink(tmp_path / "o.mp4", 30)],
        render=lambda it, e, f: render_frame(it, e, f),
        on_frame=on_frame,
        queue_size=1,
    )
    st = pipe.run()
    assert 3 <= st.frames_out < 24 and st.frames_out == st.frames_in
    assert len(_lines(tmp_path / "o.jsonl")) == st.frames_out
    assert _video_frames(tmp_path / "o.mp4") == st.frames_out


def test_unwritable_output_is_refused_before_running(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SinkError, match="cannot write output"):
        JsonlSink(blocker / "out.jsonl")
    with pytest.raises(SinkError, match="is a folder"):
        VideoSink(tmp_path)
    with pytest.raises(SinkError, match="unsupported video extension"):
        VideoSink(tmp_path / "out.gif")


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch):
    """No exported artifacts anywhere (as on a fresh clone): --backend auto, the default, falls back to torch."""
    monkeypatch.setenv("HIPART_ARTIFACTS", str(tmp_path / "no-exports"))


def test_cli_default_run_on_sample_with_banner(tmp_path, capsys, monkeypatch, fresh_clone):
    import hipart.checkpoint

    monkeypatch.setattr(hipart.checkpoint, "bundled_checkpoint", lambda: None)  # as if none were bundled
    out = tmp_path / "o.jsonl"
    rc = cli_run.main(["--config", "tiny", "--max-frames", "5", "--poses", str(out), "--save", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "UNTRAINED weights" in err and "5 written" in err
    notice = next(line for line in err.splitlines() if line.startswith("auto picked"))  # one line: pick + fallback
    assert notice.startswith("auto picked 'torch' (fastest available here; skipped tensorrt: ")
    assert "onnxruntime: no manifest.json" in notice and "backend: torch on cpu" in err
    assert len(_lines(out)) == 5 and _video_frames(tmp_path / "o.mp4") == 5


def test_cli_bad_inputs_give_clear_messages_and_keep_files(tmp_path, capsys, fresh_clone):
    keep = tmp_path / "keep.jsonl"
    keep.write_text('{"frame": 0}\n')
    rc = cli_run.main(["--source", str(tmp_path / "missing.mp4"), "--poses", str(keep)])
    assert rc == 2 and "source not found" in capsys.readouterr().err
    assert keep.read_text() == '{"frame": 0}\n'  # an earlier output is never lost to a failed start
    blocker = tmp_path / "f"
    blocker.write_text("")
    rc = cli_run.main(["--config", "tiny", "--poses", str(blocker / "x.jsonl")])
    assert rc == 2 and "cannot write output" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"corrupt checkpoint")
    rc = cli_run.main(["--checkpoint", str(bad), "--poses", str(tmp_path / "o.jsonl")])
    assert rc == 2 and "cannot load the model" in capsys.readouterr().err
    with pytest.raises(RunError, match="no hipart.onnx"):
        run_pipeline(RunOptions(config="tiny", backend="onnxruntime", artifacts=str(tmp_path), max_frames=1))


def test_ctrl_c_flushes_outputs_and_exits_130(tmp_path, fresh_clone):
    import os
    import signal
    import subprocess
    import sys

    out, vid = tmp_path / "o.jsonl", tmp_path / "o.mp4"
    cmd = [sys.executable, "-m", "edge.cli_run", "--config", "tiny", "--loop", "--quiet", "--poses", str(out)]
    proc = subprocess.Popen([*cmd, "--save", str(vid)], stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted (SIGINT): outputs flushed and closed" in err
    n = len(_lines(out))  # every line parses: nothing half-written
    assert n >= 3 and _video_frames(vid) == n


def test_failed_start_never_truncates_existing_outputs(tmp_path, capsys, fresh_clone):
    old_j, old_n = tmp_path / "old.jsonl", tmp_path / "old.npz"
    old_j.write_text('{"frame": 0}\n')
    old_n.write_bytes(b"previous results")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"corrupt checkpoint")
    rc = cli_run.main(["--checkpoint", str(bad), "--poses", str(old_j), "--poses", str(old_n)])
    assert rc == 2 and "cannot load the model" in capsys.readouterr().err
    assert old_j.read_text() == '{"frame": 0}\n' and old_n.read_bytes() == b"previous results"
    assert not (tmp_path / "old.npz.partial.jsonl").exists()


def test_sink_failure_mid_run_stops_cleanly(tmp_path, walk_px, torch_backend):
    class Full(JsonlSink):
        def write(self, record, image=None):
            if record["frame"] == 2:
                raise OSError(28, "No space left on device")
            super().write(record, image)

    np.savez(tmp_path / "k.npz", keypoints=walk_px, format="h36m17")
    sink = Full(tmp_path / "o.jsonl")
    st = Pipeline(open_source(str(tmp_path / "k.npz")), torch_backend, None, [sink], queue_size=1).run()
    assert "No space left" in st.error and st.frames_out == 2
    assert len(_lines(tmp_path / "o.jsonl")) == 2 and sink.closed


def test_waiting_frames_share_one_hipart_call_with_identical_results(tmp_path, walk_px, torch_backend):
    np.savez(tmp_path / "k.npz", keypoints=walk_px, format="h36m17")
    st = Pipeline(
        open_source(str(tmp_path / "k.npz")),
        _SlowBackend(torch_backend, 0.05),
        None,
        [JsonlSink(tmp_path / "o.jsonl")],
        queue_size=8,
        max_batch_frames=8,
    ).run()
    recs = _lines(tmp_path / "o.jsonl")
    assert st.frames_out == len(walk_px) and max(r["batch_frames"] for r in recs) > 1
    ref = torch_backend.run(normalize_screen_coordinates(walk_px, 640.0, 480.0))
    np.testing.assert_allclose([r["persons"][0]["pose_3d"] for r in recs], ref.pose3d, atol=1e-4)
    assert [r["persons"][0]["tokens"]["dense"] for r in recs] == ref.q_d.tolist()


class _AwayThenBack:
    """A backend whose server is away (BackendUnavailable) for the first `away` calls, then answers again."""

    def __init__(self, inner, away):
        self.inner, self.away, self.calls = inner, away, 0

    def infer(self, x_s):
        self.calls += 1
        if self.calls <= self.away:
            from edge.backends.base import BackendUnavailable

            raise BackendUnavailable("no hipart-serve at http://127.0.0.1:1: ConnectionRefusedError (retrying)")
        return self.inner.infer(x_s)


def test_unavailable_backend_is_waited_out_not_counted_as_failures(tmp_path, walk_px, torch_backend):
    np.savez(tmp_path / "k.npz", keypoints=np.concatenate([walk_px] * 4)[:60], format="h36m17")
    backend = _AwayThenBack(torch_backend, 40)  # more than the 25-in-a-row rule, one call per frame
    st = Pipeline(open_source(str(tmp_path / "k.npz")), backend, None, [JsonlSink(tmp_path / "o.jsonl")],
                  max_batch_frames=1).run()  # fmt: skip
    recs = _lines(tmp_path / "o.jsonl")
    assert st.error is None and st.frames_out == 60 and st.failed == 40
    assert all("BackendUnavailable" in r["status"] for r in recs[:40])
    assert all(r["status"] == "ok" and len(r["persons"]) == 1 for r in recs[40:])
