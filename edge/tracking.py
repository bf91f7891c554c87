"""Multi-person tracking for hipart-run: a stable `track_id` per detected person, from its 17 2D keypoints.

`PersonTracker` wraps norfair (https://github.com/tryolabs/norfair, Tryolabs, BSD-3-Clause): one constant-velocity
Kalman filter per joint, per-joint confidence gating (joints below `min_conf` neither match nor update), and
association on the mean distance of the joints both sides see, divided by the person's size in pixels (so the
threshold holds for near and far persons).

Why norfair (synthetic benchmark: 2, 3 and 4 persons walking across a 1280x720 frame and crossing each other,
5 seeds x 300 frames each, detector order shuffled every frame, 10 % of the joints at low confidence; "hard" adds
6 px noise instead of 3 px, 15 % instead of 10 % of the detections dropped, equal speeds and the farther person
missed 70 % of the time while the two overlap; 2 CPU cores shared):

    tracker                                 ID switches / 1,000 person-frames   µs / frame
                                            easy        hard                    (noise of a shared machine)
    norfair, keypoints (this module)        0.00        0.27                    250-370
    norfair, IoU of keypoint boxes          0.00        1.64                    230-480
    ByteTrack (roboflow `trackers` 2.6.1)   0.26        1.92                    170-320

ByteTrack matches boxes only, so two persons crossing at the same height look alike to it; norfair tracks every
joint. supervision 0.31 no longer ships ByteTrack (moved to roboflow `trackers`, which requires `opencv-python`
and would shadow our `opencv-python-headless`). norfair 2.3.0 declares numpy<2 but runs on numpy 2 (its default
tracking path is plain numpy + scipy): it is installed with --no-deps (requirements-nodeps.txt), its imports
(scipy, filterpy, rich) pinned in requirements-ci.txt. It is imported when a PersonTracker is built, so the
Estimator and the torch-free deployment run without it.

Track ids: assigned at once (no -1 "tentative" state): ints from 0 in birth order, never reused within a tracker
(until `reset()`). A track ends when its hit counter runs out: +1 per frame it is matched (capped at `max_age`),
-1 per frame it is not, so an established track survives `max_age` frames without a detection and a track seen
once (a false detection) ends after a frame or two. `ended` lists the ids that ended in the last update, so the
per-track state downstream (smoothing, temporal buffers) is dropped with them. Per-image sources: the Estimator's
`stateless` flag skips tracking (ids = person index) and resets every per-track state before each image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.occlusion import DEFAULT_MIN_CONF
from hipart import skeleton

DEFAULT_MAX_AGE = 30  # frames an established track survives without a detection (1 s at 30 FPS)
DEFAULT_DISTANCE = 0.5  # mean joint distance / person size above which a detection cannot match a track


def unique_ids(track_ids: Any, n: int) -> list[int]:
    """A frame's track ids as ints, checked unique (per-track state is keyed by them); ValueError otherwise."""
    ids = [int(i) for i in track_ids]
    if len(ids) != n or len(set(ids)) != n:
        raise ValueError(f"track ids must be unique per frame, one per person ({n}), got {ids}")
    return ids


def _norfair() -> Any:
    try:
        import norfair
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            f"tracking needs norfair ({e}): pip install scipy filterpy rich && pip install --no-deps norfair==2.3.0"
        ) from None
    return norfair


class PersonTracker:
    """Frame by frame: persons' keypoints [P,17,2] px + confidence [P,17] -> a stable int track id per person."""

    def __init__(
        self, max_age: int = DEFAULT_MAX_AGE, distance: float = DEFAULT_DISTANCE, min_conf: float = DEFAULT_MIN_CONF
    ):
        if max_age < 1:
            raise ValueError(f"max_age must be >= 1 frame, got {max_age}")
        self.max_age, self.distance, self.min_conf = int(max_age), float(distance), float(min_conf)
        self._nf = _norfair()
        self.reset()

    def reset(self) -> None:
        """Forget every track (the next persons are new tracks; ids start again from 0)."""
        self._tracker = self._nf.Tracker(
            distance_function="euclidean",  # replaced below (a callable here would log a speed warning)
            distance_threshold=self.distance,
            hit_counter_max=self.max_age,
            initialization_delay=0,
            detection_threshold=self.min_conf,
        )
        self._tracker.distance_function = self._nf.distances.ScalarDistance(self._match_distance)
        self._ids: dict[int, int] = {}  # norfair's per-tracker initializing_id of a live object -> our track id
        self._next = 0
        self.ended: list[int] = []  # track ids that ended in the last update

    def _match_distance(self, det: Any, obj: Any) -> float:
        """Mean distance of the joints both see (else the detection's confident ones), over the detection's size."""
        conf = det.scores >= self.min_conf
        seen = conf & np.asarray(obj.live_points, bool)
        if seen.sum() < 2:  # a young track: its joints are not "live" yet
            seen = conf if conf.sum() >= 2 else np.ones_like(conf)
        pts = det.points[seen]
        size = float(np.ptp(pts, axis=0).max()) + 1.0
        return float(np.linalg.norm(pts - obj.estimate[seen], axis=1).mean()) / size

    @property
    def active(self) -> list[int]:
        """Ids of the tracks alive now (matched recently enough), in birth order."""
        return sorted(self._ids.values())

    def __call__(self, kpts: np.ndarray, conf: np.ndarray | None = None) -> np.ndarray:
        """This frame's persons -> their track ids [P] int64 (every frame, even with no person, ages the tracks)."""
        k = np.nan_to_num(np.asarray(kpts, np.float32).reshape(-1, skeleton.NUM_JOINTS, 2))
        c = np.ones(k.shape[:2], np.float32) if conf is None else np.asarray(conf, np.float32).reshape(k.shape[:2])
        c = np.nan_to_num(c)
        dets = [self._nf.Detection(k[p], scores=c[p]) for p in range(len(k))]
        self._tracker.update(dets)
        index = {id(d): p for p, d in enumerate(dets)}
        out = np.full(len(dets), -1, np.int64)
        alive: dict[int, int] = {}
        for obj in self._tracker.tracked_objects:
            if not obj.hit_counter_is_positive:
                continue
            key = obj.initializing_id  # set at creation, unique within this tracker
            if key not in self._ids:
                self._ids[key] = self._next
                self._next += 1
            alive[key] = self._ids[key]
            p = index.get(id(obj.last_detection))
            if p is not None:
                out[p] = self._ids[key]
        self.ended = sorted(tid for key, tid in self._ids.items() if key not in alive)
        self._ids = alive
        for p in np.flatnonzero(out < 0):  # unmatched but not born (cannot happen with delay 0): a fresh id
            out[p] = self._next
            self._next += 1
        return out
