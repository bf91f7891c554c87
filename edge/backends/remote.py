"""The remote backend: HiPART on a `hipart-serve` server, over its HTTP API v1 (docs/RUNTIME.md, *Remote inference*).

`hipart-run --server URL` swaps it in for the local backend: capture, detection, tracking, smoothing, the HUD, the
sinks and the per-frame fault handling stay the local ones; only the pure model call `infer(x_s)` (normalised, masked
input) crosses the network as POST /v1/infer. Standard library only (http.client, json): it runs on a Jetson without
Ray or requests.

Failure policy (one kept-alive connection; every exchange bounded by `timeout`):
- at start, GET /v1/health must answer, else `ServerUnavailable` ("no hipart-serve at URL: ..."); it names the model;
- the server away (refused, reset, no answer within `timeout`) or overloaded (HTTP 503): the call raises
  `ServerUnavailable`, which the Estimator turns into that frame's "error: hipart: ..." status; later calls try again
  with backoff (0.05 s doubling up to `retry`), each waiting at most `timeout` / 2 for its attempt, so no call blocks
  longer than `timeout`, failing frames are paced instead of racing through a file source (the pipeline does not
  count an unavailable backend towards its 25-failures-in-a-row stop), and results resume by themselves once the
  server answers again;
- any other error answer (HTTP 400 malformed, 404, 500, not API v1): `RemoteError` for that call only.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
import urllib.parse
from typing import Any

import numpy as np

from edge.backends.base import Backend, BackendArgs, BackendError, BackendUnavailable, Result
from edge.occlusion import DEFAULT_MIN_CONF
from hipart import skeleton

log = logging.getLogger("hipart.edge")

DEFAULT_TIMEOUT_S = 1.0  # hipart-run --server-timeout: the longest one frame waits on the server
DEFAULT_RETRY_S = 0.5  # hipart-run --server-retry: the longest gap between reconnection attempts
FIRST_RETRY_S = 0.05  # first reconnection delay; doubles per failed attempt up to `retry`
START_TIMEOUT_S = 5.0  # the start-up health check waits at least this long (a server may still be warming up)
# The peer closed a kept-alive connection (idle timeout, restart): worth one more try on a fresh connection.
_STALE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, http.client.RemoteDisconnected)
_SHAPES = {"dense": (skeleton.NUM_DENSE, 2), "fine": (skeleton.NUM_FINE, 2), "pose3d": (skeleton.NUM_JOINTS, 3),
           "tokens": (skeleton.NUM_BONES + skeleton.NUM_DENSE,)}  # fmt: skip


class ServerUnavailable(BackendUnavailable):
    """The server cannot be reached: refused, reset, or no answer in time."""


class RemoteError(BackendError):
    """The server answered with an error (HTTP 4xx / 5xx) or with something that is not API v1."""


def server_url(text: str) -> str:
    """'http(s)://host[:port][/prefix]' normalised (no trailing slash; 'host:port' gets http://), else ValueError."""
    text = text.strip()
    u = urllib.parse.urlsplit(text if "://" in text else f"http://{text}")
    if u.scheme not in ("http", "https"):
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    try:
        port = u.port
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    if not u.hostname or u.query or u.fragment:
        raise ValueError(f"expected http://HOST[:PORT] (e.g. http://127.0.0.1:8000), got {text!r}")
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    return f"{u.scheme}://{host}{f':{port}' if port else ''}{u.path.rstrip('/')}"


def _why(e: BaseException, timeout: float) -> str:
    """A transport failure in a few words."""
    if isinstance(e, TimeoutError):
        return f"no answer within {timeout:g} s"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class HttpSession:
    """One kept-alive HTTP/1.1 connection to a server, reopened when it breaks; every exchange has a deadline."""

    def __init__(self, url: str):
        self.url = server_url(url)
        u = urllib.parse.urlsplit(self.url)
        self._cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        self._host, self._port, self._prefix = u.hostname or "", u.port, u.path
        self._conn: http.client.HTTPConnection | None = None

    def exchange(self, method: str, path: str, body: Any = None, timeout: float = DEFAULT_TIMEOUT_S,
                 retry_stale: bool = True) -> tuple[int, bytes]:  # fmt: skip
        """(HTTP status, body) of one request with a JSON body; OSError / HTTPException when the transport fails.

        A kept-alive connection the server has closed meanwhile is replaced once (`retry_stale`; only for requests
        that are safe to send twice)."""
        data = None if body is None else json.dumps(body, allow_nan=False).encode()
        deadline = time.monotonic() + timeout
        while True:
            reused = self._conn is not None
            try:
                conn = self._conn or self._open(deadline)
                self._settimeout(deadline)
                conn.request(method, self._prefix + path, body=data, headers={"Content-Type": "application/json"})
                self._settimeout(deadline)
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if reused and retry_stale and isinstance(e, _STALE) and time.monotonic() < deadline:
                    continue  # the server closed the idle connection (or restarted): once more on a fresh one
                raise
            if resp.will_close:
                self.close()
            return resp.status, payload

    def _open(self, deadline: float) -> http.client.HTTPConnection:
        conn = self._cls(self._host, self._port, timeout=max(deadline - time.monotonic(), 1e-3))
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = conn
        return conn

    def _settimeout(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        if self._conn is not None and self._conn.sock is not None:
            self._conn.sock.settimeout(left)

    def close(self) -> None:
        """Drop the connection (the next exchange opens a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _said(payload: bytes) -> str:
    """The "error" of an API v1 error answer, else the start of the body."""
    try:
        obj = json.loads(payload)
    except ValueError:
        obj = None
    return str(obj["error"]) if isinstance(obj, dict) and "error" in obj else payload[:200].decode(errors="replace")


def json_answer(status: int, payload: bytes, what: str) -> dict[str, Any]:
    """The JSON object of a 200 answer; RemoteError naming `what` (and the server's "error") otherwise."""
    try:
        obj = json.loads(payload)
    except ValueError:
        obj = None
    if status == 200 and isinstance(obj, dict):
        return obj
    said = _said(payload)
    kind = {400: "refused the request", 503: "is overloaded"}.get(status, "failed")
    if status == 200:
        kind = "answered with something that is not a JSON object"
    raise RemoteError(f"{what}: hipart-serve {kind} (HTTP {status}): {said}")


class RemoteBackend(Backend):
    """HiPART on a hipart-serve server: `infer` is POST /v1/infer on a kept-alive connection (see the module doc)."""

    name = "remote"

    @classmethod
    def availability(cls, *args: Any, **kwargs: Any) -> tuple[bool, str]:
        """Never picked by `auto` or run by hipart-bench: it needs a server URL."""
        return False, "remote backend: needs a server URL (hipart-run --server URL)"

    @classmethod
    def create(cls, a: BackendArgs) -> RemoteBackend:
        """Not built from the registry's common arguments (they carry no URL)."""
        raise BackendError("remote backend: give the server's URL: hipart-run --server URL, or RemoteBackend(url)")

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT_S, retry: float = DEFAULT_RETRY_S,
                 min_conf: float = DEFAULT_MIN_CONF):  # fmt: skip
        super().__init__("unknown", min_conf)
        self.url = server_url(url)
        self.timeout, self.retry = float(timeout), float(retry)
        self._http = HttpSession(self.url)
        self._lock = threading.Lock()
        self._failures, self._next_try, self._down_since, self._last_error = 0, 0.0, 0.0, ""
        self.last_answer: dict[str, Any] = {}  # replica, batch and server timings of the last answer
        health = self.health(max(self.timeout, START_TIMEOUT_S))
        self.model_hash = str(health.get("model_hash") or "unknown")
        self.server_backend, self.server_temporal = health.get("backend"), health.get("temporal")
        self.device = f"{self.url} ({self.server_backend or 'unknown backend'})"

    def health(self, timeout: float | None = None) -> dict[str, Any]:
        """GET /v1/health; ServerUnavailable ("no hipart-serve at URL: ...") unless it answers {"ok": true, ...}."""
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            try:
                status, payload = self._http.exchange("GET", "/v1/health", timeout=timeout)
                reply = json_answer(status, payload, "GET /v1/health")
            except (OSError, http.client.HTTPException) as e:
                raise ServerUnavailable(f"no hipart-serve at {self.url}: {_why(e, timeout)}") from None
            except RemoteError as e:
                raise ServerUnavailable(f"no hipart-serve at {self.url}: {e}") from None
        if reply.get("ok") is not True:
            raise ServerUnavailable(f"no hipart-serve at {self.url}: /v1/health says it is not ok: {reply}")
        return reply

    def _infer(self, x_s: np.ndarray) -> Result:
        body = {"x_s": x_s.tolist()}  # float32 values as JSON numbers: exact both ways
        with self._lock:
            t0 = time.monotonic()
            self._await_retry(t0)
            try:
                status, payload = self._http.exchange("POST", "/v1/infer", body, self.timeout - (time.monotonic() - t0))
            except (OSError, http.client.HTTPException) as e:
                raise self._went_away(f"no hipart-serve at {self.url}: {_why(e, self.timeout)}") from None
            if status == 503:  # overloaded: back off as from an absent server, so this client adds no load
                raise self._went_away(f"hipart-serve at {self.url} is overloaded (HTTP 503): {_said(payload)}")
            self._is_back()
        reply = json_answer(status, payload, "POST /v1/infer")
        return self._result(reply, len(x_s), (time.monotonic() - t0) * 1e3)

    def _await_retry(self, now: float) -> None:
        """While the server is away: wait (at most timeout / 2) for the next reconnection attempt, or fail now."""
        if not self._failures:
            return
        wait = min(self._next_try - now, self.timeout / 2)
        if wait > 0:
            time.sleep(wait)
        left = self._next_try - time.monotonic()
        if left > 0:
            raise ServerUnavailable(f"{self._last_error} (next attempt in {left:.1f} s)")

    def _went_away(self, error: str) -> ServerUnavailable:
        """Count a failed exchange, schedule the next attempt (backoff) and say so once per outage."""
        now = time.monotonic()
        self._last_error = error
        if not self._failures:
            self._down_since = now
            log.warning("%s: frames fail until it answers again; retrying every <= %g s", error, self.retry)
        self._failures += 1
        self._next_try = now + min(self.retry, FIRST_RETRY_S * 2 ** (self._failures - 1))
        return ServerUnavailable(f"{error} (retrying)")

    def _is_back(self) -> None:
        if self._failures:
            log.warning("hipart-serve at %s answers again after %.1f s (%d failed attempts)", self.url,
                        time.monotonic() - self._down_since, self._failures)  # fmt: skip
        self._failures = 0

    def _result(self, reply: dict[str, Any], b: int, round_trip_ms: float) -> Result:
        """The Result of a /v1/infer answer for b poses; RemoteError when it is not API v1."""
        try:
            out = {k: np.asarray(reply[k], np.int64 if k == "tokens" else np.float32) for k in _SHAPES}
            timings = {k: float(v) for k, v in (reply.get("timings") or {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise RemoteError(f"POST /v1/infer: the answer is not API v1 ({type(e).__name__}: {e})") from None
        for k, shape in _SHAPES.items():
            if out[k].shape != (b, *shape):
                raise RemoteError(f"POST /v1/infer: hipart-serve answered {k} of shape {list(out[k].shape)} for {b} "
                                  f"poses, expected {[b, *shape]}")  # fmt: skip
        served = reply.get("model_hash")
        if served and served != self.model_hash:
            log.warning("hipart-serve at %s now serves model %s (was %s)", self.url, served, self.model_hash)
            self.model_hash = str(served)
        self.last_answer = {"replica": reply.get("replica"), "batch": reply.get("batch"), "timings": timings}
        queue, infer = timings.get("queue_ms", 0.0), timings.get("infer_ms", 0.0)
        return Result(out["dense"], out["fine"], out["pose3d"], out["tokens"],
                      {"server_queue": queue, "server_infer": infer, "http": round_trip_ms - queue - infer})

    def info(self) -> dict[str, Any]:
        """Adds the server URL, its backend and temporal stage, and the client's timeout and retry."""
        return {**super().info(), "url": self.url, "server_backend": self.server_backend,
                "server_temporal": self.server_temporal, "timeout_s": self.timeout, "retry_s": self.retry}  # fmt: skip

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._http.close()
