"""A stand-in for hipart-serve's HTTP API v1 (docs/RUNTIME.md, *Remote inference*): standard library only, in-process
over a real Backend, on 127.0.0.1, so the remote client's tests need no Ray.

/v1/health, /v1/infer (the pure `Backend.infer`) and /v1/lift (pixels through the Estimator's input policy; no temporal
stage, so `pose3d_temporal` is null and the stream ids are only echoed). One request at a time, so `batch` is always 1.
`stop()` closes the listener and every open connection, like a killed server; `start()` again brings it back on the
same port. `fault` makes every request answer that (status, error); `delay` slows every answer down.

    python -m tests.edge.serve_stub --port 8000                       # bundled model on onnxruntime (./exported)
    python -m tests.edge.serve_stub --port 8000 --random-weights tiny # torch, untrained (plumbing only)
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from edge.backends.base import Backend
from edge.camera_space import Intrinsics
from edge.estimator import Estimator
from edge.occlusion import DEFAULT_MIN_CONF, sanitize_keypoints, usable_persons


class BadRequest(ValueError):
    """A malformed request: answered with HTTP 400."""


def _array(req: dict[str, Any], key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """req[key] as a finite float32 array of `shape` (None: any length); BadRequest otherwise."""
    try:
        a = np.asarray(req[key], np.float32)
    except KeyError:
        raise BadRequest(f"{key} is missing") from None
    except (TypeError, ValueError) as e:
        raise BadRequest(f"{key} is not an array of numbers ({e})") from None
    if a.size == 0 and shape[0] is None:
        a = a.reshape(0, *shape[1:])
    if a.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, a.shape, strict=True)):
        raise BadRequest(f"{key} must have shape {[s or 'P' for s in shape]}, got {list(a.shape)}")
    if not np.isfinite(a).all():
        raise BadRequest(f"{key} holds NaN or inf")
    return a


class ServeStub:
    """hipart-serve's API v1 over `backend`, on 127.0.0.1:`port` (0: a free one, kept across stop/start)."""

    def __init__(self, backend: Backend, port: int = 0, host: str = "127.0.0.1", min_conf: float = DEFAULT_MIN_CONF):
        self.backend, self.host, self.port, self.min_conf = backend, host, port, min_conf
        self.fault: tuple[int, str] | None = None  # every request answers this (status, error) while set
        self.delay = 0.0  # seconds added to every answer
        self.requests = 0  # requests answered (any route, any status)
        self.connections = 0  # TCP connections accepted
        self._lock = threading.Lock()  # one model call at a time
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        """http://host:port."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServeStub:
        """Listen and serve in a background thread."""
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the listener and every open connection at once, like a killed server."""
        srv, self._server = self._server, None
        if srv is not None:
            srv.shutdown()
            srv.server_close()
            srv.drop_connections()

    def __enter__(self) -> ServeStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- routes ------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """GET /v1/health."""
        return {"ok": True, "model_hash": self.backend.model_hash, "backend": self.backend.name, "temporal": None}

    def infer(self, req: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/infer: x_s [P,17,2] -> the Backend.infer outputs as JSON."""
        x = _array(req, "x_s", (None, 17, 2))
        t0 = time.perf_counter()
        with self._lock:
            t1 = time.perf_counter()
            res = self.backend.infer(x)
        t2 = time.perf_counter()
        out = {k: getattr(res, k).tolist() for k in ("dense", "fine", "pose3d", "tokens")}
        return out | self._meta(t0, t1, t2)

    def lift(self, req: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/lift: keypoints in pixels through the Estimator's input policy -> one entry per person."""
        k = _array(req, "keypoints", (None, 17, 2))
        p = len(k)
        c = _array(req, "confidence", (p, 17)) if req.get("confidence") is not None else np.ones((p, 17), np.float32)
        try:
            w, h = int(req["width"]), int(req["height"])
            ids = req.get("stream_ids") or ([req["stream_id"]] if "stream_id" in req else [None] * p)
            intr = Intrinsics(*map(float, req["intrinsics"])) if req.get("intrinsics") else None
        except (KeyError, TypeError, ValueError) as e:
            raise BadRequest(f"bad width / height / stream ids / intrinsics ({type(e).__name__}: {e})") from None
        if w < 1 or h < 1 or len(ids) != p:
            raise BadRequest(f"need width, height >= 1 and one stream id per person ({p}), got {w}x{h}, {len(ids)}")
        keep = usable_persons(sanitize_keypoints(k, c, w, h)[1], self.min_conf)
        t0 = time.perf_counter()
        with self._lock:
            t1 = time.perf_counter()
            fr = Estimator(self.backend, min_conf=self.min_conf, intrinsics=intr).from_keypoints(k, c, w, h)
        t2 = time.perf_counter()
        roots, rows, persons = fr.root_cam, iter(range(len(fr))), []
        for i in range(p):
            if not keep[i]:
                persons.append({"dense": None, "fine": None, "pose3d": None, "tokens": None, "pose3d_temporal": None,
                                "root_cam": None, "stream_id": ids[i], "status": "dropped: too few confident joints"})
                continue
            j = next(rows)
            persons.append({"dense": fr.dense[j].tolist(), "fine": fr.fine[j].tolist(), "pose3d": fr.pose3d[j].tolist(),
                            "tokens": fr.result.tokens[j].tolist(), "pose3d_temporal": None,
                            "root_cam": None if roots is None else roots[j].tolist(), "stream_id": ids[i],
                            "status": "ok"})  # fmt: skip
        return {"persons": persons} | self._meta(t0, t1, t2)

    def _meta(self, t0: float, t1: float, t2: float) -> dict[str, Any]:
        return {"model_hash": self.backend.model_hash, "replica": "stub-0", "batch": 1,
                "timings": {"queue_ms": (t1 - t0) * 1e3, "infer_ms": (t2 - t1) * 1e3}}  # fmt: skip


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that knows its open connections (so `stop` can cut them like a crash)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, addr: tuple[str, int], stub: ServeStub):
        super().__init__(addr, _Handler)
        self.stub = stub
        self._open: set[socket.socket] = set()
        self._guard = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Remember the connection, then serve it in its own thread."""
        with self._guard:
            self._open.add(request)
        self.stub.connections += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection as it closes."""
        with self._guard:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that went away (or a cut connection) is no error of the stub's."""

    def drop_connections(self) -> None:
        """Cut every open connection."""
        with self._guard:
            conns = list(self._open)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Ray Serve's proxy
    disable_nagle_algorithm = True  # headers and body are two writes: without this each answer waits ~40 ms for an ACK

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        """GET /v1/health."""
        self._answer(lambda: self.server.stub.health() if self.path == "/v1/health" else None)

    def do_POST(self) -> None:
        """POST /v1/infer and /v1/lift."""
        stub = self.server.stub
        route = {"/v1/infer": stub.infer, "/v1/lift": stub.lift}.get(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def call() -> dict[str, Any] | None:
            if route is None:
                return None
            try:
                req = json.loads(body)
            except ValueError as e:
                raise BadRequest(f"body is not JSON ({e})") from None
            if not isinstance(req, dict):
                raise BadRequest("body must be a JSON object")
            return route(req)

        self._answer(call)

    def _answer(self, call: Any) -> None:
        stub = self.server.stub
        status, reply = 200, None
        try:
            if stub.fault is not None:
                status, reply = stub.fault[0], {"error": stub.fault[1]}
            else:
                reply = call()
                if reply is None:
                    status, reply = 404, {"error": f"no route {self.command} {self.path}"}
        except BadRequest as e:
            status, reply = 400, {"error": str(e)}
        except Exception as e:  # the model failed: the server keeps serving
            status, reply = 500, {"error": f"{type(e).__name__}: {e}"}
        time.sleep(stub.delay)
        data = json.dumps(reply).encode()
        stub.requests += 1
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client went away (or stop() cut the connection)
            self.close_connection = True


def main(argv: list[str] | None = None) -> None:
    """Serve the bundled model (onnxruntime, ./exported) or random weights (torch) until Ctrl-C."""
    from edge.backends import create_backend
    from edge.weights import bundled_reference, load_model

    p = argparse.ArgumentParser(prog="python -m tests.edge.serve_stub", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--artifacts", help="hipart-export folder (default $HIPART_ARTIFACTS or ./exported)")
    p.add_argument("--random-weights", metavar="ARCH", help="an untrained torch model instead (paper | edge | tiny)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    if a.random_weights:
        loaded = load_model(random_weights=a.random_weights)
        backend = create_backend("torch", loaded.model, model_hash=loaded.model_hash, threads=a.threads)
    else:
        ref = bundled_reference()
        backend = create_backend("onnxruntime", artifacts=a.artifacts, threads=a.threads,
                                 model_hash=ref.model_hash if ref else "unknown")  # fmt: skip
    stub = ServeStub(backend, a.port).start()
    print(f"serve_stub: {backend.name} model {backend.model_hash} at {stub.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stub.stop()


if __name__ == "__main__":
    main()
