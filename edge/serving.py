"""`hipart-serve` as a library: HiPART on Ray Serve for many streams, behind the HTTP API of docs/SERVING.md.

Two kinds of deployment:

- `Ingress` (`--replicas N`): parses and checks each request (a malformed one is a 400, never a crash), applies the
  Estimator's input policy (`Estimator.prepare`: sanitise, drop unusable persons, normalise, mask), and hands it to
  one `@serve.batch` queue shared by /v1/infer and /v1/lift: every request of a batch goes through ONE
  `Estimator.lift` call (all persons concatenated into one `backend.infer`, split back, pixels out).
- `TemporalShard` (`--temporal`, S deployments named temporal-0..S-1, one replica each): the causal temporal stage's
  ring buffers, one `TemporalStage` per stream id. A stream lives on shard crc32(stream_id) % S only, so its state
  is in exactly one place; a shard that restarts has lost its buffers and its streams warm up again. Streams idle
  for `--stream-timeout` seconds are dropped. A frame sent again with the stream's last timestamp (a client's retry)
  is answered as that frame was and not pushed twice, so retrying a /v1/lift with the same timestamp is safe.

The backend is built by `edge.run.build_runtime`, the builder hipart-run uses, with the same model flags.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from starlette.requests import Request
from starlette.responses import JSONResponse

from edge.backends.base import Result
from edge.camera_space import Intrinsics
from edge.estimator import Estimator, FrameResult
from edge.occlusion import DEFAULT_MIN_CONF, MIN_VISIBLE_JOINTS, sanitize_keypoints, usable_persons
from edge.temporal import TemporalStage, load_temporal
from hipart import skeleton

if TYPE_CHECKING:
    from hipart.models.temporal import TemporalLifter

log = logging.getLogger("hipart.serve")

INFER_PATH, LIFT_PATH, HEALTH_PATH = "/v1/infer", "/v1/lift", "/v1/health"
SHARD_WAIT_S = 60.0  # how long a request waits for a restarting temporal shard before it is answered without it
# How long the ingress waits for a request's body. Serve's proxy re-sends a request whose replica died as it took it
# to another replica, but without the body it already handed over: without this limit that request would hang until
# the client gives up (seen with Ray 2.60 when an ingress replica was killed); with it, it gets a 503 to retry.
BODY_WAIT_S = 10.0
MAX_STREAM_ID = 256  # characters
SERVE_BATCHES = 16  # Serve batches of one replica that may wait for the backend at once (merged into one call)


class RequestError(ValueError):
    """A malformed request: answered with HTTP 400 and this message."""


@dataclass
class ServeOptions:
    """Everything `hipart-serve` accepts (see edge/cli_serve.py for the flags)."""

    backend: str = "onnxruntime"
    artifacts: str | None = None  # absolute: replicas may start in another working directory
    device: str = "auto"
    checkpoint: str | None = None
    random_weights: str | None = None
    config: str = "paper"
    min_conf: float = DEFAULT_MIN_CONF
    threads: int = 1  # CPU threads of each ingress replica's backend
    replicas: int = 1
    num_cpus: float = 1.0  # Ray CPUs reserved per ingress replica
    num_gpus: float = 0.0  # Ray GPUs per ingress replica
    max_batch_size: int = 16  # requests per backend call
    batch_wait_timeout_s: float = 0.0  # Serve's window to fill a batch; 0: what is waiting when the backend is free
    max_persons_per_request: int = 64
    max_queue: int = 256  # requests one ingress replica holds before it answers 503
    temporal: str | None = None  # temporal lifter checkpoint, or "default"
    temporal_shards: int = 2
    shard_cpus: float = 0.5
    stream_timeout: float = 60.0  # seconds without a frame before a stream's buffer is dropped
    max_gap: float = 0.5  # seconds between two frames of a stream beyond which its buffer restarts (warm-up)
    ort_mode: str = "hipart"  # onnxruntime execution mode of the replicas ("auto": the backend's own choice)
    app_name: str = "hipart"
    host: str = "127.0.0.1"
    port: int = 8000
    address: str | None = None  # None: start a local Ray instance; "auto" or "ray://host:port": join a cluster

    def reserved_cpus(self) -> float:
        """Ray CPUs the application reserves (ingress replicas + temporal shards)."""
        return self.replicas * self.num_cpus + (self.temporal_shards * self.shard_cpus if self.temporal else 0.0)


# -- requests ----------------------------------------------------------------------------------------------------
def _json_object(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise RequestError(f"the body is not JSON ({e})") from None
    if not isinstance(obj, dict):
        raise RequestError(f"the body must be a JSON object, got {type(obj).__name__}")
    return obj


def _check_keys(obj: dict[str, Any], required: Sequence[str], optional: Sequence[str]) -> None:
    missing = [k for k in required if k not in obj]
    if missing:
        raise RequestError(f"missing key(s) {', '.join(missing)} (required: {', '.join(required)})")
    unknown = sorted(set(obj) - set(required) - set(optional))
    if unknown:
        raise RequestError(f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join([*required, *optional])})")


def _persons_list(value: Any, name: str, max_persons: int) -> list:
    if not isinstance(value, list):
        raise RequestError(f"{name} must be a list (one entry per person), got {type(value).__name__}")
    if len(value) > max_persons:
        raise RequestError(f"{name} has {len(value)} persons; this server takes at most {max_persons} per request")
    return value


def _numbers(value: Any, name: str, tail: tuple[int, ...]) -> np.ndarray:
    """value as float32 [P, *tail] of finite numbers, else RequestError naming `name` and the shape."""
    want = f"[P, {', '.join(map(str, tail))}]"
    if isinstance(value, list) and not value:
        return np.zeros((0, *tail), np.float32)
    try:
        a = np.asarray(value)
    except ValueError:  # ragged nesting
        raise RequestError(f"{name} must be numbers of shape {want}; its nesting is ragged") from None
    if a.dtype.kind not in "iuf":
        raise RequestError(f"{name} must hold numbers only (of shape {want}), found {a.dtype.kind!r} values")
    if a.shape[1:] != tail or a.ndim != len(tail) + 1:
        raise RequestError(f"{name} must have shape {want}, got {list(a.shape)}")
    with np.errstate(over="ignore"):
        a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise RequestError(f"{name} holds non-finite numbers (NaN, inf or beyond float32); give a missing joint "
                           "confidence 0 and any finite position instead")  # fmt: skip
    return a


def _finite_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"{name} must be a finite number, got {value!r}"[:200])
    return float(value)


def parse_infer(body: bytes, max_persons: int) -> np.ndarray:
    """A /v1/infer body -> x_s [P,17,2] float32 (normalised, masked: the Backend.infer contract); else RequestError."""
    obj = _json_object(body)
    _check_keys(obj, ("x_s",), ())
    return _numbers(_persons_list(obj["x_s"], "x_s", max_persons), "x_s", (skeleton.NUM_JOINTS, 2))


@dataclass
class LiftRequest:
    """A parsed /v1/lift body."""

    width: int
    height: int
    keypoints: np.ndarray  # [P,17,2] pixels
    confidence: np.ndarray  # [P,17]
    stream_ids: list[str | None]  # [P]
    timestamp: float | None = None
    intrinsics: Intrinsics | None = None
    temporal: bool = False


LIFT_REQUIRED = ("width", "height", "keypoints")
LIFT_OPTIONAL = ("confidence", "stream_id", "stream_ids", "timestamp", "intrinsics", "temporal")


def _size(value: Any, name: str) -> int:
    v = _finite_number(value, name)
    if v < 1 or v != int(v):
        raise RequestError(f"{name} must be a whole number of pixels >= 1, got {value!r}")
    return int(v)


def _stream_ids(obj: dict[str, Any], n: int) -> list[str | None]:
    if "stream_id" in obj and "stream_ids" in obj:
        raise RequestError("give stream_id (one person) or stream_ids (one per person), not both")
    if "stream_id" in obj:
        if n != 1:
            raise RequestError(f"stream_id names one person's stream but keypoints hold {n}; give stream_ids: [P]")
        ids = [obj["stream_id"]]
    elif "stream_ids" in obj:
        ids = obj["stream_ids"]
        if not isinstance(ids, list) or len(ids) != n:
            raise RequestError(f"stream_ids must be a list of {n} strings (one per person)")
    else:
        return [None] * n
    for s in ids:
        if s is not None and (not isinstance(s, str) or not s or len(s) > MAX_STREAM_ID):
            raise RequestError(f"a stream id must be a non-empty string of at most {MAX_STREAM_ID} characters (or "
                               f"null), got {s!r}"[:300])  # fmt: skip
    named = [s for s in ids if s is not None]
    if len(set(named)) != len(named):
        raise RequestError("stream ids must differ within a request (one person per stream)")
    return ids


def parse_lift(body: bytes, max_persons: int, temporal_available: bool) -> LiftRequest:
    """A /v1/lift body -> LiftRequest; RequestError with a clear message when anything is malformed."""
    obj = _json_object(body)
    _check_keys(obj, LIFT_REQUIRED, LIFT_OPTIONAL)
    width, height = _size(obj["width"], "width"), _size(obj["height"], "height")
    kpts = _numbers(_persons_list(obj["keypoints"], "keypoints", max_persons), "keypoints", (skeleton.NUM_JOINTS, 2))
    n = len(kpts)
    conf = np.ones((n, skeleton.NUM_JOINTS), np.float32)
    if obj.get("confidence") is not None:
        conf = _numbers(_persons_list(obj["confidence"], "confidence", max_persons), "confidence",
                        (skeleton.NUM_JOINTS,))  # fmt: skip
        if len(conf) != n:
            raise RequestError(f"confidence has {len(conf)} persons, keypoints {n}")
    ts = obj.get("timestamp")
    intrinsics = None
    if obj.get("intrinsics") is not None:
        k = obj["intrinsics"]
        if not isinstance(k, list) or len(k) != 4:
            raise RequestError("intrinsics must be [fx, fy, cx, cy] in pixels")
        fx, fy, cx, cy = (_finite_number(v, "intrinsics") for v in k)
        if fx <= 0 or fy <= 0:
            raise RequestError(f"intrinsics: focal lengths must be > 0, got fx={fx}, fy={fy}")
        intrinsics = Intrinsics(fx, fy, cx, cy)
    temporal = obj.get("temporal")
    if temporal is not None and not isinstance(temporal, bool):
        raise RequestError(f"temporal must be true or false, got {temporal!r}"[:200])
    if temporal and not temporal_available:
        raise RequestError("temporal: this server runs no temporal model (start it with --temporal default|PATH)")
    return LiftRequest(width, height, kpts, conf, _stream_ids(obj, n),
                       None if ts is None else _finite_number(ts, "timestamp"), intrinsics,
                       temporal_available if temporal is None else temporal)  # fmt: skip


def shard_of(stream_id: str, shards: int) -> int:
    """The temporal shard that holds `stream_id`'s state: a stable hash (crc32), the same in every process."""
    return zlib.crc32(stream_id.encode("utf-8")) % shards


# -- per-stream temporal state -----------------------------------------------------------------------------------
@dataclass
class StreamFrame:
    """One person's frame of one stream, as the ingress sends it to the stream's shard (normalised coordinates)."""

    stream_id: str
    x_s: np.ndarray  # [17,2] what HiPART saw
    dense: np.ndarray  # [48,2]
    fine: np.ndarray  # [96,2]
    timestamp: float  # seconds (the client's clock, else the ingress's wall clock)


@dataclass
class _Stream:
    stage: TemporalStage  # this stream's ring buffer
    frames: int = 0  # real frames in the window since the last (re)start: < T means warm-up
    seen: float = 0.0  # server clock of the last frame (for --stream-timeout)
    last_t: float | None = None  # timestamp of the last frame pushed
    last: tuple[np.ndarray, str] | None = None  # what that frame was answered (given again to a repeat of it)


class StreamBuffers:
    """The causal temporal stage per stream id: one `TemporalStage` (one ring buffer) each, dropped when idle.

    One stage per stream, not one stage keyed by track: each stream keeps its own clock (timestamps from different
    clients are not comparable), so a stream's output equals that stream sent alone.

    Idempotent per timestamp: a frame whose timestamp equals the stream's last one is a repeat of that frame (a
    client retrying after a lost answer, or an ingress retrying a shard call): it is not pushed again, and it gets
    the answer that frame got. Pushing it would restart the buffer (time not moving forward)."""

    def __init__(self, model: TemporalLifter, min_conf: float = DEFAULT_MIN_CONF, max_gap_s: float = 0.5,
                 timeout_s: float = 60.0, clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.model, self.min_conf, self.max_gap_s = model, min_conf, max_gap_s
        self.timeout_s, self.clock = timeout_s, clock
        self.streams: dict[str, _Stream] = {}
        self.expired = 0
        self.repeats = 0  # repeated frames answered from the stream's last result

    def step(self, items: Sequence[StreamFrame]) -> list[tuple[np.ndarray, str]]:
        """Push each frame into its stream's buffer, in order -> (temporal 3D [17,3] m, "ok" | "warmup") each. A
        repeat of a stream's last frame (the same timestamp) is answered as that frame was, its buffer untouched."""
        now = self.clock()
        self.expire(now)
        out = []
        for it in items:
            s = self.streams.get(it.stream_id)
            if s is not None and s.last is not None and it.timestamp == s.last_t:
                s.seen = now
                self.repeats += 1
                out.append(s.last)
                continue
            if s is None:
                s = self.streams[it.stream_id] = _Stream(TemporalStage(self.model, "causal", self.min_conf,
                                                                       self.max_gap_s))  # fmt: skip
            resets = s.stage.resets
            x = s.stage.hierarchical_input(it.x_s[None], it.dense[None], it.fine[None])
            pose = s.stage.step(x, it.timestamp)[0]
            s.frames = 1 if s.stage.resets > resets or s.frames == 0 else min(s.frames + 1, s.stage.frames)
            s.seen, s.last_t = now, it.timestamp
            s.last = (pose, "ok" if s.frames >= s.stage.frames else "warmup")
            out.append(s.last)
        return out

    def expire(self, now: float | None = None) -> list[str]:
        """Drop the streams without a frame for `timeout_s`; returns their ids."""
        now = self.clock() if now is None else now
        gone = [k for k, s in self.streams.items() if now - s.seen > self.timeout_s]
        for k in gone:
            del self.streams[k]
        self.expired += len(gone)
        return gone


class TemporalShard:
    """Serve deployment: the temporal buffers of the streams that hash to this shard (one replica per shard)."""

    def __init__(self, temporal: str, min_conf: float, max_gap_s: float, timeout_s: float):
        import torch

        torch.set_num_threads(1)  # one core per shard: more cores through more shards
        try:
            model = load_temporal(temporal)
        except Exception as e:  # CheckpointError and friends: one line for the user
            raise RuntimeError(f"hipart-serve: cannot load the temporal model: {e}") from None
        self.buffers = StreamBuffers(model, min_conf, max_gap_s, timeout_s)
        self.lock = threading.Lock()  # Serve may run sync methods on several threads

    def step(self, items: list[StreamFrame]) -> list[tuple[np.ndarray, str]]:
        """`StreamBuffers.step` on this shard's buffers."""
        with self.lock:
            return self.buffers.step(items)


# -- the ingress ---------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Job:
    """One request waiting in the batch queue: its prepared frame and, for /v1/lift, what the answer needs."""

    frame: FrameResult
    arrived: float  # perf_counter at arrival
    lift: LiftRequest | None = None  # None: /v1/infer
    kept: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # [P] input persons prepare() kept


def _floats(a: np.ndarray) -> list:
    """float32 values as JSON numbers (Python floats round-trip exactly)."""
    return np.asarray(a, np.float32).tolist()


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in timings.items()}


def _error(status: int, msg: str) -> JSONResponse:
    return JSONResponse({"error": msg}, status_code=status)


class Ingress:
    """Serve deployment: HTTP in, request checks, the Estimator's policy, one batched backend call, temporal shards."""

    def __init__(self, opts: ServeOptions, shards: list[Any]):
        from edge.run import RunError, RunOptions, build_runtime

        self.opts, self.shards = opts, shards
        if opts.backend in ("onnxruntime", "auto") and opts.ort_mode != "auto":  # this replica's process only
            from edge.backends.onnxruntime_backend import MODE_ENV

            os.environ[MODE_ENV] = opts.ort_mode
        ro = RunOptions(source="sample", backend=opts.backend, artifacts=opts.artifacts, device=opts.device,
                        checkpoint=opts.checkpoint, random_weights=opts.random_weights, config=opts.config,
                        min_conf=opts.min_conf, threads=opts.threads)  # fmt: skip
        # The bundled keypoint sample stands in for the source: keypoints come with each request, so
        # build_runtime builds no detector; the source itself is closed at once.
        try:
            rt = build_runtime(ro, say=log.warning)
        except RunError as e:
            raise RuntimeError(f"hipart-serve: {e}") from None
        rt.source.close()
        self.estimator: Estimator = rt.estimator
        self.model_hash = rt.loaded.model_hash
        self._batched.set_max_batch_size(opts.max_batch_size)
        self._batched.set_batch_wait_timeout_s(opts.batch_wait_timeout_s)
        ctx = serve.get_replica_context()
        self.replica = f"{ctx.deployment}#{ctx.replica_id.unique_id}"
        self.pending = 0  # requests in this replica (503 beyond --max-queue)
        self.waiting: deque[tuple[list[_Job], asyncio.Future]] = deque()  # Serve's batches waiting for the backend
        self.backend_free = asyncio.Lock()

    def health(self) -> dict[str, Any]:
        """The /v1/health body."""
        t = self.opts.temporal
        return {"ok": True, "model_hash": self.model_hash, "backend": self.estimator.backend.name,
                "temporal": f"{t} (causal, {self.opts.temporal_shards} shards)" if t else None}  # fmt: skip

    async def __call__(self, request: Request) -> JSONResponse:
        """Route: GET /v1/health, POST /v1/infer and /v1/lift; 404 / 405 otherwise, 503 when the queue is full."""
        arrived = time.perf_counter()
        path = request.url.path.rstrip("/") or "/"
        if path == HEALTH_PATH:
            return JSONResponse(self.health()) if request.method == "GET" else _error(405, "use GET /v1/health")
        if path not in (INFER_PATH, LIFT_PATH):
            api = f"GET {HEALTH_PATH}, POST {INFER_PATH}, POST {LIFT_PATH}"
            return _error(404, f"no such path {path!r}; the API: {api}")
        if request.method != "POST":
            return _error(405, f"use POST {path}")
        if self.pending >= self.opts.max_queue:
            return _error(503, f"overloaded: {self.pending} requests queued on this replica (--max-queue "
                               f"{self.opts.max_queue}); retry later")  # fmt: skip
        self.pending += 1
        try:
            try:
                body = await asyncio.wait_for(request.body(), BODY_WAIT_S)
            except TimeoutError:
                return _error(503, f"the request's body did not arrive within {BODY_WAIT_S:g} s (the replica that "
                                   "first took the request died?); retry it")  # fmt: skip
            try:
                job = self._job(path, body, arrived)
            except RequestError as e:
                return _error(400, str(e))
            err, meta = await self._batched(job)
            if err is not None:
                return _error(500, f"inference failed: {type(err).__name__}: {err}"[:500])
            return JSONResponse(await self._answer(job, meta))
        finally:
            self.pending -= 1

    def _job(self, path: str, body: bytes, arrived: float) -> _Job:
        """Parse and prepare one request (the Estimator's input policy); RequestError when malformed."""
        o = self.opts
        if path == INFER_PATH:
            fr = FrameResult(width=1, height=1)
            fr.x_s = parse_infer(body, o.max_persons_per_request)
            return _Job(fr, arrived)
        req = parse_lift(body, o.max_persons_per_request, o.temporal is not None)
        fr = FrameResult(width=req.width, height=req.height, timestamp=time.time() if req.timestamp is None
                         else req.timestamp)  # fmt: skip
        self.estimator.prepare(fr, kpts_px=req.keypoints, conf=req.confidence)
        fr.intrinsics = req.intrinsics
        # which input persons prepare() kept, by the same policy functions (to answer every person in input order)
        kept = usable_persons(sanitize_keypoints(req.keypoints, req.confidence, req.width, req.height)[1],
                              self.estimator.min_conf)  # fmt: skip
        return _Job(fr, arrived, req, kept)

    # Serve forms a batch as soon as its window (--batch-wait-timeout-s) closes, even while the backend is still busy
    # with the previous one; those batches are merged here, so the backend takes everything waiting once it is free
    # (up to --max-batch-size requests): under load batches grow by themselves, and an idle server adds no wait.
    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0, max_concurrent_batches=SERVE_BATCHES)
    async def _batched(self, jobs: list[_Job]) -> list[tuple[Exception | None, dict[str, Any]]]:
        """Serve's batch -> per job its error (or None) and the facts of the backend call that served it."""
        return await self._merged(jobs)

    async def _merged(self, jobs: list[_Job]) -> list[tuple[Exception | None, dict[str, Any]]]:
        """`jobs` lifted together with every other batch waiting for the backend (the lock's holder lifts them all)."""
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        self.waiting.append((jobs, done))
        while not done.done():
            async with self.backend_free:
                if not done.done():
                    await self._lift_waiting()
        return done.result()

    async def _lift_waiting(self) -> None:
        """One backend call for every person of the waiting batches, oldest first (Estimator.lift: concatenated,
        split back, pixels out); each batch's future gets its jobs' results."""
        taken: list[tuple[list[_Job], asyncio.Future]] = []
        n = 0
        while self.waiting and (not taken or n + len(self.waiting[0][0]) <= self.opts.max_batch_size):
            taken.append(self.waiting.popleft())
            n += len(taken[-1][0])
        jobs = [j for group, _ in taken for j in group]
        t0 = time.perf_counter()
        try:
            errors = await asyncio.to_thread(self.estimator.lift, [j.frame for j in jobs])
        except Exception as e:  # Estimator.lift isolates failing frames itself; this is anything else
            errors = [e] * len(jobs)
        infer_ms = (time.perf_counter() - t0) * 1e3
        out = iter([(err, {"batch": n, "timings": {"queue_ms": (t0 - j.arrived) * 1e3, "infer_ms": infer_ms}})
                    for j, err in zip(jobs, errors, strict=True)])  # fmt: skip
        for group, done in taken:
            done.set_result([next(out) for _ in group])

    async def _answer(self, job: _Job, meta: dict[str, Any]) -> dict[str, Any]:
        """The 200 body of a lifted job: /v1/infer's arrays, or /v1/lift's persons after their streams' shards."""
        fr, req = job.frame, job.lift
        head = {"model_hash": self.model_hash, "replica": self.replica, "batch": meta["batch"]}
        timings = meta["timings"]
        if req is None:
            r = fr.result or Result.empty()
            return {"dense": _floats(r.dense), "fine": _floats(r.fine), "pose3d": _floats(r.pose3d),
                    "tokens": r.tokens.tolist(), **head, "timings": _rounded(timings)}  # fmt: skip
        t0 = time.perf_counter()
        rows = np.cumsum(job.kept) - 1  # input person -> row of the frame's kept persons
        temporal = await self._temporal(job, rows)
        timings["temporal_ms"] = (time.perf_counter() - t0) * 1e3
        roots = fr.root_cam
        persons = []
        for p, sid in enumerate(req.stream_ids):
            if not job.kept[p]:
                persons.append({"dense": None, "fine": None, "pose3d": None, "tokens": None, "pose3d_temporal": None,
                                "root_cam": None, "stream_id": sid,
                                "status": f"dropped: fewer than {MIN_VISIBLE_JOINTS} joints inside the image with "
                                          f"confidence >= {self.estimator.min_conf:g}"})  # fmt: skip
                continue
            j = int(rows[p])
            pose_t, status = temporal.get(p, (None, "ok"))
            root = None if roots is None or not np.isfinite(roots[j]).all() else _floats(roots[j])
            persons.append({"dense": _floats(fr.dense[j]), "fine": _floats(fr.fine[j]), "pose3d": _floats(fr.pose3d[j]),
                            "tokens": fr.result.tokens[j].tolist(),
                            "pose3d_temporal": None if pose_t is None else _floats(pose_t),
                            "root_cam": root, "stream_id": sid, "status": status})  # fmt: skip
        return {"persons": persons, **head, "timings": _rounded(timings)}

    async def _temporal(self, job: _Job, rows: np.ndarray) -> dict[int, tuple[np.ndarray | None, str]]:
        """Input person -> (temporal 3D or None, status) for every lifted person with a stream id: one call per
        shard involved, the shards in parallel. Outside the batch, so a restarting shard holds up its streams only."""
        req, fr = job.lift, job.frame
        calls: dict[int, list[tuple[int, StreamFrame]]] = {}
        if req is None or not req.temporal or fr.result is None:
            return {}
        for p, sid in enumerate(req.stream_ids):
            if sid is not None and job.kept[p]:
                j = int(rows[p])
                item = StreamFrame(sid, fr.x_s[j], fr.result.dense[j], fr.result.fine[j], float(fr.timestamp))
                calls.setdefault(shard_of(sid, len(self.shards)), []).append((p, item))
        shards = list(calls)
        answers = await asyncio.gather(*(self._call_shard(s, [it for _, it in calls[s]]) for s in shards))
        return {p: res for s, ans in zip(shards, answers, strict=True)
                for (p, _), res in zip(calls[s], ans, strict=True)}  # fmt: skip

    async def _call_shard(self, s: int, items: list[StreamFrame]) -> list[tuple[np.ndarray | None, str]]:
        """Shard s's answers; while it restarts (its replica died) the call is retried, for up to SHARD_WAIT_S."""
        deadline = time.monotonic() + SHARD_WAIT_S
        while True:
            try:
                return await self.shards[s].step.remote(items)
            except (RayActorError, ActorUnavailableError) as e:
                if time.monotonic() > deadline:
                    why = f"dropped: temporal shard temporal-{s} unavailable ({type(e).__name__})"
                    return [(None, why)] * len(items)
                await asyncio.sleep(0.2)


# -- the application -------------------------------------------------------------------------------------------
def shard_name(i: int) -> str:
    """The deployment name of temporal shard i."""
    return f"temporal-{i}"


def build_app(opts: ServeOptions) -> Any:
    """The Serve application of `opts`: the ingress deployment bound to its temporal shards (if any)."""
    common = {"max_constructor_retry_count": 1, "health_check_period_s": 2.0}
    shards = []
    if opts.temporal:
        shard = serve.deployment(TemporalShard)
        shards = [shard.options(name=shard_name(i), num_replicas=1, max_ongoing_requests=8,
                                ray_actor_options={"num_cpus": opts.shard_cpus}, **common)
                  .bind(opts.temporal, opts.min_conf, opts.max_gap, opts.stream_timeout)
                  for i in range(opts.temporal_shards)]  # fmt: skip
    ingress = serve.deployment(Ingress).options(
        name="ingress", num_replicas=opts.replicas,
        max_ongoing_requests=max(opts.max_queue + opts.max_batch_size, opts.max_batch_size * SERVE_BATCHES),
        ray_actor_options={"num_cpus": opts.num_cpus, "num_gpus": opts.num_gpus}, **common,
    )  # fmt: skip
    return ingress.bind(opts, shards)


def start(opts: ServeOptions, say: Callable[[str], None] = log.info, verbose: bool = False) -> dict[str, Any]:
    """Start (or join) Ray, start Serve's HTTP proxy on opts.host:opts.port and run the application; returns the
    ingress's health. Raises RuntimeError (ray.init, deployment failure) when it cannot start. Quiet unless
    `verbose`: Serve and the replicas log warnings only, into Ray's log files (not this process's stderr)."""
    import ray
    from ray.serve.config import HTTPOptions
    from ray.serve.schema import LoggingConfig

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report sent anywhere
    level = logging.INFO if verbose else logging.WARNING
    logging.getLogger("ray.serve").setLevel(level)
    quiet = LoggingConfig(log_level=logging.getLevelName(level), enable_access_log=verbose)
    if not ray.is_initialized():
        if opts.address:
            ray.init(address=opts.address, logging_level=level, log_to_driver=verbose)
        else:
            cpus = max(os.cpu_count() or 1, math.ceil(opts.reserved_cpus()))
            ray.init(num_cpus=cpus, include_dashboard=False, logging_level=level, log_to_driver=verbose)
            # the address lets tools join this instance (benchmarks/serve_load.py --chaos --ray-address ADDRESS)
            say(f"started a local Ray instance with {cpus} CPUs at {ray.get_runtime_context().gcs_address}")
    serve.start(http_options=HTTPOptions(host=opts.host, port=opts.port), logging_config=quiet)
    try:
        handle = serve.run(build_app(opts), name=opts.app_name, route_prefix="/", logging_config=quiet)
    except RuntimeError as e:  # "Deploying application ... failed": the reason is in the deployments' status
        raise RuntimeError(f"{e}\n{deployment_messages(opts.app_name)}") from None
    return handle.health.remote().result()


def deployment_messages(app_name: str) -> str:
    """Each deployment's status message (a failed constructor's traceback among them), one block per deployment."""
    try:
        app = serve.status().applications.get(app_name)
    except Exception as e:  # the controller is gone too
        return f"(no deployment status: {type(e).__name__})"
    if app is None:
        return ""
    return "\n".join(f"{name}: {d.status}: {d.message}" for name, d in app.deployments.items() if d.message)


def stop(opts: ServeOptions) -> None:
    """Delete the application (its replicas drain their requests), then leave Ray: a local instance (started by
    `start`) goes down with it; a joined cluster keeps running, Serve and other applications included."""
    import ray

    if not ray.is_initialized():
        return
    try:
        serve.delete(opts.app_name)
    finally:
        ray.shutdown()
