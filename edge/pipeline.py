"""The real-time pipeline: capture -> detect -> HiPART -> sink, one thread per stage, bounded queues.

Live sources (camera, stream) drop the *oldest* queued frame when a stage falls behind, so latency
stays bounded; file sources block instead and nothing is dropped (frames in = frames out). Ctrl-C (SIGINT),
SIGTERM (docker stop, systemd), SIGHUP or the end of the stream drains what is in flight and closes every sink,
so outputs are always complete files; a second signal stops waiting for the queues. A failing frame is written
with its status and the run goes on; only a source lost for good
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

from edge.backends.base import Backend, BackendUnavailable
from edge.detectors import Detections
from edge.estimator import Estimator, FrameResult, error_status
from edge.occlusion import DEFAULT_MIN_CONF
from edge.sinks import Sink
from edge.smoothing import PoseSmoother
from edge.sources import Frame, Source, SourceError
from edge.temporal import TemporalStage

log = logging.getLogger("hipart.edge")

MAX_CONSECUTIVE_FAILURES = 25
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
_END = object()


@dataclass(eq=False)
class Item(FrameResult):
    """One frame travelling through the stages: the source frame, its capture time, and its FrameResult fields."""

    frame: Frame
    t_in: float  # perf_counter when captured

    def __post_init__(self) -> None:
        f = self.frame
        self.index, self.timestamp, self.width, self.height = f.index, f.timestamp, f.width, f.height


@dataclass
class RunStats:
    """What a run did: counts, throughput, per-stage latency, events, and the error if it stopped."""

    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0  # live sources only
    corrupt: int = 0
    failed: int = 0
    persons: int = 0
    persons_dropped: int = 0  # detected, but outside the frame or with too few confident joints: not lifted
    wall_s: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)  # mean per stage
    latency_ms: dict[str, float] = field(default_factory=dict)  # capture -> written: median, p90
    events: list[str] = field(default_factory=list)
    error: str | None = None
    interrupted: bool = False
    live: bool = False  # the source was live (camera, stream, --pace): latency is capture->output, not queueing
    signal: int | None = None  # the signal that stopped the run (SIGINT, SIGTERM, SIGHUP), if any
    outputs_failed: dict[str, str] = field(default_factory=dict)  # output path -> why it is incomplete
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
    """capture -> detect -> HiPART -> sinks: threads and queues around an `Estimator`.

    `estimator` is an Estimator, or a backend from which one is built with `detector`, `smoothing`, `min_conf`
    and `temporal` (those four go to the Estimator, so they must stay unset when an Estimator is given).
    """

    def __init__(
        self,
        source: Source,
        estimator: Estimator | Backend,
        detector: Callable[[np.ndarray], Detections] | None = None,
        sinks: list[Sink] | None = None,
        render: Callable[[Item, dict[str, float], float], np.ndarray] | None = None,
        smoothing: PoseSmoother | None = None,
        min_conf: float | None = None,
        queue_size: int = 4,
        on_frame: Callable[[Item, RunStats], None] | None = None,
        max_frames: int | None = None,
        max_seconds: float | None = None,
        max_batch_frames: int = 8,
        temporal: TemporalStage | None = None,
    ):
        if not isinstance(estimator, Estimator):
            min_conf = DEFAULT_MIN_CONF if min_conf is None else min_conf
            estimator = Estimator(estimator, detector, temporal, min_conf, smoothing)
        elif any(v is not None for v in (detector, smoothing, min_conf, temporal)):
            raise ValueError("an Estimator was given: set detector, smoothing, min_conf and temporal on it")
        self.source, self.estimator = source, estimator
        self.sinks = sinks or []
        self.render = render
        self.on_frame, self.max_frames, self.max_seconds = on_frame, max_frames, max_seconds
        self.max_batch_frames = max(1, max_batch_frames)
        self.stats = RunStats(live=source.live)
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
        self._first_failure: str | None = None

    # -- bookkeeping -------------------------------------------------------------------------
    def _dropped(self, item: Any) -> None:
        with self._lock:
            self.stats.dropped += 1

    def _fail(self, item: Item, stage: str, err: Exception) -> None:
        item.status = error_status(stage, err)
        with self._lock:  # an unavailable backend (server away) is waited out, not counted towards the stop rule
            self._fail_streak += not isinstance(err, BackendUnavailable)
            streak = self._fail_streak
        if streak == 1:
            log.warning("frame %d: %s", item.frame.index, item.status)
        self._first_failure = self._first_failure or item.status
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
        est = self.estimator
        while (item := inp.pop(self._abort)) is not _END:
            f = item.frame
            t0 = time.perf_counter()
            try:
                if f.status != "ok":
                    item.status = f.status
                elif f.keypoints is not None:
                    est.prepare(item, kpts_px=f.keypoints, conf=f.conf)
                elif est.detector is not None and f.image is not None:
                    est.prepare(item, image=f.image)
                if est.detector is not None and f.keypoints is None and f.status == "ok":
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
            if self.estimator.temporal is not None:
                items = self._temporal(items)
            for item in items:
                out.push(item, self._abort)
        if self.estimator.temporal is not None:  # seq2seq holds up to T frames: release them at the end
            for item in self._temporal_end():
                out.push(item, self._abort)
        out.push(_END, self._abort)

    def _temporal(self, items: list[Item]) -> list[Item]:
        temporal = self.estimator.temporal
        try:
            return temporal.process(items)
        except Exception as e:  # the per-frame 3D stays; the temporal buffer starts over
            for it in items:
                self._fail(it, "temporal", e)
            held = temporal.drop()  # earlier frames (seq2seq) first, then this batch, each once
            return held + [it for it in items if not any(it is h for h in held)]

    def _temporal_end(self) -> list[Item]:
        temporal = self.estimator.temporal
        try:
            return temporal.flush()
        except Exception as e:
            held = temporal.drop()
            for it in held:
                self._fail(it, "temporal", e)
            return held

    def _lift_batch(self, items: list[Item]) -> None:
        errors = self.estimator.lift(items)
        for item, err in zip(items, errors, strict=True):
            if err is not None:
                self._fail(item, "hipart", err)
            elif item.result is not None:
                self._fail_streak = 0

    # -- the sink stage runs in the caller's thread (GUI windows need the main thread) -----------
    def _emit(self, item: Item) -> None:
        t0 = time.perf_counter()
        image = self.render(item, dict(self._ema), self._fps()) if self.render is not None else None
        t1 = time.perf_counter()
        item.timings["render"] = (t1 - t0) * 1e3
        record = item.to_record()
        for s in self.sinks:
            try:
                s.write(record, image)
            except Exception as e:
                self.stats.outputs_failed[str(getattr(s, "path", s))] = str(e)
                raise
        now = time.perf_counter()
        item.timings["write"] = (now - t1) * 1e3
        st = self.stats
        st.frames_out += 1
        st.persons += 0 if item.result is None else len(item.result)
        st.persons_dropped += item.dropped_persons
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
        # Ctrl-C, SIGTERM and SIGHUP only set flags (no exception between two sinks' writes of the same frame).
        prev_handlers: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                prev_handlers[sig] = signal.signal(sig, lambda signum, frame: self._interrupt(signum))
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
            self._stop.set()
            for s in self.sinks:
                try:
                    s.close()
                except Exception as e:  # report, but still close the other sinks
                    path = str(getattr(s, "path", s))
                    self.stats.outputs_failed.setdefault(path, str(e))
                    self.stats.error = self.stats.error or f"closing {path} failed: {e}"
            for sig, handler in prev_handlers.items():
                signal.signal(sig, handler)
            try:
                self.source.close()
            except Exception:
                pass
            for t in threads:
                t.join(timeout=5)
            self._finish(t_start)
        return self.stats

    def _interrupt(self, signum: int = signal.SIGINT) -> None:
        if self.stats.interrupted:
            self._abort.set()  # a second signal: stop waiting for the queues
        self.stats.interrupted = True
        self.stats.signal = self.stats.signal or signum
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
        if st.error is None and st.frames_out and st.failed + st.corrupt == st.frames_out:
            first = self._first_failure or "corrupt (unreadable image)"
            st.error = (
                f"no frame could be processed ({st.failed} failed, {st.corrupt} corrupt of {st.frames_out}); "
                f"first: {first}"
            )
