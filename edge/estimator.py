"""The inference core every runtime path uses: image or 2D keypoints -> `FrameResult` (rtmlib-style `Estimator`).

The Estimator owns the input policy, once: sanitise the 2D keypoints (`edge.occlusion`), drop persons with too
few confident joints, normalise pixels to screen coordinates and mask low-confidence joints; then it calls the
backend as a pure model adapter (`Backend.infer` on that normalised, masked x_s), checks the outputs are finite,
optionally smooths or temporally lifts the 3D, and converts dense / fine back to pixels.

Tracking: with a `tracker` (`edge.tracking.PersonTracker`) every person gets a stable `track_id` and smoothing and
the temporal stage keep their state per track (dropped when the track ends); without one, the track id is the
person's index in the frame (persons are matched by index, state restarts when the person count changes).
`stateless=True` (image folders: independent images) skips tracking (ids = index) and restarts every per-track
state before each image, so no image carries state into the next.

    est = Estimator(backend, detector)
    res = est(image_bgr)                                   # or est.from_keypoints(kpts_px, conf, width, height)
    res.pose3d, res.dense, res.fine                        # [P,17,3] metres, [P,48,2] px, [P,96,2] px

`edge.pipeline.Pipeline` runs the same two steps (`prepare`, then the batched `lift`) in its detect and HiPART
threads.

Imports no torch (numpy only): with the onnxruntime or TensorRT backend the whole path runs without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edge.backends.base import Backend, BackendUnavailable, Result
from edge.camera_space import Intrinsics, root_translation
from edge.detectors import Detections
from edge.occlusion import DEFAULT_MIN_CONF, mask_low_confidence, sanitize_keypoints, usable_persons
from edge.smoothing import PoseSmoother
from hipart import skeleton
from hipart.camera import image_coordinates, normalize_screen_coordinates


class TrackerHook(Protocol):
    """What the Estimator needs of `edge.tracking.PersonTracker`."""

    ended: list[int]

    def __call__(self, kpts: np.ndarray, conf: np.ndarray | None = None) -> np.ndarray:
        """This frame's persons [P,17,2] px + confidence [P,17] -> their track ids [P]."""
        ...

    def reset(self) -> None:
        """Forget every track."""
        ...


class TemporalHook(Protocol):
    """What the Estimator needs of `edge.temporal.TemporalStage` (the import would be a cycle)."""

    mode: str

    def process(self, frames: Sequence[Any]) -> list[Any]:
        """Frames in order -> the frames whose 3D is final."""
        ...


def lift_input(kpts_px: np.ndarray, conf: np.ndarray, width: float, height: float, min_conf: float) -> np.ndarray:
    """HiPART's input x_s [P,17,2]: pixels normalised to screen coordinates, low-confidence joints masked."""
    x = normalize_screen_coordinates(np.asarray(kpts_px, np.float32), float(width), float(height))
    return mask_low_confidence(x, conf, min_conf)


def error_status(stage: str, err: BaseException) -> str:
    """The status a frame gets when `stage` fails on it."""
    return f"error: {stage}: {type(err).__name__}: {err}"[:300]


def _zeros(*shape: int) -> Any:
    return field(default_factory=lambda: np.zeros(shape, np.float32))


def _r(a: np.ndarray, nd: int) -> list:
    return np.round(np.asarray(a, np.float64), nd).tolist()


@dataclass(kw_only=True, eq=False)
class FrameResult:
    """One frame's persons: the 2D input, HiPART's output in pixels and metres, status and per-stage timings."""

    index: int = 0  # frame number (source order; the Estimator counts its own calls)
    timestamp: float = 0.0  # seconds (smoothing and the temporal stage use it)
    width: int = 0
    height: int = 0
    kpts: np.ndarray = _zeros(0, skeleton.NUM_JOINTS, 2)  # [P,17,2] pixels, sanitised, usable persons only
    conf: np.ndarray = _zeros(0, skeleton.NUM_JOINTS)  # [P,17]; 0 for NaN/inf/out-of-frame joints
    x_s: np.ndarray = _zeros(0, skeleton.NUM_JOINTS, 2)  # [P,17,2] normalised + masked: what the backend saw
    result: Result | None = None  # the backend's output (normalised dense/fine); None until lifted
    dense: np.ndarray = _zeros(0, skeleton.NUM_DENSE, 2)  # [P,48,2] pixels
    fine: np.ndarray = _zeros(0, skeleton.NUM_FINE, 2)  # [P,96,2] pixels
    dropped_persons: int = 0  # persons with fewer than MIN_VISIBLE_JOINTS confident joints (not lifted)
    batch_frames: int = 1  # frames that shared this frame's HiPART call
    status: str = "ok"  # "ok", "corrupt" or "error: <stage>: ..."
    temporal: str | None = None  # set when the temporal stage replaced the 3D pose (mode, T, lag)
    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [P]; person index if untracked
    tracked: bool = False  # track_ids come from a tracker (else they are the person index)
    ended_tracks: tuple[int, ...] = ()  # tracks that ended at this frame: their per-track state is dropped
    restart: bool = False  # drop every per-track state before this frame (stateless sources: independent images)
    intrinsics: Intrinsics | None = None  # camera intrinsics: each person's root is then placed in camera space
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds per stage

    @property
    def pose3d(self) -> np.ndarray:
        """[P,17,3] metres, root-relative, camera frame (after smoothing / the temporal stage)."""
        return self.result.pose3d if self.result is not None else np.zeros((0, skeleton.NUM_JOINTS, 3), np.float32)

    @property
    def q_s(self) -> np.ndarray:
        """Sparse token ids [P,16]."""
        return self.result.q_s if self.result is not None else np.zeros((0, skeleton.NUM_BONES), np.int64)

    @property
    def q_d(self) -> np.ndarray:
        """Dense token ids [P,48]."""
        return self.result.q_d if self.result is not None else np.zeros((0, skeleton.NUM_DENSE), np.int64)

    def __len__(self) -> int:
        return 0 if self.result is None else len(self.result)

    @property
    def root_cam(self) -> np.ndarray | None:
        """[P,3] metres: each person's root (pelvis) in camera coordinates, from its 3D and 2D joints and the
        intrinsics (edge/camera_space.py); None without intrinsics (the pose is then root-relative only)."""
        if self.intrinsics is None or not len(self):
            return None
        return root_translation(self.pose3d, self.kpts, self.conf, self.intrinsics, min_conf=DEFAULT_MIN_CONF)

    def track_id(self, p: int) -> int:
        """Person p's track id (its index when the frame was not tracked)."""
        return int(self.track_ids[p]) if len(self.track_ids) > p else p

    def to_record(self) -> dict[str, Any]:
        """The JSON-serialisable record of this frame (the JSONL line; the NPZ journal entry)."""
        roots = self.root_cam
        persons = [
            {
                "id": p,
                "track_id": self.track_id(p),
                "keypoints_2d": _r(self.kpts[p], 2),
                "confidence": _r(self.conf[p], 3),
                "dense_2d": _r(self.dense[p], 2),
                "fine_2d": _r(self.fine[p], 2),
                "pose_3d": _r(self.pose3d[p], 5),
                "tokens": {"sparse": self.q_s[p].tolist(), "dense": self.q_d[p].tolist()},
            }
            | ({"root_cam": None if not np.isfinite(roots[p]).all() else _r(roots[p], 4)} if roots is not None else {})
            for p in range(len(self))
        ]
        return {
            "frame": self.index,
            "timestamp": round(float(self.timestamp), 6),
            "status": self.status,
            "width": self.width,
            "height": self.height,
            "space": "camera" if self.intrinsics is not None else "root-relative",
            "persons": persons,
            "dropped_persons": self.dropped_persons,
            "batch_frames": self.batch_frames,
            "timings_ms": {k: round(v, 3) for k, v in self.timings.items()},
        } | ({"temporal": self.temporal} if self.temporal else {})


class Estimator:
    """BGR image (with a detector) or 2D keypoints -> FrameResult; the one per-frame path of every runtime."""

    def __init__(
        self,
        backend: Backend,
        detector: Callable[[np.ndarray], Detections] | None = None,
        temporal: TemporalHook | None = None,
        min_conf: float = DEFAULT_MIN_CONF,
        smoothing: PoseSmoother | None = None,
        tracker: TrackerHook | None = None,
        stateless: bool = False,
        intrinsics: Intrinsics | None = None,
    ):
        """`tracker`: stable track ids (None: the person index); `stateless`: every frame is an independent image."""
        self.backend, self.detector, self.temporal = backend, detector, temporal
        self.min_conf, self.smoothing = min_conf, smoothing
        self.tracker, self.stateless = tracker, stateless
        self.intrinsics = intrinsics  # with them every person's root is placed in camera space (root_cam)
        self._count = 0

    # -- one frame ---------------------------------------------------------------------------------
    def __call__(self, image: np.ndarray, timestamp: float | None = None) -> FrameResult:
        """One BGR image [H,W,3] -> its FrameResult; raises when a stage fails (needs a detector)."""
        if self.detector is None:
            raise ValueError("this Estimator has no detector: give it one, or call from_keypoints()")
        self._check_single()
        h, w = image.shape[:2]
        fr = self._new(w, h, timestamp)
        t0 = time.perf_counter()
        self.prepare(fr, image=image)
        fr.timings["detect"] = (time.perf_counter() - t0) * 1e3
        return self._lift_one(fr)

    def from_keypoints(
        self,
        kpts_px: np.ndarray,
        conf: np.ndarray | None,
        width: int,
        height: int,
        timestamp: float | None = None,
    ) -> FrameResult:
        """2D keypoints [P,17,2] in pixels (17-joint order) + confidence [P,17] (None: all 1) -> FrameResult."""
        self._check_single()
        fr = self._new(width, height, timestamp)
        t0 = time.perf_counter()
        self.prepare(fr, kpts_px=kpts_px, conf=conf)
        fr.timings["detect"] = (time.perf_counter() - t0) * 1e3
        return self._lift_one(fr)

    def _new(self, width: int, height: int, timestamp: float | None) -> FrameResult:
        fr = FrameResult(index=self._count, width=int(width), height=int(height))
        fr.timestamp = time.monotonic() if timestamp is None else float(timestamp)
        self._count += 1
        return fr

    def _check_single(self) -> None:
        if self.temporal is not None and self.temporal.mode == "seq2seq":
            raise ValueError("temporal seq2seq holds frames until T are collected: run it through the Pipeline")

    def _lift_one(self, fr: FrameResult) -> FrameResult:
        err = self.lift([fr])[0]
        if err is not None:
            raise err
        if self.temporal is not None:
            self.temporal.process([fr])
        return fr

    # -- the two steps the pipeline runs in its threads --------------------------------------------
    def prepare(
        self,
        out: FrameResult,
        image: np.ndarray | None = None,
        kpts_px: np.ndarray | None = None,
        conf: np.ndarray | None = None,
    ) -> FrameResult:
        """The input policy into `out` (its width/height set): detect (image) or take kpts_px/conf, sanitise,
        drop unusable persons, normalise and mask (x_s)."""
        if kpts_px is None:
            if image is None or self.detector is None:
                raise ValueError("prepare() needs keypoints, or an image and a detector")
            det = self.detector(image)
            kpts_px, conf = det.keypoints, det.conf
        elif conf is None:
            conf = np.ones(np.shape(kpts_px)[:2], np.float32)
        w, h = max(out.width, 1), max(out.height, 1)
        k, c = sanitize_keypoints(kpts_px, conf, w, h)
        keep = usable_persons(c, self.min_conf)
        out.dropped_persons = int((~keep).sum())
        out.kpts, out.conf = k[keep], c[keep]
        out.x_s = lift_input(out.kpts, out.conf, w, h, self.min_conf)
        out.intrinsics = self.intrinsics
        self.track(out)
        return out

    def track(self, out: FrameResult) -> FrameResult:
        """Give out's persons their track ids (tracker, else the index), in frame order; `prepare` calls it."""
        n = len(out.kpts)
        if self.stateless or self.tracker is None:
            if self.stateless and self.tracker is not None:
                self.tracker.reset()
            out.track_ids, out.tracked, out.ended_tracks = np.arange(n, dtype=np.int64), False, ()
            out.restart = self.stateless
            return out
        out.track_ids = np.asarray(self.tracker(out.kpts, out.conf), np.int64).reshape(n)
        out.tracked, out.ended_tracks, out.restart = True, tuple(int(i) for i in self.tracker.ended), False
        return out

    def lift(self, frames: Sequence[FrameResult]) -> list[Exception | None]:
        """HiPART on prepared frames, all persons in one backend call (dynamic batching), in frame order.

        A failing batch is retried frame by frame so only the failing frame loses its result (not when the backend
        is unavailable, e.g. its server is down: then every frame of the batch fails at once); returns, per
        frame, the error that failed it (its status says so too) or None. Smoothing runs here, in frame order.
        """
        t0 = time.perf_counter()
        todo = [fr for fr in frames if len(fr.x_s) and fr.status == "ok"]
        results: dict[int, Result] = {}
        errors: dict[int, Exception] = {}
        if todo:
            try:
                res = self.backend.infer(np.concatenate([fr.x_s for fr in todo]))
                bounds = np.cumsum([0] + [len(fr.x_s) for fr in todo])
                for i, fr in enumerate(todo):
                    results[id(fr)] = res.slice(int(bounds[i]), int(bounds[i + 1]))
            except BackendUnavailable as e:  # the backend is away (server down): every frame fails, no retries
                for fr in todo:
                    errors[id(fr)] = e
                    fr.status = error_status("hipart", e)
            except Exception:  # isolate the frame that fails: run them one by one
                for fr in todo:
                    try:
                        results[id(fr)] = self.backend.infer(fr.x_s)
                    except Exception as e:  # bad input or backend failure on one frame
                        errors[id(fr)] = e
                        fr.status = error_status("hipart", e)
        n = len(frames)
        per_frame = (time.perf_counter() - t0) * 1e3 / max(n, 1)
        for fr in frames:  # in frame order, so smoothing sees time moving forward
            if self.smoothing is not None:
                self.smoothing.forget(fr.ended_tracks, fr.restart)
            res = results.get(id(fr))
            if res is not None:
                try:
                    self._finish(fr, res, n)
                except Exception as e:
                    errors[id(fr)] = e
                    fr.status = error_status("hipart", e)
            elif self.smoothing is not None and fr.status == "ok" and not fr.tracked:  # untracked: restarts
                self.smoothing(np.zeros((0, skeleton.NUM_JOINTS, 3), np.float32), fr.timestamp)
            fr.timings["hipart"] = per_frame
            fr.batch_frames = n
        return [errors.get(id(fr)) for fr in frames]

    def _finish(self, fr: FrameResult, res: Result, n: int) -> None:
        if not (np.isfinite(res.pose3d).all() and np.isfinite(res.dense).all() and np.isfinite(res.fine).all()):
            raise FloatingPointError("backend returned NaN/inf")
        if self.smoothing is not None:
            ids = fr.track_ids if fr.tracked and len(fr.track_ids) == len(res) else None
            res.pose3d = self.smoothing(res.pose3d, fr.timestamp, ids)
        w, h = max(fr.width, 1), max(fr.height, 1)
        fr.result = res
        fr.dense = image_coordinates(res.dense, w, h)
        fr.fine = image_coordinates(res.fine, w, h)
        fr.timings.update({f"hipart.{k}": v / n for k, v in res.timings.items() if k != "total"})

    def close(self) -> None:
        """Release the detector and the backend."""
        for part in (self.detector, self.backend):
            close = getattr(part, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> Estimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
