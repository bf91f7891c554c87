"""Load test of hipart-serve (issue 20): N simulated 30 fps keypoint streams, loopback only, bounded in time.

Served (default): each stream is a thread with its own kept-alive connection (edge.backends.remote.HttpSession) that
sends POST /v1/lift with one person and its stream_id on a fixed schedule (frame k due at start + phase + k / fps; the
N phases spread over one period, like unsynchronised cameras). A stream whose previous request is still in flight when
its next frame is due DROPS that frame and counts it, like a live camera. Per N it records throughput (poses/s
answered), latency (request sent -> answer read: p50 / p90 / p99), the batch sizes and replicas the server reports,
dropped frames, errors (by kind) and wrong-state answers (a person whose stream_id is not the one sent).

Baseline (--baseline): the same N streams, schedule and drop rule, but each stream is its own Python process running
an in-process `Estimator.from_keypoints` loop over the local onnxruntime backend at batch 1 (1 intra-op thread each by
default; all N on the same cores) -- the per-frame work of `hipart-run --source KPTS --backend onnxruntime --pace
--max-batch-frames 1` without its threads, queues and file writing, timed the same way as a served request.

Bounded: every stream sends at most seconds x fps requests per N (each with --timeout), one warm-up request first.

    python -m tests.edge.serve_stub --port 8000 &                 # or hipart-serve
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --streams 1 4 16 64 --seconds 10 --json served.json
    python benchmarks/serve_load.py --baseline --streams 1 4 16 --seconds 10 --json baseline.json
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --compare baseline.json --png served-vs-baseline.png
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
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


@dataclass
class Answer:
    """What one request (served) or one local call (baseline) gave back."""

    poses: int = 0
    wrong_state: bool = False
    batch: int | None = None
    replica: str | None = None
    status: str = "ok"


@dataclass
class StreamStats:
    """One stream's counts over its run."""

    due: int = 0
    sent: int = 0
    answered: int = 0  # answers for the right stream
    poses: int = 0
    dropped: int = 0
    errors: int = 0
    wrong_state: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    batch_sizes: Counter = field(default_factory=Counter)
    replicas: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    error_kinds: Counter = field(default_factory=Counter)


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
        except Exception as e:  # transport failure, HTTP error, model error: counted by kind
            st.errors += 1
            st.error_kinds[f"{type(e).__name__}: {str(e)[:120]}"] += 1
        else:
            if ans.wrong_state:
                st.wrong_state += 1
            else:
                st.answered += 1
                st.poses += ans.poses
                st.latencies_ms.append((time.monotonic() - t0) * 1e3)
            st.batch_sizes[str(ans.batch)] += 1
            st.replicas[str(ans.replica)] += 1
            st.statuses[ans.status] += 1
        nxt = min(st.due, max(k + 1, math.ceil((time.monotonic() - t_start - phase) / period)))
        st.dropped += nxt - k - 1
        k = nxt
    return st


class LiftClient:
    """One served stream: POST /v1/lift (one person, this stream's id) on its own kept-alive connection."""

    def __init__(self, url: str, stream_id: str, timeout: float):
        self.http, self.stream_id, self.timeout = HttpSession(url), stream_id, timeout

    def __call__(self, frame: KeypointFrame, t: float) -> Answer:
        """Send one frame; RemoteError / OSError when it fails."""
        k, c, w, h = frame
        body = {"width": w, "height": h, "keypoints": k.tolist(), "confidence": c.tolist(),
                "stream_id": self.stream_id, "timestamp": t}  # fmt: skip
        # a lift call feeds the stream's temporal state: never sent twice, so no retry on a stale connection
        status, payload = self.http.exchange("POST", "/v1/lift", body, self.timeout, retry_stale=False)
        reply = json_answer(status, payload, "POST /v1/lift")
        persons = reply.get("persons")
        if not isinstance(persons, list) or len(persons) != 1:
            raise RemoteError(f"POST /v1/lift: expected 1 person back, got {persons!r:.80}")
        p = persons[0]
        ok = str(p.get("status", "")) in ("ok", "warmup")
        return Answer(int(ok), p.get("stream_id") != self.stream_id, reply.get("batch"), reply.get("replica"),
                      str(p.get("status")))  # fmt: skip


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
        for k in ("due", "sent", "answered", "poses", "dropped", "errors", "wrong_state"):
            setattr(tot, k, getattr(tot, k) + getattr(s, k))
        tot.latencies_ms += s.latencies_ms
        for k in ("batch_sizes", "replicas", "statuses", "error_kinds"):
            getattr(tot, k).update(getattr(s, k))
    return {
        "streams": n, "seconds": seconds, "fps": fps, "offered_per_s": n * fps,
        "due": tot.due, "sent": tot.sent, "answered": tot.answered, "poses": tot.poses,
        "poses_per_s": tot.poses / seconds, "latency_ms": _percentiles(tot.latencies_ms),
        "dropped": tot.dropped, "drop_rate": tot.dropped / max(tot.due, 1), "errors": tot.errors,
        "error_kinds": dict(tot.error_kinds.most_common(5)), "wrong_state": tot.wrong_state,
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


def run_served(url: str, streams: list[int], seconds: float, fps: float, frames: list[KeypointFrame],
               timeout: float = 5.0, say: Callable[[str], None] = lambda m: None) -> list[dict[str, Any]]:  # fmt: skip
    """The served rows: N LiftClient threads per N, each warmed up with one request first."""
    _check_loopback(url)
    rows = []
    for n in streams:
        clients = [LiftClient(url, f"cam-{n}-{i}", timeout) for i in range(n)]
        for i, c in enumerate(clients):  # connect + warm up (not counted)
            c(frames[i % len(frames)], 0.0)
        t_start = time.monotonic() + 0.2
        out: list[StreamStats | None] = [None] * n

        def stream(i: int, client: LiftClient, t_start: float, n: int, out: list[StreamStats | None]) -> None:
            out[i] = run_stream(client, frames, t_start, seconds, fps, i / (n * fps), 7 * i)

        threads = [threading.Thread(target=stream, args=(i, c, t_start, n, out), daemon=True)
                   for i, c in enumerate(clients)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + timeout + 10)
        for c in clients:
            c.http.close()
        rows.append(summarise(n, seconds, fps, [s or StreamStats() for s in out]))
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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="\n".join(__doc__.splitlines()[-4:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--url", default="http://127.0.0.1:8000", type=server_url, help="hipart-serve (loopback only)")
    p.add_argument("--baseline", action="store_true", help="N local single-stream processes instead of the server")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16, 64], help="values of N (default 1 4 16 64)")
    p.add_argument("--seconds", type=float, default=10.0, help="per N (default 10; at most 300)")
    p.add_argument("--fps", type=float, default=30.0, help="frames per second per stream (default 30)")
    p.add_argument("--timeout", type=float, default=5.0, help="served: per request (default 5 s)")
    p.add_argument("--keypoints", help="keypoint file the streams play (default: the bundled walk)")
    p.add_argument("--artifacts", help="baseline: hipart-export folder (default $HIPART_ARTIFACTS or ./exported)")
    p.add_argument("--threads", type=int, default=1, help="baseline: onnxruntime threads per process (default 1)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--png", help="plot latency and throughput vs N here")
    p.add_argument("--compare", help="a JSON of the other mode, drawn in the same PNG")
    a = p.parse_args(argv)
    if not 0 < a.seconds <= 300 or not 0 < a.fps <= 240 or not all(0 < n <= 256 for n in a.streams):
        p.error("bounded: 0 < --seconds <= 300, 0 < --fps <= 240, 0 < N <= 256")
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
        meta |= {"url": a.url, "health": health}
        rows = run_served(a.url, a.streams, a.seconds, a.fps, frames, a.timeout, say)
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
