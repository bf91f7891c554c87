"""hipart-serve: request checks, per-stream buffers, and one live Ray Serve app (parity with the in-process
Estimator, temporal streams, a killed shard, malformed requests, batching across requests)."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
import torch

pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install 'ray[serve]==2.60.0')")

from edge import cli_serve, serving  # noqa: E402
from edge.backends.torch_backend import TorchBackend  # noqa: E402
from edge.camera_space import Intrinsics  # noqa: E402
from edge.estimator import Estimator, FrameResult  # noqa: E402
from edge.serving import RequestError, ServeOptions, StreamBuffers, StreamFrame, parse_infer, parse_lift  # noqa: E402
from edge.temporal import TemporalStage, load_temporal  # noqa: E402
from edge.weights import load_model  # noqa: E402
from hipart.checkpoint import save_checkpoint  # noqa: E402
from hipart.models.temporal import TemporalConfig, TemporalLifter  # noqa: E402

W, H = 640, 480
T = 5  # the test temporal model's window
K = [500.0, 500.0, 320.0, 240.0]  # intrinsics


def temporal_model() -> TemporalLifter:
    torch.manual_seed(0)
    cfg = TemporalConfig(frames=T, dim=16, blocks=2, heads=2, prune="tpa", recover="tra", schedule_r=(3,),
                         schedule_b=(0,))  # fmt: skip
    return TemporalLifter(cfg).eval()


# -- without Ray ---------------------------------------------------------------------------------------------------
def _lift(**kw) -> bytes:
    body = {"width": W, "height": H, "keypoints": np.zeros((1, 17, 2)).tolist()} | kw
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    "body, says",
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"height": H, "keypoints": []}).encode(), "missing key(s) width"),
        (_lift(keypoint=[]), "unknown key(s) keypoint"),
        (_lift(keypoints=np.zeros((1, 17, 3)).tolist()), "shape [P, 17, 2], got [1, 17, 3]"),
        (_lift(keypoints=[[[1, 2]] * 17, [[1, 2]] * 16]), "ragged"),
        (_lift(keypoints=[[["a", 2]] * 17]), "numbers only"),
        (_lift(keypoints=[[[1, None]] * 17]), "numbers only"),
        (b'{"width": 640, "height": 480, "keypoints": [[' + b", ".join([b"[NaN, 1]"] * 17) + b"]]}", "non-finite"),
        (_lift(keypoints=[[[1e39, 1]] * 17]), "non-finite"),
        (_lift(keypoints=np.zeros((9, 17, 2)).tolist()), "at most 8"),
        (_lift(width=0), "width must be a whole number"),
        (_lift(height=True), "height must be a finite number"),
        (_lift(confidence=[[1.0] * 16]), "confidence must have shape [P, 17]"),
        (_lift(confidence=np.ones((2, 17)).tolist()), "confidence has 2 persons"),
        (_lift(stream_id="a", stream_ids=["a"]), "not both"),
        (_lift(keypoints=np.zeros((2, 17, 2)).tolist(), stream_id="a"), "give stream_ids"),
        (_lift(keypoints=np.zeros((2, 17, 2)).tolist(), stream_ids=["a", "a"]), "must differ"),
        (_lift(stream_id=""), "non-empty string"),
        (_lift(intrinsics=[500, 500, 320]), "[fx, fy, cx, cy]"),
        (_lift(intrinsics=[0, 500, 320, 240]), "focal lengths must be > 0"),
        (_lift(timestamp="now"), "timestamp must be a finite number"),
        (_lift(temporal="yes"), "true or false"),
        (_lift(temporal=True), "runs no temporal model"),
    ],
)
def test_malformed_lift_requests_say_what_is_wrong(body, says):
    with pytest.raises(RequestError) as e:
        parse_lift(body, max_persons=8, temporal_available=False)
    assert says in str(e.value)


def test_requests_parse_into_the_estimator_inputs():
    x = parse_infer(json.dumps({"x_s": np.full((3, 17, 2), 0.25).tolist()}).encode(), 8)
    assert x.dtype == np.float32 and x.shape == (3, 17, 2)
    assert parse_infer(b'{"x_s": []}', 8).shape == (0, 17, 2)
    with pytest.raises(RequestError, match="shape"):
        parse_infer(b'{"x_s": [[1, 2]]}', 8)
    r = parse_lift(_lift(keypoints=np.ones((2, 17, 2)).tolist(), stream_ids=["a", None], timestamp=1.5,
                         intrinsics=K), 8, temporal_available=True)  # fmt: skip
    assert r.keypoints.shape == (2, 17, 2) and (r.confidence == 1).all() and r.stream_ids == ["a", None]
    assert r.temporal and r.timestamp == 1.5 and r.intrinsics.fx == 500.0
    assert not parse_lift(_lift(temporal=False), 8, temporal_available=True).temporal


def test_stream_buffers_warm_up_restart_and_expire():
    clock = [0.0]
    buf = StreamBuffers(temporal_model(), max_gap_s=0.5, timeout_s=10.0, clock=lambda: clock[0])
    g = np.random.default_rng(0)

    def frame(sid: str, t: float) -> StreamFrame:
        return StreamFrame(sid, *(g.normal(0, 0.3, (n, 2)).astype(np.float32) for n in (17, 48, 96)), t)

    statuses = [buf.step([frame("a", k / 30)])[0][1] for k in range(T + 1)]
    assert statuses == ["warmup"] * (T - 1) + ["ok", "ok"]
    assert buf.step([frame("a", 5.0)])[0][1] == "warmup"  # a gap > max_gap: the buffer restarts
    assert buf.step([frame("a", 4.0)])[0][1] == "warmup"  # time going backwards: so does it
    clock[0] = 5.0
    buf.step([frame("b", 0.0)])
    clock[0] = 12.0  # a is idle for 12 s > timeout, b for 7 s
    assert buf.expire() == ["a"] and list(buf.streams) == ["b"]


def test_a_repeated_frame_is_answered_as_before_and_not_pushed_again():
    buf = StreamBuffers(temporal_model(), max_gap_s=0.5)
    ref = StreamBuffers(temporal_model(), max_gap_s=0.5)  # the same frames, each sent once
    g = np.random.default_rng(1)
    frames = [StreamFrame("a", *(g.normal(0, 0.3, (n, 2)).astype(np.float32) for n in (17, 48, 96)), k / 30)
              for k in range(T + 2)]  # fmt: skip
    for f in frames:
        want = ref.step([f])[0]
        first = buf.step([f])[0]
        again = buf.step([f])[0]  # a client's retry after a lost answer: the same timestamp
        other = buf.step([StreamFrame("a", f.x_s + 1, f.dense, f.fine, f.timestamp)])[0]  # the same time: a repeat
        for got in (first, again, other):
            assert got[1] == want[1]
            np.testing.assert_allclose(got[0], want[0], atol=1e-6)
    assert [buf.step([f])[0][1] for f in frames[:1]] == ["warmup"]  # an older timestamp still restarts the buffer
    assert buf.repeats == 2 * len(frames) and buf.streams["a"].stage.resets == 1


def test_shard_of_is_stable_and_spread():
    assert serving.shard_of("camera-1/person-3", 4) == serving.shard_of("camera-1/person-3", 4)
    assert len({serving.shard_of(f"s{i}", 4) for i in range(64)}) == 4


def test_a_shard_call_waits_for_the_restarting_shard_then_gives_up(monkeypatch):
    from ray.exceptions import RayActorError

    class Flaky:
        """A shard handle whose first `fails` calls find the replica dead."""

        def __init__(self, fails: int):
            self.fails, self.step = fails, self

        def remote(self, items: list):
            async def answer() -> list:
                if self.fails:
                    self.fails -= 1
                    raise RayActorError()
                return [(None, "ok")] * len(items)

            return answer()

    ingress = object.__new__(serving.Ingress)  # only its shard calls: no backend needed
    ingress.shards = [Flaky(2)]
    assert asyncio.run(ingress._call_shard(0, [1, 2])) == [(None, "ok")] * 2
    monkeypatch.setattr(serving, "SHARD_WAIT_S", 0.0)
    ingress.shards = [Flaky(10**6)]
    (pose, status), = asyncio.run(ingress._call_shard(0, [1]))
    assert pose is None and status == "dropped: temporal shard temporal-0 unavailable (RayActorError)"


def test_batches_waiting_for_the_backend_share_one_call_up_to_the_cap():
    class SlowEstimator:
        def __init__(self):
            self.calls: list[int] = []

        def lift(self, frames: list) -> list:
            self.calls.append(len(frames))
            time.sleep(0.05)
            return [None] * len(frames)

    ingress = object.__new__(serving.Ingress)  # only its merging: a stand-in Estimator
    ingress.opts, ingress.estimator = ServeOptions(max_batch_size=5), SlowEstimator()
    ingress.waiting, ingress.backend_free = deque(), asyncio.Lock()
    groups = [[serving._Job(FrameResult(), 0.0) for _ in range(k)] for k in (1, 2, 2, 3, 1)]

    async def serve_all() -> list:
        return await asyncio.gather(*(ingress._merged(g) for g in groups))

    answers = asyncio.run(serve_all())
    assert ingress.estimator.calls == [1, 4, 4]  # the first alone (backend free), then what waited, <= 5 a call
    assert [[m["batch"] for _, m in a] for a in answers] == [[1], [4, 4], [4, 4], [4, 4, 4], [4]]
    assert all(err is None for a in answers for err, _ in a)


def test_a_full_replica_answers_503_and_unknown_routes_404():
    from starlette.requests import Request

    ingress = object.__new__(serving.Ingress)  # only its routing: no backend needed
    ingress.opts, ingress.pending = ServeOptions(max_queue=2), 2

    def call(method: str, path: str) -> tuple[int, dict]:
        scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}
        resp = asyncio.run(ingress(Request(scope)))
        return resp.status_code, json.loads(resp.body)

    status, out = call("POST", "/v1/lift")
    assert status == 503 and "overloaded" in out["error"]
    assert call("POST", "/v2/lift")[0] == 404 and call("PUT", "/v1/infer")[0] == 405


def test_a_request_whose_body_never_arrives_is_503_not_a_hang(monkeypatch):
    from starlette.requests import Request

    ingress = object.__new__(serving.Ingress)  # only its routing: no backend needed
    ingress.opts, ingress.pending = ServeOptions(), 0
    monkeypatch.setattr(serving, "BODY_WAIT_S", 0.05)

    async def never() -> dict:  # Serve re-sent the request from a dead replica, without its body
        await asyncio.sleep(3600)
        return {}

    scope = {"type": "http", "method": "POST", "path": "/v1/lift", "headers": [], "query_string": b""}
    resp = asyncio.run(ingress(Request(scope, never)))
    assert resp.status_code == 503 and "did not arrive" in json.loads(resp.body)["error"] and ingress.pending == 0


def test_cli_help_and_refusals(capsys):
    with pytest.raises(SystemExit) as e:
        cli_serve.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--replicas", "--num-cpus", "--num-gpus", "--threads", "--max-batch-size", "--batch-wait-timeout-s",
                 "--max-persons-per-request", "--temporal", "--temporal-shards", "--stream-timeout", "--address",
                 "--host", "--port", "--random-weights", "--checkpoint", "--backend", "exit codes"):  # fmt: skip
        assert flag in out
    with pytest.raises(SystemExit) as e:
        cli_serve.main(["--replicas", "0"])
    assert e.value.code == 2
    assert cli_serve.main(["--checkpoint", "/nonexistent/hipart.pt"]) == 2  # refused before Ray starts
    assert "no such file" in capsys.readouterr().err


# -- one live Ray Serve application for the tests below -----------------------------------------------------------
@dataclass
class Server:
    port: int
    opts: ServeOptions
    health: dict
    ckpt: str

    def request(self, method: str, path: str, body: object = None, timeout: float = 120.0) -> tuple[int, dict]:
        """(status, JSON answer) of one HTTP exchange."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def post(self, path: str, body: object) -> dict:
        status, out = self.request("POST", path, body)
        assert status == 200, out
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ckpt = str(save_checkpoint(tmp_path_factory.mktemp("serve") / "temporal.pt", temporal_model()))
    opts = ServeOptions(backend="torch", random_weights="tiny", threads=1, num_cpus=0.5, replicas=2, max_batch_size=8,
                        batch_wait_timeout_s=0.05, max_persons_per_request=8, max_queue=64, temporal=ckpt,
                        temporal_shards=2, shard_cpus=0.25, app_name="hipart-test", port=_free_port())  # fmt: skip
    try:
        health = serving.start(opts)
        yield Server(opts.port, opts, health, ckpt)
    finally:
        serving.stop(opts)


@pytest.fixture(scope="module")
def reference():
    """The server's model in this process: the same seeded random tiny weights, the torch backend."""
    loaded = load_model(random_weights="tiny")
    return TorchBackend(loaded.model, model_hash=loaded.model_hash)


def _persons(walk_px: np.ndarray, frame: int, n: int) -> np.ndarray:
    """n persons [n,17,2] px side by side, from the walk's frame `frame`."""
    return np.stack([walk_px[(frame + 5 * i) % len(walk_px)] + [120.0 * i - 100.0, 0.0] for i in range(n)])


def test_infer_and_lift_equal_the_in_process_estimator(server, reference, walk_px):
    assert server.request("GET", "/v1/health")[1] == server.health
    assert server.health["model_hash"] == reference.model_hash and server.health["backend"] == "torch"
    est = Estimator(reference, intrinsics=Intrinsics(*K))
    kp = _persons(walk_px, 0, 3).astype(np.float32)
    conf = np.ones((3, 17), np.float32)
    conf[1, :14] = 0.0  # person 1 keeps 3 confident joints: dropped
    conf[2, 5] = 0.1  # person 2: one joint masked
    ref = est.from_keypoints(kp, conf, W, H)
    got = server.post("/v1/lift", {"width": W, "height": H, "keypoints": kp.tolist(), "confidence": conf.tolist(),
                                   "intrinsics": K, "temporal": False})  # fmt: skip
    assert got["model_hash"] == reference.model_hash and got["batch"] >= 1 and "queue_ms" in got["timings"]
    persons = got["persons"]
    assert [p["status"] for p in persons][::2] == ["ok", "ok"] and persons[1]["status"].startswith("dropped: ")
    assert persons[1]["pose3d"] is None
    for p, j in ((persons[0], 0), (persons[2], 1)):
        assert p["tokens"] == ref.result.tokens[j].tolist() and p["pose3d_temporal"] is None
        for key, want in (("dense", ref.dense), ("fine", ref.fine), ("pose3d", ref.pose3d), ("root_cam", ref.root_cam)):
            np.testing.assert_allclose(np.asarray(p[key]), want[j], atol=1e-4 if key != "pose3d" else 1e-5)
    x = est.prepare(FrameResult(width=W, height=H), kpts_px=kp, conf=conf).x_s
    res = reference.infer(x)
    got = server.post("/v1/infer", {"x_s": x.tolist()})
    assert got["tokens"] == res.tokens.tolist()
    for key in ("dense", "fine", "pose3d"):
        np.testing.assert_allclose(np.asarray(got[key]), getattr(res, key), atol=1e-5)


def _stream(server: Server, walk_px: np.ndarray, sid: str, frames: range, shift: float = 0.0) -> list[dict]:
    """One person's frames of one stream, sent in order (timestamps at 30 fps); the person's answers."""
    return [server.post("/v1/lift", {"width": W, "height": H, "keypoints": [(walk_px[k] + shift).tolist()],
                                     "stream_id": sid, "timestamp": k / 30})["persons"][0]
            for k in frames]  # fmt: skip


def _same(a: list[dict], b: list[dict]) -> None:
    assert [p["status"] for p in a] == [p["status"] for p in b]
    np.testing.assert_allclose([p["pose3d_temporal"] for p in a], [p["pose3d_temporal"] for p in b], atol=1e-5)


def test_interleaved_streams_equal_each_stream_alone(server, reference, walk_px):
    n = T + 3
    alone_a = _stream(server, walk_px, "alone-a", range(n))
    alone_b = _stream(server, walk_px, "alone-b", range(n), shift=40.0)
    mixed_a, mixed_b, both_a, both_b = [], [], [], []
    with ThreadPoolExecutor(2) as pool:  # frame k of both streams at once: they share batches
        for k in range(n):
            fa = pool.submit(_stream, server, walk_px, "mixed-a", range(k, k + 1))
            fb = pool.submit(_stream, server, walk_px, "mixed-b", range(k, k + 1), 40.0)
            mixed_a += fa.result()
            mixed_b += fb.result()
    for k in range(n):  # both streams' persons in one request
        pair = np.stack([walk_px[k], walk_px[k] + 40.0])
        body = {"width": W, "height": H, "keypoints": pair.tolist(), "stream_ids": ["both-a", "both-b"],
                "timestamp": k / 30}
        a, b = server.post("/v1/lift", body)["persons"]
        both_a.append(a)
        both_b.append(b)
    assert [p["status"] for p in alone_a] == ["warmup"] * (T - 1) + ["ok"] * (n - T + 1)
    for a, b in ((alone_a, mixed_a), (alone_a, both_a), (alone_b, mixed_b), (alone_b, both_b)):
        _same(a, b)
    assert not np.allclose(alone_a[-1]["pose3d_temporal"], alone_b[-1]["pose3d_temporal"])
    # and the stream's temporal 3D is the in-process temporal stage's on the same frames
    est = Estimator(reference, temporal=TemporalStage(load_temporal(server.ckpt), "causal"))
    ref = [est.from_keypoints(walk_px[k][None], None, W, H, timestamp=k / 30).pose3d[0] for k in range(n)]
    np.testing.assert_allclose([p["pose3d_temporal"] for p in alone_a], ref, atol=1e-5)


def _ids_on(shard: int, prefix: str) -> str:
    return next(f"{prefix}-{i}" for i in range(100) if serving.shard_of(f"{prefix}-{i}", 2) == shard)


def test_a_killed_shard_restarts_its_streams_and_loses_no_request(server, walk_px):
    import ray

    victim, other = _ids_on(0, "victim"), _ids_on(1, "other")
    other_before = _stream(server, walk_px, other, range(T + 1), 40.0)
    answers: list[dict] = []
    n = 3 * T + 2

    def send() -> None:
        for k in range(n):
            answers.extend(_stream(server, walk_px, victim, range(k, k + 1)))

    with ThreadPoolExecutor(1) as pool:  # the victim's frames keep coming while its shard is killed
        sent = pool.submit(send)
        while len(answers) < T + 1:
            time.sleep(0.01)
        prefix = f"SERVE_REPLICA::{server.opts.app_name}#{serving.shard_name(0)}#"
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)]
        assert len(names) == 1
        ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)  # Serve's documented fault drill
        sent.result()
    statuses = [a["status"] for a in answers]
    assert len(answers) == n  # every request answered (by the restarted shard)
    r = statuses.index("warmup", T)  # the first frame the new replica saw: a fresh buffer
    assert statuses == ["warmup"] * (T - 1) + ["ok"] * (r - T + 1) + ["warmup"] * (T - 1) + ["ok"] * (n - r - T + 1)
    _same(answers[r:], _stream(server, walk_px, _ids_on(0, "fresh"), range(r, n)))  # no other stream's state in it
    other_after = _stream(server, walk_px, other, range(T + 1, T + 3), 40.0)
    assert other_before[-1]["status"] == "ok" and [p["status"] for p in other_after] == ["ok", "ok"]  # unharmed


def _lift_with_one_retry(server: Server, body: dict, failures: list[str]) -> dict:
    """One /v1/lift frame, sent again once (the same body: the same timestamp) if the first try fails."""
    for attempt in (0, 1):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)  # < --stream-timeout (60 s)
        try:
            conn.request("POST", "/v1/lift", json.dumps(body).encode(), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            status, payload = resp.status, resp.read()
        except (OSError, http.client.HTTPException) as e:  # the connection broke
            status, payload = None, f"{type(e).__name__}: {e}".encode()
        finally:
            conn.close()
        if status == 200:
            return json.loads(payload)["persons"][0]
        failures.append(f"{body['stream_id']} t={body['timestamp']:.3f} try {attempt}: {status} {payload[:80]!r}")
        assert status in (None, 500, 503), failures[-1]  # the replica died under it, or none could take it
        time.sleep(0.2)
    raise AssertionError(f"no answer after one retry: {failures[-2:]}")


def test_a_killed_ingress_replica_fails_over_and_no_stream_reads_another_state(server, walk_px):
    import ray
    from ray import serve

    prefix = f"SERVE_REPLICA::{server.opts.app_name}#ingress#"

    def replicas() -> list[str]:
        named = ray.util.list_named_actors(all_namespaces=True)
        return sorted(a["name"] for a in named if a["name"].startswith(prefix))

    assert len(replicas()) == 2
    streams = {_ids_on(0, "failover"): 0.0, _ids_on(1, "failover"): 40.0}  # one stream on each shard
    answers: dict[str, list[dict]] = {sid: [] for sid in streams}
    failures: list[str] = []
    killed = threading.Event()
    busy = dict.fromkeys(streams, False)  # a request of the stream in flight

    def send(sid: str, shift: float) -> None:  # frames in order, until 2 T frames after the kill
        k, last = 0, 300
        while k < last:
            if killed.is_set() and last == 300:
                last = k + 2 * T
            body = {"width": W, "height": H, "keypoints": [(walk_px[k % len(walk_px)] + shift).tolist()],
                    "stream_id": sid, "timestamp": k / 30}  # fmt: skip
            busy[sid] = True
            answers[sid].append(_lift_with_one_retry(server, body, failures))
            busy[sid] = False
            k += 1

    with ThreadPoolExecutor(2) as pool:
        sent = [pool.submit(send, sid, shift) for sid, shift in streams.items()]
        victim = replicas()[0]
        while (min(len(a) for a in answers.values()) < T or not all(busy.values())) and not any(f.done() for f in sent):
            time.sleep(0.001)  # until both streams have a request in flight (each on either replica)
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)  # Serve's documented fault drill
        killed.set()
        for f in sent:
            f.result()
    # every frame answered (after at most one retry), each with its own stream's state: the same stream replayed
    # alone from a fresh buffer gives the same statuses and temporal 3D, frame by frame
    for (sid, shift), fresh in zip(streams.items(), ("replay-a", "replay-b"), strict=True):
        got = answers[sid]
        assert [p["stream_id"] for p in got] == [sid] * len(got) and len(got) > 2 * T
        alone = [_lift_with_one_retry(server, {"width": W, "height": H, "stream_id": fresh, "timestamp": k / 30,
                                               "keypoints": [(walk_px[k % len(walk_px)] + shift).tolist()]}, [])
                 for k in range(len(got))]  # fmt: skip
        _same(got, alone)
    a, b = (answers[sid][-1]["pose3d_temporal"] for sid in streams)
    assert not np.allclose(a, b)  # the two streams' states differ, so a mix-up would show
    deadline = time.monotonic() + 60  # Serve replaces the killed replica
    while time.monotonic() < deadline:
        ingress = serve.status().applications[server.opts.app_name].deployments["ingress"]
        if ingress.replica_states.get("RUNNING") == 2 and victim not in replicas() and len(replicas()) == 2:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no replacement for {victim}: {replicas()}")
    print(f"ingress replica killed; failed tries, each answered on its retry: {failures}")


def test_malformed_requests_are_400_and_the_server_keeps_serving(server, walk_px):
    bad = [
        ("/v1/lift", b"{oops"),
        ("/v1/lift", {"width": W, "keypoints": []}),
        ("/v1/lift", {"width": W, "height": H, "keypoints": [[[1.0, 2.0]] * 16]}),
        ("/v1/lift", b'{"width": 640, "height": 480, "keypoints": [[' + b", ".join([b"[NaN, 1]"] * 17) + b"]]}"),
        ("/v1/lift", {"width": W, "height": H, "keypoints": np.zeros((9, 17, 2)).tolist()}),
        ("/v1/infer", {"x_s": [[[0.0, 0.0]] * 17], "extra": 1}),
        ("/v1/infer", {"x_s": np.zeros((9, 17, 2)).tolist()}),
    ]
    for path, body in bad:
        status, out = server.request("POST", path, body)
        assert status == 400 and out["error"], (path, body, out)
    assert server.request("POST", "/v1/nope", {})[0] == 404
    assert server.request("GET", "/v1/lift")[0] == 405
    assert server.post("/v1/lift", {"width": W, "height": H, "keypoints": [walk_px[0].tolist()]})["persons"][0][
        "status"] == "ok"  # fmt: skip


def test_concurrent_requests_share_backend_calls(server, reference, walk_px):
    est = Estimator(reference)
    xs = [est.prepare(FrameResult(width=W, height=H), kpts_px=_persons(walk_px, k, 1 + k % 3)).x_s
          for k in range(16)]  # fmt: skip
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda x: server.post("/v1/infer", {"x_s": x.tolist()}), xs))
    assert max(a["batch"] for a in answers) > 1  # requests from several clients in one backend call
    for x, a in zip(xs, answers, strict=True):  # and each got its own persons back
        res = reference.infer(x)
        assert a["tokens"] == res.tokens.tolist()
        np.testing.assert_allclose(np.asarray(a["pose3d"]), res.pose3d, atol=1e-5)
