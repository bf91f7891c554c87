"""Fault injection (issue 19): a real MJPEG-over-HTTP stream that stalls, drops and goes away, a blocking sink, and a
backend that fails on one frame, all through the real Pipeline with a cheap fake detector and backend (no model).

Every streamed frame carries the server's own frame number in its pixels (tests/edge/mjpeg_server.py), so the tests
check what was delivered end to end: no server frame written twice, in order, and only frames the server really
sent. Bounds on time are generous (several times what the faults cost), so the tests hold on a loaded machine.
"""

from __future__ import annotations

import time

import numpy as np

import edge.sources
from edge.backends.base import Backend, Result
from edge.detectors import Detections
from edge.estimator import lift_input
from edge.occlusion import DEFAULT_MIN_CONF
from edge.pipeline import Pipeline, RunStats
from edge.sinks import Sink
from edge.sources import LiveCaptureSource, open_source
from hipart import skeleton
from tests.edge.mjpeg_server import HEIGHT, WIDTH, MjpegServer, decode_index


class FakeBackend(Backend):
    """A model-free backend: 3D = the 2D input with z = 0; raises on any pose equal to `poison`, optionally slow."""

    name = "fake"

    def __init__(self, poison: np.ndarray | None = None, delay: float = 0.0):
        super().__init__()
        self.poison, self.delay = poison, delay
        self.calls = self.raised = 0

    def _infer(self, x_s: np.ndarray) -> Result:
        """x_s [B,17,2] -> a Result of the right shapes (or RuntimeError on the poisoned pose)."""
        self.calls += 1
        time.sleep(self.delay)
        if self.poison is not None and any(np.allclose(x, self.poison, atol=1e-6) for x in x_s):
            self.raised += 1
            raise RuntimeError("injected backend fault")
        b = len(x_s)
        return Result(
            dense=np.zeros((b, skeleton.NUM_DENSE, 2), np.float32),
            fine=np.zeros((b, skeleton.NUM_FINE, 2), np.float32),
            pose3d=np.concatenate([x_s, np.zeros((b, skeleton.NUM_JOINTS, 1), np.float32)], 2),
            tokens=np.zeros((b, skeleton.NUM_BONES + skeleton.NUM_DENSE), np.int64),
        )


class StreamDetector:
    """A stand-in detector for the MJPEG frames: one fixed person, after checking the frame's index is readable."""

    name = "stream-fake"

    def __init__(self, walk_px: np.ndarray):
        self.pose = (walk_px[0] * [WIDTH / 640, HEIGHT / 480]).astype(np.float32)[None]

    def __call__(self, image: np.ndarray) -> Detections:
        """The fixed person (ValueError when the image does not carry a readable frame index)."""
        if decode_index(image) is None:
            raise ValueError("unreadable frame")
        return Detections(self.pose, np.ones((1, 17), np.float32))

    def close(self) -> None:
        """Nothing to release."""


class RecordingSink(Sink):
    """Keeps, per written frame: source index, the server's index read from the image, status and queue latency."""

    def __init__(self, block_s: float = 0.0, block_on: tuple[int, ...] = ()):
        self.block_s, self.block_on = block_s, set(block_on)
        self.rows: list[tuple[int, int | None, str, float]] = []
        self.records: list[dict] = []
        self.closed = False

    def write(self, record: dict, image: np.ndarray | None = None) -> None:
        """Record the frame (latency = now - its capture wall time); block `block_s` on the chosen writes."""
        latency = time.time() - record["timestamp"]  # live sources stamp frames with wall-clock capture time
        self.rows.append((record["frame"], decode_index(image), record["status"], latency))
        self.records.append(record)
        if len(self.rows) in self.block_on:
            time.sleep(self.block_s)

    def close(self) -> None:
        """Mark closed."""
        self.closed = True

    @property
    def server_indices(self) -> list[int | None]:
        """The server frame numbers written, in write order."""
        return [r[1] for r in self.rows]


def _run_stream(src: LiveCaptureSource, walk_px: np.ndarray, sink: RecordingSink, max_frames: int) -> RunStats:
    """The real Pipeline on a stream source with the fake detector/backend; the sink sees the source image."""
    return Pipeline(
        src,
        FakeBackend(),
        StreamDetector(walk_px),
        [sink],
        render=lambda item, ema, fps: item.frame.image,
        max_frames=max_frames,
    ).run()


def _check_delivery(st: RunStats, sink: RecordingSink, srv: MjpegServer) -> list[int]:
    """Counts add up; every written frame is a real server frame, none twice, in order; returns the indices."""
    assert st.frames_out + st.dropped == st.frames_in, st
    assert len(sink.rows) == st.frames_out and sink.closed
    assert [r[0] for r in sink.rows] == sorted({r[0] for r in sink.rows})  # source numbering: unique, increasing
    idx = sink.server_indices
    assert None not in idx, "a written frame does not carry a readable server index"
    assert all(a < b for a, b in zip(idx, idx[1:], strict=False)), f"server frames repeated or reordered: {idx}"
    assert set(idx) <= set(srv.sent), "a written frame the server never sent"
    assert all(r[2] == "ok" for r in sink.rows) and st.failed == 0
    return idx


def test_cv2_reads_the_mjpeg_stream_frame_by_frame():
    """The harness itself: OpenCV's FFmpeg reads our MJPEG server in order through open_source."""
    with MjpegServer() as srv:
        src = open_source(srv.url, give_up_s=2, read_timeout_s=5)
        try:
            assert src.live and isinstance(src, LiveCaptureSource)
            frames = [src.read() for _ in range(10)]
        finally:
            src.close()
    assert [decode_index(f.image) for f in frames] == list(range(10))
    assert [f.index for f in frames] == list(range(10)) and frames[0].image.shape == (HEIGHT, WIDTH, 3)


def test_stalled_stream_times_out_reconnects_and_the_run_goes_on(walk_px):
    """A short stall is ridden out; a stall longer than the read timeout is a loss: reconnect, no frame twice."""
    with MjpegServer(stall={5: 0.3, 15: 4.0}) as srv:
        src = open_source(srv.url, give_up_s=8, backoff=(0.1, 0.4), open_timeout_s=3, read_timeout_s=1.5)
        sink = RecordingSink()
        st = _run_stream(src, walk_px, sink, max_frames=40)
    assert st.error is None and st.frames_in == 40
    idx = _check_delivery(st, sink, srv)
    assert src.reconnects >= 1 and any("reconnected" in e for e in st.events), st.events
    assert srv.connections >= 2
    assert 5 in srv.sent  # the 0.3 s stall was waited out on the same connection (the read timeout is 1.5 s)
    assert 15 not in srv.sent  # the old connection was abandoned during the long stall; the new one goes on at 16
    assert idx[-1] > 15 and len(idx) > 20


def test_dropped_connection_refused_then_back_reconnects_with_backoff(walk_px, monkeypatch):
    """The server drops the TCP connection and refuses connections for 2 s: the source backs off, gets back in,
    and the run goes on from where the server's numbering left off; a second plain drop reconnects at once."""
    opens: list[bool] = []
    real = edge.sources.stream_capture

    def counting(*args, **kw):
        """stream_capture, recording whether each connection attempt opened."""
        cap = real(*args, **kw)
        opens.append(cap.isOpened())
        return cap

    monkeypatch.setattr(edge.sources, "stream_capture", counting)
    with MjpegServer(drop_after={10, 25}, down_s={10: 2.0}) as srv:
        src = open_source(srv.url, give_up_s=10, backoff=(0.1, 0.4), open_timeout_s=3, read_timeout_s=3)
        sink = RecordingSink()
        st = _run_stream(src, walk_px, sink, max_frames=40)
    assert st.error is None and st.frames_in == 40
    idx = _check_delivery(st, sink, srv)
    assert src.reconnects == 2 and srv.connections == 3, st.events
    assert sum(1 for e in st.events if "lost the device" in e) == 2
    assert opens[0] and opens[-1] and opens.count(False) >= 1, opens  # refused while down, then back
    assert any(10 < i <= 25 for i in idx) and idx[-1] > 25  # frames from the second and the third connection


def test_stream_gone_for_good_ends_the_run_with_a_clear_error(walk_px):
    """The server disappears and never comes back: the run stops after give_up_s with the reason, outputs closed."""
    with MjpegServer(drop_after={8}, down_s={8: 60.0}) as srv:
        src = open_source(srv.url, give_up_s=1.0, backoff=(0.1, 0.4), open_timeout_s=2, read_timeout_s=2)
        sink = RecordingSink()
        st = _run_stream(src, walk_px, sink, max_frames=1000)
    assert st.error is not None and "giving up" in st.error
    idx = _check_delivery(st, sink, srv)
    assert st.frames_in <= 9 and idx and idx[-1] <= 8


def test_blocking_sink_drops_oldest_and_latency_stays_bounded(walk_px):
    """A sink that blocks 2 s twice on a live stream: the oldest frames are dropped, written frames stay fresh."""
    block_s = 2.0
    with MjpegServer(fps=40) as srv:
        src = open_source(srv.url, give_up_s=5, read_timeout_s=5)
        sink = RecordingSink(block_s=block_s, block_on=(3, 15))
        st = _run_stream(src, walk_px, sink, max_frames=120)
    assert st.error is None and st.frames_in == 120
    idx = _check_delivery(st, sink, srv)
    assert st.dropped > 0 and st.frames_out < st.frames_in
    # Blocking queues would hand the sink, after each block, the frame that was waiting when the block began (about
    # block_s old). Dropping the oldest keeps only frames captured during the block's last fraction of a second
    # (the queues' worth): so no frame reaches the sink as old as one block (~0.5 s seen; 4x margin).
    latencies = [r[3] for r in sink.rows]
    assert max(latencies) < block_s, f"a frame waited {max(latencies):.2f} s for the sink"
    assert st.latency_ms["p90"] < block_s * 1e3  # capture -> written, the blocked writes included
    assert idx[-1] >= 110  # the newest frames survive to the end


def test_backend_failing_on_one_frame_is_isolated_and_counted(tmp_path, walk_px):
    """The backend raises on exactly one frame's pose: that frame is written with an error status and counted once;
    the others (batched with it or not) are fine and the run ends without an error."""
    bad = 7
    np.savez(tmp_path / "k.npz", keypoints=walk_px, format="h36m17")
    ones = np.ones((1, 17), np.float32)
    poison = lift_input(walk_px[bad][None], ones, 640, 480, DEFAULT_MIN_CONF)[0]
    backend = FakeBackend(poison=poison, delay=0.02)  # slow enough that waiting frames get batched
    sink = RecordingSink()
    st = Pipeline(open_source(str(tmp_path / "k.npz")), backend, None, [sink], queue_size=8, max_batch_frames=8).run()
    n = len(walk_px)
    assert st.error is None and st.frames_in == st.frames_out == n and st.dropped == 0
    assert st.failed == 1 and backend.raised >= 1
    status = {r[0]: r[2] for r in sink.rows}
    assert status[bad].startswith("error: hipart: RuntimeError: injected backend fault"), status[bad]
    assert sink.records[bad]["persons"] == [] and all(len(r["persons"]) == 1 for r in sink.records if r["frame"] != bad)
    assert all(s == "ok" for i, s in status.items() if i != bad) and sorted(status) == list(range(n))


def test_fake_backend_shapes():
    """The fake backend's Result has the shapes the Estimator expects (so the fault tests exercise the real path)."""
    res = FakeBackend().infer(np.zeros((2, 17, 2), np.float32))
    assert res.pose3d.shape == (2, 17, 3) and res.dense.shape == (2, 48, 2) and res.fine.shape == (2, 96, 2)
