"""Load test of hipart-serve (issue 20): N simulated 30 fps keypoint streams, loopback only, bounded in time.

Served (default): each stream is a thread with its own kept-alive connection (edge.backends.remote.HttpSession) that
sends POST /v1/lift with one person, its stream_id and its own clock's timestamp (k / fps) on a fixed schedule (frame k
due at start + phase + k / fps; the N phases spread over one period, like unsynchronised cameras), with "temporal": true
when the server runs a temporal model. A stream whose previous request is still in flight when its next frame is due
DROPS that frame and counts it, like a live camera. A request that fails (no answer, HTTP 5xx) is sent once more with
the same timestamp (safe: the server takes a repeated timestamp as the same frame); a frame whose retry fails too is
LOST. Per N it records throughput (poses/s answered), latency (first try sent -> answer read: p50 / p90 / p99), the
batch sizes and replicas the server reports, dropped frames, failed tries (by kind), lost frames and wrong-state
answers: a person whose stream_id is not the one sent, or (temporal server) whose pose3d_temporal is not what the
server's temporal model gives on that stream's own frames (recomputed here after the run, see TemporalCheck).

Chaos (--chaos SECONDS, served): every SECONDS one replica of the application is killed in turn -- an ingress replica,
then each temporal shard, round and round -- with ray.kill(actor, no_restart=True) (Ray Serve's fault-tolerance drill;
Serve starts a replacement). The tool joins the server's Ray instance (--ray-address, default auto: the one Ray instance
running on this machine; hipart-serve prints its local instance's address at start). Only a deployment whose replicas
all run is hit; each kill's replacement time is recorded.

Baseline (--baseline): the same N streams, schedule and drop rule, but each stream is its own Python process running
an in-process `Estimator.from_keypoints` loop over the local onnxruntime backend at batch 1 (1 intra-op thread each by
default; all N on the same cores) -- the per-frame work of `hipart-run --source KPTS --backend onnxruntime --pace
--max-batch-frames 1` without its threads, queues and file writing, timed the same way as a served request.

Bounded: every stream sends at most seconds x fps requests per N (each with --timeout), one warm-up request first.

    python -m tests.edge.serve_stub --port 8000 &                 # or hipart-serve
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --streams 1 4 16 64 --seconds 10 --json served.json
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --streams 4 --seconds 15 --chaos 5 --json chaos.json
    python benchmarks/serve_load.py --baseline --streams 1 4 16 --seconds 10 --json baseline.json
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --compare baseline.json --png served-vs-baseline.png
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import socket
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from edge.backends.remote import HttpSession, RemoteError, json_answer, server_url  # noqa: E402
from edge.sources import open_source, sample_path  # noqa: E402

KeypointFrame = tuple[np.ndarray, np.ndarray, int, int]  # one person's [1,17,2] px, [1,17] confidence, width, height
RETRY_PAUSE_S = 0.2  # before the one retry of a failed /v1/lift (a dead replica's requests fail at once)
VERIFY_ATOL_M = 1e-4  # pose3d_temporal recomputed here from the answers' own per-frame results (float32 round trips)


@dataclass
class Answer:
    """What one request (served) or one local call (baseline) gave back."""

    poses: int = 0
    wrong_state: bool = False
    batch: int | None = None
    replica: str | None = None
    status: str = "ok"
    failed_tries: list[str] = field(default_factory=list)  # kinds of the tries that failed before this answer
    person: dict[str, Any] | None = None  # served: the answer's person (for the temporal check)


class Lost(Exception):
    """A frame with no answer after its retry; `tries` says why each try failed."""

    def __init__(self, tries: list[str]):
        super().__init__(tries[-1])
        self.tries = tries


def _kind(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:120]}"


@dataclass
class StreamStats:
    """One stream's counts over its run."""

    due: int = 0
    sent: int = 0
    answered: int = 0  # answers for the right stream
    poses: int = 0
    dropped: int = 0  # by the client: due while a request was in flight
    errors: int = 0  # frames without an answer (served: after the retry, i.e. `lost`)
    failed_tries: int = 0  # served: tries that failed (a retried frame's first try, both tries of a lost frame)
    retried: int = 0  # served: frames sent a second time
    lost: int = 0  # served: frames without an answer after the retry
    wrong_state: int = 0
    verified: int = 0  # temporal answers checked against the stream's own frames
    latencies_ms: list[float] = field(default_factory=list)
    batch_sizes: Counter = field(default_factory=Counter)
    replicas: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    error_kinds: Counter = field(default_factory=Counter)
    applied: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (k, person) pushed to the stream's state
    lost_at: list[int] = field(default_factory=list)  # k of the lost frames


def load_frames(path: str | None = None) -> list[KeypointFrame]:
    """One person per frame from a keypoint file (hipart-run's reader; default: the bundled walk)."""
    src = open_source(str(path or sample_path()))
    frames = []
    while (f := src.read()) is not None:
        if f.keypoints is not None and len(f.keypoints):
            frames.append((f.keypoints[:1], f.conf[:1], f.width, f.height))
    src.close()
    if not frames:
        raise SystemExit(f"serve_load: no person in any frame of {path}")
    return frames


def run_stream(send: Callable[[KeypointFrame, float], Answer], frames: list[KeypointFrame], t_start: float,
               seconds: float, fps: float, phase: float, offset: int) -> StreamStats:  # fmt: skip
    """Frames at t_start + phase + k / fps for `seconds`; a frame due while a request is in flight is dropped."""
    st = StreamStats(due=int(seconds * fps))
    period, k = 1.0 / fps, 0
    while k < st.due:
        due = t_start + phase + k * period
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        t0 = time.monotonic()
        st.sent += 1
        try:
            ans = send(frames[(offset + k) % len(frames)], k * period)
        except Exception as e:  # transport failure, HTTP error, model error (after the retry, if any): by kind
            tries = e.tries if isinstance(e, Lost) else [_kind(e)]
            st.errors += 1
            st.failed_tries += len(tries)
            st.retried += len(tries) > 1
            st.error_kinds.update(tries)
            st.lost += 1
            st.lost_at.append(k)
        else:
            st.failed_tries += len(ans.failed_tries)
            st.retried += bool(ans.failed_tries)
            st.error_kinds.update(ans.failed_tries)
            if ans.wrong_state:
                st.wrong_state += 1
            else:
                st.answered += 1
                st.poses += ans.poses
                st.latencies_ms.append((time.monotonic() - t0) * 1e3)
                p = ans.person
                if p is not None and p.get("pose3d_temporal") is not None and p.get("status") in ("ok", "warmup"):
                    st.applied.append((k, p))
            st.batch_sizes[str(ans.batch)] += 1
            st.replicas[str(ans.replica)] += 1
            st.statuses[ans.status] += 1
        nxt = min(st.due, max(k + 1, math.ceil((time.monotonic() - t_start - phase) / period)))
        st.dropped += nxt - k - 1
        k = nxt
    return st


class LiftClient:
    """One served stream: POST /v1/lift (one person, this stream's id, its timestamp) on its own kept-alive connection;
    a failed try (transport failure, HTTP 5xx) is sent again once with the same body, so the same timestamp."""

    def __init__(self, url: str, stream_id: str, timeout: float, temporal: bool = False, retries: int = 1):
        self.http, self.stream_id, self.timeout = HttpSession(url), stream_id, timeout
        self.temporal, self.retries = temporal, retries

    def __call__(self, frame: KeypointFrame, t: float) -> Answer:
        """Send one frame (timestamp t, this stream's clock); `Lost` when every try failed, RemoteError on a 4xx."""
        k, c, w, h = frame
        body = {"width": w, "height": h, "keypoints": k.tolist(), "confidence": c.tolist(), "stream_id": self.stream_id,
                "timestamp": t} | ({"temporal": True} if self.temporal else {})  # fmt: skip
        failed: list[str] = []
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(RETRY_PAUSE_S)
            try:
                # retried here, counted, with the same timestamp (the server answers a repeat as the frame itself)
                status, payload = self.http.exchange("POST", "/v1/lift", body, self.timeout, retry_stale=False)
            except (OSError, http.client.HTTPException) as e:
                failed.append(_kind(e))
                continue
            if status >= 500:
                failed.append(_kind(RemoteError(f"HTTP {status}: {payload[:80].decode(errors='replace')}")))
                continue
            reply = json_answer(status, payload, "POST /v1/lift")  # a 4xx: the request is wrong, no retry
            persons = reply.get("persons")
            if not isinstance(persons, list) or len(persons) != 1:
                raise RemoteError(f"POST /v1/lift: expected 1 person back, got {persons!r:.80}")
            p = persons[0]
            ok = str(p.get("status", "")) in ("ok", "warmup")
            return Answer(int(ok), p.get("stream_id") != self.stream_id, reply.get("batch"), reply.get("replica"),
                          str(p.get("status")), failed, p)  # fmt: skip
        raise Lost(failed)

    def warm_up(self, frame: KeypointFrame) -> None:
        """One request on a stream of its own (connects; loads the replica and shard paths), not counted."""
        k, c, w, h = frame
        body = {"width": w, "height": h, "keypoints": k.tolist(), "stream_id": f"{self.stream_id}/warm-up",
                "timestamp": 0.0} | ({"temporal": True} if self.temporal else {})  # fmt: skip
        json_answer(*self.http.exchange("POST", "/v1/lift", body, max(self.timeout, 30.0)), "POST /v1/lift")


def _percentiles(lat: list[float]) -> dict[str, float]:
    if not lat:
        return {}
    a = np.asarray(lat)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean()), "max": float(a.max())}  # fmt: skip


def summarise(n: int, seconds: float, fps: float, stats: list[StreamStats]) -> dict[str, Any]:
    """One row of the results: N streams' counts added up."""
    tot = StreamStats()
    for s in stats:
        for k in ("due", "sent", "answered", "poses", "dropped", "errors", "failed_tries", "retried", "lost",
                  "wrong_state", "verified"):
            setattr(tot, k, getattr(tot, k) + getattr(s, k))
        tot.latencies_ms += s.latencies_ms
        for k in ("batch_sizes", "replicas", "statuses", "error_kinds"):
            getattr(tot, k).update(getattr(s, k))
    return {
        "streams": n, "seconds": seconds, "fps": fps, "offered_per_s": n * fps,
        "due": tot.due, "sent": tot.sent, "answered": tot.answered, "poses": tot.poses,
        "poses_per_s": tot.poses / seconds, "latency_ms": _percentiles(tot.latencies_ms),
        "dropped": tot.dropped, "drop_rate": tot.dropped / max(tot.due, 1), "errors": tot.errors,
        "error_kinds": dict(tot.error_kinds.most_common(8)), "failed_tries": tot.failed_tries, "retried": tot.retried,
        "lost": tot.lost,
        "wrong_state": tot.wrong_state, "temporal_verified": tot.verified,
        "batch_sizes": dict(sorted(tot.batch_sizes.items())), "replicas": dict(tot.replicas),
        "statuses": dict(tot.statuses),
    }  # fmt: skip


def _check_loopback(url: str) -> None:
    """SystemExit unless `url` names this machine (the load test never leaves it)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        addr = ipaddress.ip_address(socket.getaddrinfo(host, None)[0][4][0])
    except (OSError, ValueError):
        raise SystemExit(f"serve_load: cannot resolve {host!r}") from None
    if not addr.is_loopback:
        raise SystemExit(f"serve_load: {url} is not a loopback address; the load test only runs on this machine")


class TemporalCheck:
    """Each stream's pose3d_temporal recomputed here with the server's temporal model from that stream's own answers
    (x_s by the server's input policy from the keypoints sent, dense / fine from the answers). The server's buffer of a
    stream either takes the frame (the window slides; "ok" once T frames are in) or restarts with it (a gap, time not
    moving forward, a restarted shard: "warmup", the window filled with copies of the frame): an answer that equals
    neither came from another state than its stream's (and the check goes on with the stream's own buffer). After a lost
    frame (the server may have taken it) the buffer is unknown until an answer equals a restart."""

    def __init__(self, temporal: str, min_conf: float):
        import torch

        from edge.temporal import TemporalStage, load_temporal

        torch.set_num_threads(1)
        self.stage = TemporalStage(load_temporal(temporal), "causal", min_conf)
        self.frames, self.min_conf = self.stage.frames, min_conf

    @classmethod
    def for_server(cls, health: dict[str, Any], min_conf: float) -> tuple[TemporalCheck | None, str]:
        """The check for the server's temporal model if it can be loaded here, and a line saying so."""
        text = health.get("temporal")
        if not text:
            return None, "no temporal model on the server: wrong-state = a stream_id that is not the one sent"
        name = str(text).split(" (", 1)[0]
        if name != "default" and not Path(name).is_file():
            return None, f"the server's temporal model {name} is not on this machine: stream_id checked only"
        try:
            return cls(name, min_conf), f"pose3d_temporal recomputed here with {name} (min_conf {min_conf:g})"
        except Exception as e:  # a checkpoint this machine cannot load
            return None, f"cannot load the temporal model {name} here ({type(e).__name__}): stream_id checked only"

    def _input(self, frame: KeypointFrame, p: dict[str, Any]) -> np.ndarray:
        from edge.estimator import lift_input
        from edge.occlusion import sanitize_keypoints
        from hipart.camera import normalize_screen_coordinates

        kp, conf, w, h = frame
        k, c = sanitize_keypoints(kp, conf, w, h)
        dense, fine = (normalize_screen_coordinates(np.asarray(p[key], np.float32)[None], float(w), float(h))
                       for key in ("dense", "fine"))  # fmt: skip
        return self.stage.hierarchical_input(lift_input(k, c, w, h, self.min_conf), dense, fine)[0]

    def check(self, st: StreamStats, frames: list[KeypointFrame], offset: int) -> float:
        """Check every temporal answer of the stream: `verified` counts the checked ones, a mismatch moves an answer
        from `answered` to `wrong_state`. Returns the largest deviation (m) among the matching ones."""
        import torch

        seq, lost, t = st.applied, np.asarray(sorted(st.lost_at), np.int64), self.frames
        inputs: dict[int, np.ndarray] = {}
        tokens: dict[int, Any] = {}

        def pose(window: list[int]) -> np.ndarray:  # the model on the buffer holding these answers' frames
            for i in set(window) - set(inputs):
                k, p = seq[i]
                inputs[i] = self._input(frames[(offset + k) % len(frames)], p)
                tokens[i] = self.stage.frame_state(torch.from_numpy(inputs[i])[None, None], None)[0]
            window = [window[0]] * (t - len(window)) + window[-t:]  # a warm-up window: copies of its first frame
            x = torch.from_numpy(np.stack([inputs[i] for i in window]))[None]
            return self.stage.lift_window(x, torch.cat([tokens[i] for i in window], 0)[None])[0]

        real: list[int] | None = []  # the buffer's frames since its (re)start, as indices into seq; None: unknown
        prev_k, worst = -1, 0.0
        with torch.no_grad():
            for j, (k, p) in enumerate(seq):
                if ((lost > prev_k) & (lost < k)).any():
                    real = None  # a lost frame in between: the server may have taken it
                prev_k = k
                got = np.asarray(p["pose3d_temporal"], np.float32)
                match = None
                for cand in ([*real, j], [j]) if real else ([j],):  # the frame taken, or a restart with it
                    if p["status"] == ("ok" if len(cand) >= t else "warmup"):
                        dev = float(np.abs(got - pose(cand)).max())
                        if dev <= VERIFY_ATOL_M:
                            match = cand[-t:]
                            worst = max(worst, dev)
                            break
                if match is not None:
                    st.verified += 1
                    real = match
                elif real is not None:  # neither this stream's next window nor a restart: another state
                    st.verified += 1
                    st.wrong_state, st.answered = st.wrong_state + 1, st.answered - 1
                    real = [*real, j][-t:]  # what the stream's own buffer holds now: the next answers are checked on
        return worst


class Chaos:
    """Kills one replica of the served application in turn (ingress, temporal-0, temporal-1, ..., round and round),
    as Ray Serve's fault-tolerance docs do: ray.kill(actor, no_restart=True); Serve starts a replacement. Joins the
    server's Ray instance; replicas are found by their actor names (SERVE_REPLICA::APP#DEPLOYMENT#ID)."""

    def __init__(self, every: float, address: str, app: str):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if address != "auto" and (Path.home() / ".ray" / "auth_token").is_file():
            # a local ray.init() instance (hipart-serve's) runs with Ray's token authentication, its token in
            # ~/.ray/auth_token; Ray 2.60 sends it by itself with "auto" only, with an explicit address when
            # RAY_AUTH_MODE=token is set before ray is imported
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        import ray
        from ray import serve

        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            apps = serve.status().applications
        except Exception as e:  # no Ray there, several instances for "auto", no Serve
            raise SystemExit(f"serve_load: --chaos cannot join the server's Ray at {address!r} ({type(e).__name__}: "
                             f"{str(e)[:200]}); pass --ray-address (hipart-serve prints its local instance's address "
                             "at start)") from None  # fmt: skip
        if app not in apps:
            raise SystemExit(f"serve_load: no Serve application {app!r} there (found: {', '.join(apps) or 'none'})")
        self.ray, self.serve, self.every, self.app = ray, serve, every, app
        deps = self._deployments()
        self.order = sorted(deps, key=lambda d: (d != "ingress", d))  # the ingress first, then the shards
        self.target = {d: len(self._replicas(d)) for d in self.order}
        self.turn, self.rng = 0, np.random.default_rng(0)
        self.pending: list[dict[str, Any]] = []  # kills whose replacement is not running yet

    def _deployments(self) -> dict[str, Any]:
        return dict(self.serve.status().applications[self.app].deployments)

    def _replicas(self, dep: str) -> list[str]:
        prefix = f"SERVE_REPLICA::{self.app}#{dep}#"
        return sorted(a["name"] for a in self.ray.util.list_named_actors(all_namespaces=True)
                      if a["name"].startswith(prefix))  # fmt: skip

    def _running(self, dep: str, d: Any, names: list[str]) -> bool:
        """All of the deployment's replicas run (and Serve has seen every replica that died)."""
        states = {str(getattr(k, "value", k)): v for k, v in d.replica_states.items()}
        healthy = str(getattr(d.status, "value", d.status)) == "HEALTHY"
        return healthy and set(states) == {"RUNNING"} and states["RUNNING"] == len(names) == self.target[dep]

    def kill_one(self, t0: float) -> dict[str, Any] | None:
        """Kill a replica of the next deployment whose replicas all run; None when none does."""
        deps = self._deployments()
        for _ in range(len(self.order)):
            dep = self.order[self.turn % len(self.order)]
            self.turn += 1
            names = self._replicas(dep)
            if dep not in deps or not self._running(dep, deps[dep], names):
                continue
            victim = names[int(self.rng.integers(len(names)))]
            self.ray.kill(self.ray.get_actor(victim, namespace="serve"), no_restart=True)
            kill = {"at_s": round(time.monotonic() - t0, 2), "deployment": dep, "replica": victim.rsplit("#", 1)[-1],
                    "replaced_after_s": None, "_t": time.monotonic()}  # fmt: skip
            self.pending.append(kill)
            return kill
        return None

    def poll(self) -> bool:
        """Note the replacements that now run; True when every deployment runs all its replicas."""
        deps = self._deployments()
        up = {d: d in deps and self._running(d, deps[d], self._replicas(d)) for d in self.order}
        for kill in list(self.pending):
            if up[kill["deployment"]] and time.monotonic() - kill["_t"] > 0.5:
                kill["replaced_after_s"] = round(time.monotonic() - kill["_t"], 1)
                self.pending.remove(kill)
        return all(up.values())

    def run(self, t0: float, seconds: float, stop: threading.Event, kills: list[dict[str, Any]]) -> None:
        """Kill at t0 + every, t0 + 2 every, ... while the load runs; watch the replacements in between."""
        nxt = t0 + self.every
        while not stop.is_set() and nxt < t0 + seconds:
            if time.monotonic() >= nxt:
                kill = self.kill_one(t0)
                kills.append(kill or {"at_s": round(time.monotonic() - t0, 2), "skipped": "no deployment with all "
                                      "its replicas running"})  # fmt: skip
                nxt += self.every
            stop.wait(min(0.5, max(nxt - time.monotonic(), 0.0)))
            if self.pending:
                self.poll()

    def settle(self, timeout: float) -> bool:
        """Wait (at most `timeout` s) until every deployment runs all its replicas again."""
        deadline = time.monotonic() + timeout
        while not self.poll():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True


def run_served(url: str, streams: list[int], seconds: float, fps: float, frames: list[KeypointFrame],
               timeout: float = 5.0, say: Callable[[str], None] = lambda m: None, temporal: bool = False,
               chaos: Chaos | None = None, check: TemporalCheck | None = None,
               verify_max: int = 1000) -> list[dict[str, Any]]:  # fmt: skip
    """The served rows: N LiftClient threads per N, each warmed up with one request first (on a stream of its own);
    with `chaos`, replicas are killed while they run; with `check`, the temporal answers are checked afterwards."""
    _check_loopback(url)
    rows = []
    tag = f"{os.getpid():x}{int(time.time() * 10) % 0x100000:x}"  # fresh streams every run
    for n in streams:
        clients = [LiftClient(url, f"cam-{n}-{i}-{tag}", timeout, temporal) for i in range(n)]
        for i, c in enumerate(clients):  # connect + warm up (not counted)
            c.warm_up(frames[i % len(frames)])
        if chaos is not None and not chaos.settle(90):
            say("served   chaos: the application is not whole yet after 90 s; going on")
        t_start = time.monotonic() + 0.2
        out: list[StreamStats | None] = [None] * n
        kills: list[dict[str, Any]] = []
        stop = threading.Event()

        def stream(i: int, client: LiftClient, t_start: float, n: int, out: list[StreamStats | None]) -> None:
            out[i] = run_stream(client, frames, t_start, seconds, fps, i / (n * fps), 7 * i)

        threads = [threading.Thread(target=stream, args=(i, c, t_start, n, out), daemon=True)
                   for i, c in enumerate(clients)]  # fmt: skip
        if chaos is not None:
            threads.append(threading.Thread(target=chaos.run, args=(t_start, seconds, stop, kills), daemon=True))
        for t in threads:
            t.start()
        for t in threads[:n]:
            t.join(seconds + 2 * timeout + 10)
        stop.set()
        for t in threads[n:]:
            t.join(10)
        for c in clients:
            c.http.close()
        stats = [s or StreamStats() for s in out]
        row: dict[str, Any] = {}
        if chaos is not None:
            whole = chaos.settle(90)
            row["kills"] = sum("deployment" in k for k in kills)
            row["kill_log"] = [{k: v for k, v in kill.items() if not k.startswith("_")} for kill in kills]
            row["whole_after"] = whole
        worst = 0.0
        if check is not None:  # whole streams, until verify_max answers are checked
            t_check, checked = time.monotonic(), 0
            for i, st in enumerate(stats):
                if checked >= verify_max:
                    break
                worst = max(worst, check.check(st, frames, 7 * i))
                checked += st.verified
            row["temporal_check"] = {"streams": i + 1 if stats else 0, "max_dev_m": worst,
                                     "seconds": round(time.monotonic() - t_check, 1)}  # fmt: skip
        rows.append(summarise(n, seconds, fps, stats) | row)
        say(_line("served", rows[-1]))
        time.sleep(0.5)  # let the server drain between N
    return rows


def _baseline_worker(i: int, n: int, args: dict[str, Any], ready: Any, go: Any, start: Any, results: Any) -> None:
    """One baseline stream in its own process: a local Estimator over onnxruntime, batch 1."""
    os.environ["OMP_NUM_THREADS"] = str(args["threads"])
    from edge.backends import create_backend
    from edge.estimator import Estimator
    from edge.weights import bundled_reference

    ref = bundled_reference()
    backend = create_backend("onnxruntime", artifacts=args["artifacts"], threads=args["threads"],
                             model_hash=ref.model_hash if ref else "unknown", device="cpu")  # fmt: skip
    est = Estimator(backend)
    frames = load_frames(args["keypoints"])

    def send(frame: KeypointFrame, t: float) -> Answer:
        k, c, w, h = frame
        return Answer(len(est.from_keypoints(k, c, w, h, timestamp=t)), batch=1, replica=f"pid-{os.getpid()}")

    send(frames[i % len(frames)], 0.0)  # warm up
    ready.put((i, backend.info()))
    go.wait()
    st = run_stream(send, frames, start.value, args["seconds"], args["fps"], i / (n * args["fps"]), 7 * i)
    results.put({k: dict(v) if isinstance(v, Counter) else v for k, v in vars(st).items()})  # plain types only


def run_baseline(streams: list[int], seconds: float, fps: float, keypoints: str | None, artifacts: str | None,
                 threads: int, say: Callable[[str], None] = lambda m: None) -> tuple[list[dict], dict]:  # fmt: skip
    """The baseline rows: N processes per N, started together once all have loaded the model."""
    ctx = mp.get_context("spawn")
    rows, info = [], {}
    args = {"seconds": seconds, "fps": fps, "keypoints": keypoints, "artifacts": artifacts, "threads": threads}
    for n in streams:
        ready, results, go, start = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
        procs = [ctx.Process(target=_baseline_worker, args=(i, n, args, ready, go, start, results), daemon=True)
                 for i in range(n)]  # fmt: skip
        t_load = time.monotonic()
        for p in procs:
            p.start()
        for _ in range(n):
            _, info = ready.get(timeout=120 + 5 * n)
        start.value = time.monotonic() + 0.5  # CLOCK_MONOTONIC: the same clock in every process on Linux
        go.set()
        stats = [StreamStats(**{k: Counter(v) if isinstance(v, dict) else v for k, v in results.get(
            timeout=seconds + 60).items()}) for _ in range(n)]  # fmt: skip
        for p in procs:
            p.join(10)
        rows.append(summarise(n, seconds, fps, stats) | {"load_s": round(start.value - 0.5 - t_load, 1)})
        say(_line("baseline", rows[-1]))
    return rows, info


def _line(mode: str, r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    return (f"{mode:8s} N={r['streams']:<3d} {r['poses_per_s']:7.1f} poses/s of {r['offered_per_s']:.0f} offered  "
            f"p50 {lat.get('p50', float('nan')):7.1f} ms  p99 {lat.get('p99', float('nan')):7.1f} ms  "
            f"dropped {r['drop_rate']:5.1%}  errors {r['errors']}  wrong-state {r['wrong_state']}  "
            f"batches {r['batch_sizes']}")  # fmt: skip


def _chaos_line(r: dict[str, Any]) -> str:
    """Frames due / answered / dropped / lost, failed tries by kind, wrong state, kills (a --chaos row)."""
    check = r.get("temporal_check")
    checked = (f"{r['temporal_verified']} temporal answers checked (max dev {check['max_dev_m']:.1e} m)" if check
               else "stream ids checked")  # fmt: skip
    kills = ", ".join(f"{k['deployment']}@{k['at_s']:g}s (replaced after {k['replaced_after_s']} s)"
                      if "deployment" in k else f"skipped@{k['at_s']:g}s" for k in r.get("kill_log", []))  # fmt: skip
    kinds = "; ".join(f"{n} x {k}" for k, n in r["error_kinds"].items()) or "none"
    return (f"  due {r['due']}  sent {r['sent']}  answered {r['answered']}  dropped-by-client {r['dropped']}  "
            f"retried {r['retried']}  lost {r['lost']}  wrong-state {r['wrong_state']} ({checked})\n"
            f"  failed tries {r['failed_tries']}: {kinds}\n  kills {r.get('kills', 0)}: {kills or 'none'}"
            f"  statuses {r['statuses']}")  # fmt: skip


def machine() -> dict[str, Any]:
    """CPU, cores and load: the context every number here depends on."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip


def plot(png: str, results: list[dict[str, Any]]) -> None:
    """Latency p50 / p99 and throughput vs N, one colour per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_l, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2))
    for res, colour in zip(results, ("tab:blue", "tab:orange", "tab:green"), strict=False):
        rows = [r for r in res["rows"] if r["latency_ms"]]
        n = [r["streams"] for r in rows]
        ax_l.plot(n, [r["latency_ms"]["p50"] for r in rows], "o-", color=colour, label=f"{res['mode']} p50")
        ax_l.plot(n, [r["latency_ms"]["p99"] for r in rows], "s--", color=colour, label=f"{res['mode']} p99")
        ax_t.plot(n, [r["poses_per_s"] for r in rows], "o-", color=colour, label=res["mode"])
    all_n = sorted({r["streams"] for res in results for r in res["rows"]})
    fps = results[0]["meta"]["fps"]
    ax_t.plot(all_n, [k * fps for k in all_n], ":", color="grey", label=f"offered (N x {fps:g} fps)")
    for ax, title, unit in ((ax_l, "latency per frame", "ms"), (ax_t, "throughput", "poses/s answered")):
        ax.set(xscale="log", yscale="log", xlabel="streams N", ylabel=unit, title=title)
        ax.set_xticks(all_n, [str(k) for k in all_n])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    m = results[0]["meta"]["machine"]
    fig.suptitle(f"{m['cores']} cores, {m['cpu'][:40]}, load {m['load_avg_1m']:.1f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Parse, run one mode over every N, write JSON / PNG."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="\n".join(__doc__.splitlines()[-5:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--url", default="http://127.0.0.1:8000", type=server_url, help="hipart-serve (loopback only)")
    p.add_argument("--baseline", action="store_true", help="N local single-stream processes instead of the server")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16, 64], help="values of N (default 1 4 16 64)")
    p.add_argument("--seconds", type=float, default=10.0, help="per N (default 10; at most 300)")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second per stream (default 30)")
    p.add_argument("--timeout", type=float, help="served: per try of a request (default 5 s; 65 s with --chaos, so "
                   "a request held for a replacement replica is usually answered; a try that times out is retried)")
    p.add_argument("--chaos", type=float, metavar="SECONDS", help="served: kill one replica (ingress, then each "
                   "temporal shard, in turn) every SECONDS while the load runs")
    p.add_argument("--ray-address", default="auto", help="--chaos: the server's Ray instance (default auto: the one "
                   "on this machine; else HOST:PORT, the address hipart-serve printed at start)")
    p.add_argument("--app-name", default="hipart", help="--chaos: hipart-serve's --app-name (default hipart)")
    p.add_argument("--verify-max", type=int, default=1000, help="served, temporal server: check the temporal answers "
                   "of whole streams until this many are checked per N (default 1000; 0: no check)")
    p.add_argument("--min-conf", type=float, default=None, help="the server's --min-conf, for the temporal check "
                   "(default 0.3, hipart-serve's)")
    p.add_argument("--keypoints", help="keypoint file the streams play (default: the bundled walk)")
    p.add_argument("--artifacts", help="baseline: hipart-export folder (default $HIPART_ARTIFACTS or ./exported)")
    p.add_argument("--threads", type=int, default=1, help="baseline: onnxruntime threads per process (default 1)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--png", help="plot latency and throughput vs N here")
    p.add_argument("--compare", help="a JSON of the other mode, drawn in the same PNG")
    a = p.parse_args(argv)
    if not 0 < a.seconds <= 300 or not 0 < a.fps <= 240 or not all(0 < n <= 256 for n in a.streams):
        p.error("bounded: 0 < --seconds <= 300, 0 < --fps <= 240, 0 < N <= 256")
    if a.chaos is not None and (a.baseline or a.chaos <= 0):
        p.error("--chaos SECONDS (> 0) kills the server's replicas: served mode only")
    timeout = a.timeout or (65.0 if a.chaos else 5.0)
    frames = load_frames(a.keypoints)
    meta: dict[str, Any] = {"fps": a.fps, "seconds": a.seconds, "keypoints": a.keypoints or str(sample_path()),
                            "machine": machine()}  # fmt: skip
    say = lambda m: print(m, flush=True)  # noqa: E731
    if a.baseline:
        rows, info = run_baseline(a.streams, a.seconds, a.fps, a.keypoints, a.artifacts, a.threads, say)
        meta |= {"backend": info, "how": "N processes, each an in-process Estimator.from_keypoints loop over "
                 f"onnxruntime at batch 1 ({a.threads} thread), same schedule and drop rule as the served streams"}
    else:
        _check_loopback(a.url)  # before the first request
        try:
            health = json_answer(*HttpSession(a.url).exchange("GET", "/v1/health", timeout=5.0), "GET /v1/health")
        except (OSError, http.client.HTTPException, RemoteError) as e:
            raise SystemExit(f"serve_load: no hipart-serve at {a.url}: {e}") from None
        from edge.occlusion import DEFAULT_MIN_CONF

        min_conf = DEFAULT_MIN_CONF if a.min_conf is None else a.min_conf
        check, how = (None, "stream ids only (--verify-max 0)")
        if a.verify_max > 0:
            check, how = TemporalCheck.for_server(health, min_conf)
        chaos = Chaos(a.chaos, a.ray_address, a.app_name) if a.chaos else None
        meta |= {"url": a.url, "health": health, "timeout_s": timeout, "retries": 1, "wrong_state_check": how}
        if chaos is not None:
            meta["chaos"] = {"every_s": a.chaos, "order": chaos.order, "replicas": chaos.target,
                             "how": "ray.kill(replica actor, no_restart=True)"}  # fmt: skip
        say(f"served   {how}" + (f"; killing one of {chaos.target} every {a.chaos:g} s" if chaos else ""))
        rows = run_served(a.url, a.streams, a.seconds, a.fps, frames, timeout, say, bool(health.get("temporal")),
                          chaos, check, a.verify_max)  # fmt: skip
        if chaos is not None:
            for r in rows:
                say(f"chaos    N={r['streams']}\n{_chaos_line(r)}")
    meta["machine"]["load_avg_1m_after"] = os.getloadavg()[0]
    result = {"tool": "benchmarks/serve_load.py", "mode": "baseline" if a.baseline else "served", "meta": meta,
              "rows": rows}  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
    if a.png:
        plot(a.png, [result] + ([json.loads(Path(a.compare).read_text())] if a.compare else []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
