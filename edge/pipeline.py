"""The real-time pipeline: capture -> detect -> HiPART -> sink, one thread per stage, bounded queues.

Live sources (camera, stream) drop the *oldest* queued frame when a stage falls behind, so latency
stays bounded; file sources block instead and nothing is dropped (frames in = frames out). Ctrl-C or
the end of the stream drains what is in flight and closes every sink, so outputs are always complete
files. A failing frame is written with its status and the run goes on; only a source lost for good
or repeated failures stop the run (reported in `RunStats.error`).
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.backends.base import Backend, Result
from edge.detectors import Detections
from edge.occlusion import sanitize_keypoints, usable_persons
from edge.sinks import Sink
from edge.smoothing import PoseSmoother
from edge.sources import Frame, Source, SourceError
from edge.temporal import TemporalStage
from hipart.camera import image_coordinates, normalize_screen_coordinates

log = logging.getLogger("hipart.edge")

MAX_CONSECUTIVE_FAILURES = 25
_END = object()


@dataclass
class Item:
    """One frame travelling through the stages, collecting results and timings."""

    frame: Frame
    t_in: float  # perf_counter when captured
    kpts: np.ndarray | None = None  # [P,17,2] pixels (usable persons only)
    conf: np.ndarray | None = None
    result: Result | None = None
    dense_px: np.ndarray | None = None
    fine_px: np.ndarray | None = None
    dropped_persons: int = 0
    batch_frames: int = 1  # frames that shared this frame's HiPART call (dynamic batching)
    status: str = "ok"
    temporal: str | None = None  # set when the temporal stage replaced the 3D pose (mode, T, lag)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class RunStats:
    """What a run did: counts, throughput, per-stage latency, events, and the error if it stopped."""

    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0  # live sources only
    corrupt: int = 0
    failed: int = 0
    persons: int = 0
    wall_s: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)  # mean per stage
    latency_ms: dict[str, float] = field(default_factory=dict)  # capture -> written: median, p90
    events: list[str] = field(default_factory=list)
    error: str | None = None
    interrupted: bool = False
    banner: str | None = None  # set by hipart-run when the weights are untrained

    @property
    def fps(self) -> float:
        """Frames written per wall-clock second."""
        return self.frames_out / self.wall_s if self.wall_s > 0 else 0.0


class _Stage(queue.Queue):
    """A bounded queue that either blocks (files) or drops its oldest item (live sources)."""

    def __init__(self, size: int, drop_oldest: bool, on_drop: Callable[[Any], None]):
        super().__init__(maxsize=size)
        self.drop_oldest, self.on_drop = drop_oldest, on_drop

    def pop(self, abort: threading.Event) -> Any:
        """Next item; the end marker once the run is aborted (so no worker blocks forever)."""
        while not abort.is_set():
            try:
                return self.get(timeout=0.1)
            except queue.Empty:
                continue
        return _END

    def push(self, item: Any, stop: threading.Event) -> None:
        """Put an item: block (files) or drop the oldest (live); give up once `stop` is set."""
        if item is _END:  # the end marker is never dropped
            while True:
                try:
                    self.put(item, timeout=0.1)
                    return
                except queue.Full:
                    if self.drop_oldest:
                        self._drop_one()
                    elif stop.is_set():  # aborted: nobody will read it
                        return
        while not stop.is_set():
            try:
                self.put(item, timeout=0.05)
                return
            except queue.Full:
                if self.drop_oldest:
                    self._drop_one()

    def _drop_one(self) -> None:
        try:
            old = self.get_nowait()
        except queue.Empty:
            return
        if old is _END:  # keep the end marker
            self.put_nowait(old)
        else:
            self.on_drop(old)


class Pipeline:
    """capture -> detect -> HiPART -> sinks; the pipeline never knows which backend or detector it has."""

    def __init__(
        self,
        source: Source,
        backend: Backend,
        detector: Callable[[np.ndarray], Detections] | None = None,
        sinks: list[Sink] | None = None,
        render: Callable[[Item, dict[str, float], float], np.ndarray] | None = None,
        smoothing: PoseSmoother | None = None,
        min_conf: float = 0.3,
        queue_size: int = 4,
        on_frame: Callable[[Item, RunStats], None] | None = None,
        max_frames: int | None = None,
        max_seconds: float | None = None,
        max_batch_frames: int = 8,
        temporal: TemporalStage | None = None,
    ):
        self.source, self.backend, self.detector = source, backend, detector
        self.temporal = temporal
        self.sinks = sinks or []
        self.render, self.smoothing, self.min_conf = render, smoothing, min_conf
        self.on_frame, self.max_frames, self.max_seconds = on_frame, max_frames, max_seconds
        self.max_batch_frames = max(1, max_batch_frames)
        self.stats = RunStats()
        self._stop = threading.Event()  # stop capturing (Ctrl-C, error, max_frames)
        self._abort = threading.Event()  # stop everything now (a sink failed)
        live = source.live
        self._q = [_Stage(queue_size, live, self._dropped) for _ in range(3)]
        self._lock = threading.Lock()
        self._ema: dict[str, float] = {}
        self._fps_times: deque[float] = deque(maxlen=30)
        self._latencies: deque[float] = deque(maxlen=20000)  # bounded: runs may last for days
        self._stage_sum: dict[str, float] = {}
        self._fail_streak = 0

    # -- bookkeeping -------------------------------------------------------------------------
    def _dropped(self, item: Any) -> None:
        with self._lock:
            self.stats.dropped += 1

    def _fail(self, item: Item, stage: str, err: Exception) -> None:
        item.status = f"error: {stage}: {type(err).__name__}: {err}"[:300]
        with self._lock:
            self._fail_streak += 1
            streak = self._fail_streak
        if streak == 1:
            log.warning("frame %d: %s", item.frame.index, item.status)
        if streak >= MAX_CONSECUTIVE_FAILURES:
            self.stats.error = f"{MAX_CONSECUTIVE_FAILURES} frames in a row failed; last: {item.status}"
            self._stop.set()

    # -- stages ------------------------------------------------------------------------------
    def _capture(self) -> None:
        out = self._q[0]
        deadline = None if self.max_seconds is None else time.perf_counter() + self.max_seconds
        try:
            while not self._stop.is_set():
                if deadline is not None and time.perf_counter() > deadline:
                    break
                t0 = time.perf_counter()
                try:
                    frame = self.source.read()
                except SourceError as e:
                    self.stats.error = str(e)
                    break
                if frame is None:
                    break
                item = Item(frame, time.perf_counter())
                item.timings["capture"] = (item.t_in - t0) * 1e3
                with self._lock:
                    self.stats.frames_in += 1
                    n = self.stats.frames_in
                out.push(item, self._abort)
                if self.max_frames is not None and n >= self.max_frames:
                    break
        except Exception as e:  # an unexpected source failure ends the stream, cleanly
            self.stats.error = f"source failed: {type(e).__name__}: {e}"
        finally:
            out.push(_END, self._abort)

    def _detect(self) -> None:
        inp, out = self._q[0], self._q[1]
        while (item := inp.pop(self._abort)) is not _END:
            f = item.frame
            t0 = time.perf_counter()
            try:
                if f.status != "ok":
                    item.status = f.status
                    k, c = np.zeros((0, 17, 2), np.float32), np.zeros((0, 17), np.float32)
                elif f.keypoints is not None:
                    k, c = f.keypoints, f.conf if f.conf is not None else np.ones(f.keypoints.shape[:2], np.float32)
                elif self.detector is not None and f.image is not None:
                    det = self.detector(f.image)
                    k, c = det.keypoints, det.conf
                else:
                    k, c = np.zeros((0, 17, 2), np.float32), np.zeros((0, 17), np.float32)
                k, c = sanitize_keypoints(k, c, max(f.width, 1), max(f.height, 1))
                keep = usable_persons(c, self.min_conf)
                item.dropped_persons = int((~keep).sum())
                item.kpts, item.conf = k[keep], c[keep]
                if self.detector is not None and f.keypoints is None and f.status == "ok":
                    self._fail_streak = 0
            except Exception as e:  # a detector crash on one frame must not end the run
                self._fail(item, "detect", e)
            item.timings["detect"] = (time.perf_counter() - t0) * 1e3
            out.push(item, self._abort)
        out.push(_END, self._abort)

    def _lift(self) -> None:
        inp, out = self._q[1], self._q[2]
        ended = False
        while not ended and (first := inp.pop(self._abort)) is not _END:
            items = [first]
            # Dynamic batching: frames already waiting (never waited for) go through HiPART in one call.
            while len(items) < self.max_batch_frames:
                try:
                    nxt = inp.get_nowait()
                except queue.Empty:
                    break
                if nxt is _END:
                    ended = True
                    break
                items.append(nxt)
            self._lift_batch(items)
            if self.temporal is not None:
                items = self._temporal(items)
            for item in items:
                out.push(item, self._abort)
        if self.temporal is not None:  # seq2seq holds up to T frames: release them at the end
            for item in self._temporal_end():
                out.push(item, self._abort)
        out.push(_END, self._abort)

    def _temporal(self, items: list[Item]) -> list[Item]:
        try:
            return self.temporal.process(items)
        except Exception as e:  # the per-frame 3D stays; the temporal buffer starts over
            for it in items:
                self._fail(it, "temporal", e)
            held = self.temporal.drop()  # earlier frames (seq2seq) first, then this batch, each once
            return held + [it for it in items if not any(it is h for h in held)]

    def _temporal_end(self) -> list[Item]:
        try:
            return self.temporal.flush()
        except Exception as e:
            held = self.temporal.drop()
            for it in held:
                self._fail(it, "temporal", e)
            return held

    def _lift_batch(self, items: list[Item]) -> None:
        t0 = time.perf_counter()
        todo = [it for it in items if it.kpts is not None and len(it.kpts) and it.status == "ok"]
        results: dict[int, Result] = {}
        if todo:
            try:
                xs = [
                    normalize_screen_coordinates(it.kpts, float(it.frame.width), float(it.frame.height)) for it in todo
                ]
                res = self.backend.run(np.concatenate(xs), np.concatenate([it.conf for it in todo]))
                bounds = np.cumsum([0] + [len(it.kpts) for it in todo])
                for i, it in enumerate(todo):
                    results[id(it)] = res.slice(int(bounds[i]), int(bounds[i + 1]))
            except Exception:  # isolate the frame that fails: run them one by one
                for it in todo:
                    try:
                        x = normalize_screen_coordinates(it.kpts, float(it.frame.width), float(it.frame.height))
                        results[id(it)] = self.backend.run(x, it.conf)
                    except Exception as e:  # bad input or backend failure on one frame
                        self._fail(it, "hipart", e)
        per_item = (time.perf_counter() - t0) * 1e3 / len(items)
        for item in items:  # in frame order, so smoothing sees time moving forward
            f = item.frame
            res = results.get(id(item))
            if res is not None:
                try:
                    if not (np.isfinite(res.pose3d).all() and np.isfinite(res.fine).all()):
                        raise FloatingPointError("backend returned NaN/inf")
                    if self.smoothing is not None:
                        res.pose3d = self.smoothing(res.pose3d, f.timestamp)
                    w, h = float(f.width), float(f.height)
                    item.result = res
                    item.dense_px = image_coordinates(res.dense, w, h)
                    item.fine_px = image_coordinates(res.fine, w, h)
                    item.timings.update({f"hipart.{k}": v / len(items) for k, v in res.timings.items() if k != "total"})
                    self._fail_streak = 0
                except Exception as e:
                    self._fail(item, "hipart", e)
            elif self.smoothing is not None and item.status == "ok":
                self.smoothing(np.zeros((0, 17, 3), np.float32), f.timestamp)
            item.timings["hipart"] = per_item
            item.batch_frames = len(items)

    # -- the sink stage runs in the caller's thread (GUI windows need the main thread) -----------
    def _emit(self, item: Item) -> None:
        t0 = time.perf_counter()
        image = self.render(item, dict(self._ema), self._fps()) if self.render is not None else None
        t1 = time.perf_counter()
        item.timings["render"] = (t1 - t0) * 1e3
        record = frame_record(item)
        for s in self.sinks:
            s.write(record, image)
        now = time.perf_counter()
        item.timings["write"] = (now - t1) * 1e3
        st = self.stats
        st.frames_out += 1
        st.persons += 0 if item.result is None else len(item.result)
        st.corrupt += item.status == "corrupt"
        st.failed += item.status.startswith("error")
        self._fps_times.append(now)
        self._latencies.append((now - item.t_in) * 1e3)
        for k, v in item.timings.items():
            self._stage_sum[k] = self._stage_sum.get(k, 0.0) + v
            self._ema[k] = v if k not in self._ema else 0.9 * self._ema[k] + 0.1 * v
        if self.on_frame is not None:
            self.on_frame(item, st)

    def _fps(self) -> float:
        t = self._fps_times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def stop(self) -> None:
        """Stop capturing; frames already in flight are still processed and written."""
        self._stop.set()

    def run(self) -> RunStats:
        """Run to the end of the stream (or Ctrl-C / a fatal error); sinks are always closed."""
        threads = [
            threading.Thread(target=fn, name=f"hipart-{name}", daemon=True)
            for name, fn in (("capture", self._capture), ("detect", self._detect), ("lift", self._lift))
        ]
        t_start = time.perf_counter()
        try:
            for s in self.sinks:
                s.start()
        except Exception as e:
            self.stats.error = f"cannot open outputs: {e}"
            self.source.close()
            self._finish(t_start)
            return self.stats
        for t in threads:
            t.start()
        # Ctrl-C only sets flags (no KeyboardInterrupt between two sinks' writes of the same frame).
        prev_handler = None
        if threading.current_thread() is threading.main_thread():
            prev_handler = signal.signal(signal.SIGINT, lambda signum, frame: self._interrupt())
        try:
            while True:
                try:
                    item = self._q[2].get(timeout=0.1)
                except queue.Empty:
                    continue
                except KeyboardInterrupt:
                    self._interrupt()
                    continue
                if item is _END:
                    break
                try:
                    self._emit(item)
                except KeyboardInterrupt:
                    self._interrupt()
        except BaseException as e:
            self._abort.set()
            self._stop.set()
            if not isinstance(e, Exception):
                raise
            self.stats.error = f"writing outputs failed: {type(e).__name__}: {e}"
        finally:
            if prev_handler is not None:
                signal.signal(signal.SIGINT, prev_handler)
            self._stop.set()
            for s in self.sinks:
                try:
                    s.close()
                except Exception as e:  # report, but still close the other sinks
                    self.stats.error = self.stats.error or f"closing {getattr(s, 'path', s)} failed: {e}"
            try:
                self.source.close()
            except Exception:
                pass
            for t in threads:
                t.join(timeout=5)
            self._finish(t_start)
        return self.stats

    def _interrupt(self) -> None:
        if self.stats.interrupted:
            self._abort.set()  # a second Ctrl-C: stop waiting for the queues
        self.stats.interrupted = True
        self._stop.set()

    def _finish(self, t_start: float) -> None:
        st = self.stats
        st.wall_s = time.perf_counter() - t_start
        n = max(st.frames_out, 1)
        st.stage_ms = {k: v / n for k, v in self._stage_sum.items()}
        if self._latencies:
            lat = np.asarray(self._latencies)
            st.latency_ms = {"median": float(np.median(lat)), "p90": float(np.percentile(lat, 90))}
        st.events = list(self.source.events)


def _r(a: np.ndarray | None, nd: int) -> list:
    return [] if a is None else np.round(np.asarray(a, np.float64), nd).tolist()


def frame_record(item: Item) -> dict[str, Any]:
    """The JSON-serialisable record of one frame (the JSONL line; the NPZ journal entry)."""
    f, res = item.frame, item.result
    persons = []
    if res is not None:
        for p in range(len(res)):
            persons.append(
                {
                    "id": p,
                    "keypoints_2d": _r(item.kpts[p], 2),
                    "confidence": _r(item.conf[p], 3),
                    "dense_2d": _r(item.dense_px[p], 2),
                    "fine_2d": _r(item.fine_px[p], 2),
                    "pose_3d": _r(res.pose3d[p], 5),
                    "tokens": {"sparse": res.q_s[p].tolist(), "dense": res.q_d[p].tolist()},
                }
            )
    return {
        "frame": f.index,
        "timestamp": round(float(f.timestamp), 6),
        "status": item.status,
        "width": f.width,
        "height": f.height,
        "persons": persons,
        "dropped_persons": item.dropped_persons,
        "batch_frames": item.batch_frames,
        "timings_ms": {k: round(v, 3) for k, v in item.timings.items()},
    } | ({"temporal": item.temporal} if item.temporal else {})
