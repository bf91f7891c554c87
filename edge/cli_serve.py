"""hipart-serve: HiPART over HTTP on Ray Serve, batched across streams, with per-stream temporal state."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edge.backends import BACKENDS
from edge.backends.registry import default_artifacts_dir
from edge.occlusion import DEFAULT_MIN_CONF
from hipart.cli.arg_types import (
    add_model_flags,
    confidence,
    device_name,
    non_negative_float,
    positive_float,
    positive_int,
)
from hipart.cli.guard import exit_codes, install_stop_handlers, interruptible

if TYPE_CHECKING:
    from edge.serving import ServeOptions

EXIT_CODES = {
    1: "serving stopped on an error (the application disappeared or Ray was lost)",
    2: "cannot start: bad flag, model, artifacts, temporal model, Ray address or port",
    129: "stopped by SIGHUP",
}


def build_parser() -> argparse.ArgumentParser:
    """The hipart-serve argument parser."""
    p = argparse.ArgumentParser(
        prog="hipart-serve",
        description="Serve HiPART over HTTP for many streams on Ray Serve: POST /v1/infer (normalised x_s), POST "
        "/v1/lift (pixel keypoints; per-stream temporal lifting), GET /v1/health (docs/SERVING.md). Runs until "
        "Ctrl-C / SIGTERM, then shuts Serve down.",
        epilog=exit_codes(EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    net = p.add_argument_group("where")
    net.add_argument("--host", default="127.0.0.1", help="HTTP address of Serve's proxy (default 127.0.0.1; "
                     "0.0.0.0 to listen on every interface)")
    net.add_argument("--port", type=positive_int, default=8000, help="HTTP port (default 8000)")
    net.add_argument("--address", help="join an existing Ray cluster: 'auto' (the cluster `ray start` runs on this "
                     "machine), HOST:PORT (its head's GCS address) or ray://HOST:PORT (Ray Client); default: start a "
                     "local Ray instance for this command")
    m = p.add_argument_group("model (as hipart-run)")
    m.add_argument("--backend", default="onnxruntime", choices=[*BACKENDS, "auto"],
                   help="HiPART backend of every replica (default onnxruntime, on the artifacts in --artifacts; "
                   "torch, triton, tensorrt or auto as in hipart-run)")
    m.add_argument("--artifacts", help="hipart-export folder read via its manifest.json (default $HIPART_ARTIFACTS "
                   "or ./exported); on a cluster the path must exist on every node")
    m.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda, cuda:N (torch backend)")
    add_model_flags(m)
    m.add_argument("--min-conf", type=confidence, default=DEFAULT_MIN_CONF,
                   help=f"joints below this confidence are masked (default {DEFAULT_MIN_CONF})")
    r = p.add_argument_group("replicas and batching")
    r.add_argument("--replicas", type=positive_int, default=1, help="ingress replicas, each with its own backend "
                   "(default 1)")
    r.add_argument("--num-cpus", type=positive_float, default=1.0, help="Ray CPUs reserved per replica (default 1)")
    r.add_argument("--num-gpus", type=non_negative_float, default=0.0,
                   help="Ray GPUs per replica (default 0; e.g. 1 with --backend tensorrt, or 0.5 to share a GPU)")
    r.add_argument("--threads", type=positive_int, help="CPU threads of each replica's backend (default: --num-cpus "
                   "rounded down, at least 1)")
    r.add_argument("--ort-mode", choices=("auto", "hipart", "step", "split"), default="hipart",
                   help="onnxruntime backend's execution mode (default hipart: the whole-model graph, the fastest "
                   "per pose once requests are batched; auto: hipart-run's choice, step, the fastest at batch 1)")
    r.add_argument("--max-batch-size", type=positive_int, default=16,
                   help="requests (across streams) that share one backend call (default 16)")
    r.add_argument("--batch-wait-timeout-s", type=non_negative_float, default=0.0,
                   help="Serve's window to fill a batch once its first request arrived (default 0: no wait; batches "
                   "still form from the requests that arrive while the backend is busy)")
    r.add_argument("--max-persons-per-request", type=positive_int, default=64,
                   help="more persons in one request is a 400 (default 64)")
    r.add_argument("--max-queue", type=positive_int, default=256,
                   help="requests one replica holds at once; beyond it the answer is 503 (default 256)")
    t = p.add_argument_group("temporal lifting per stream")
    t.add_argument("--temporal", metavar="default|PATH", help="temporal lifter checkpoint (hipart-temporal) or "
                   "'default' (the bundled causal one): /v1/lift persons with a stream id get pose3d_temporal")
    t.add_argument("--temporal-shards", type=positive_int, default=2,
                   help="deployments temporal-0..S-1 holding the streams' buffers, a stream on shard "
                   "crc32(id) %% S (default 2)")
    t.add_argument("--shard-cpus", type=positive_float, default=0.5, help="Ray CPUs per shard (default 0.5)")
    t.add_argument("--stream-timeout", type=positive_float, default=60.0,
                   help="seconds without a frame before a stream's buffer is dropped (default 60)")
    t.add_argument("--max-gap", type=positive_float, default=0.5,
                   help="seconds between two frames of a stream (their timestamps) beyond which its buffer "
                   "restarts with a warm-up (default 0.5)")
    p.add_argument("--app-name", default="hipart", help="Serve application name (default hipart)")
    p.add_argument("--verbose", action="store_true", help="Ray's and Serve's own logs at INFO")
    return p


def options(args: argparse.Namespace) -> ServeOptions:
    """ServeOptions from parsed flags, with every path made absolute (replicas start in other directories)."""
    from edge.serving import ServeOptions

    def absolute(path: str | None) -> str | None:
        return None if path is None else str(Path(path).expanduser().resolve())

    threads = args.threads or max(1, int(args.num_cpus))
    temporal = args.temporal if args.temporal in (None, "default") else absolute(args.temporal)
    return ServeOptions(
        backend=args.backend, artifacts=absolute(args.artifacts) or str(default_artifacts_dir().resolve()),
        device=args.device, checkpoint=absolute(args.checkpoint), random_weights=args.random_weights,
        config=args.config, min_conf=args.min_conf, threads=threads, replicas=args.replicas, num_cpus=args.num_cpus,
        num_gpus=args.num_gpus, max_batch_size=args.max_batch_size, batch_wait_timeout_s=args.batch_wait_timeout_s,
        max_persons_per_request=args.max_persons_per_request, max_queue=args.max_queue, temporal=temporal,
        temporal_shards=args.temporal_shards, shard_cpus=args.shard_cpus, stream_timeout=args.stream_timeout,
        max_gap=args.max_gap, ort_mode=args.ort_mode, app_name=args.app_name, host=args.host, port=args.port,
        address=args.address,
    )  # fmt: skip


def _check_paths(args: argparse.Namespace) -> str | None:
    """Why the named files cannot be used (checked before Ray starts), or None."""
    named = {"--checkpoint": args.checkpoint, "--temporal": args.temporal, "--artifacts": args.artifacts}
    for flag, path in named.items():
        if path and path != "default" and not Path(path).expanduser().exists():
            return f"{flag} {path}: no such file or folder"
    return None


def _first_line(err: BaseException) -> str:
    """The line of a deployment failure that says why (Serve wraps the replica's traceback)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "hipart-serve:" in ln:
            return ln[ln.index("hipart-serve:") + len("hipart-serve:"):].strip()
    return (lines[-1] if lines else type(err).__name__)[:400]


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit codes in EXIT_CODES (2 cannot start, 130 / 143 / 129 stopped by a signal)."""
    return interruptible("hipart-serve", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    why = _check_paths(args)
    if why:
        print(f"hipart-serve: error: {why}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    from edge import serving

    opts = options(args)
    try:
        try:
            health = serving.start(opts, lambda m: print(m, file=sys.stderr, flush=True), args.verbose)
        except (RuntimeError, ConnectionError, ValueError) as e:
            print(f"hipart-serve: error: cannot start: {_first_line(e)}", file=sys.stderr)
            return 2
        install_stop_handlers()  # ray.init installs its own SIGTERM handler: ours again, so stops unwind here
        where = "local Ray" if not opts.address else f"Ray at {opts.address}"
        temporal = f"temporal {opts.temporal} on {opts.temporal_shards} shards" if opts.temporal else "no temporal"
        print(f"hipart-serve: ready at http://{opts.host}:{opts.port}/v1  backend {health['backend']} x "
              f"{opts.replicas} replica(s) ({opts.num_cpus:g} CPU, {opts.num_gpus:g} GPU, {opts.threads} threads each)"
              f"  batch <= {opts.max_batch_size} requests (window {opts.batch_wait_timeout_s * 1e3:g} ms)  {temporal}  "
              f"model {health['model_hash']}  {where}  (Ctrl-C stops)", file=sys.stderr, flush=True)  # fmt: skip
        if opts.random_weights:
            print("hipart-serve: NOTE: UNTRAINED weights (--random-weights): output is not meaningful", file=sys.stderr)
        return _wait(opts)
    finally:
        _stop(opts)


def _wait(opts: ServeOptions) -> int:
    """Sleep until a signal; exit 1 if the application disappears (deleted, or the Ray cluster was lost)."""
    from ray import serve

    while True:
        time.sleep(2.0)
        try:
            apps = serve.status().applications
        except Exception as e:  # the cluster or the controller is gone
            print(f"hipart-serve: error: lost Serve ({type(e).__name__}: {e})"[:400], file=sys.stderr)
            return 1
        if opts.app_name not in apps:
            print(f"hipart-serve: error: the application {opts.app_name!r} is no longer running", file=sys.stderr)
            return 1


def _stop(opts: ServeOptions) -> None:
    """Delete the application, then stop the local Ray instance or leave the joined cluster; one line either way."""
    from edge import serving

    try:
        serving.stop(opts)
        what = "local Ray instance stopped" if not opts.address else f"left the cluster at {opts.address}"
        print(f"hipart-serve: application {opts.app_name!r} deleted, {what}", file=sys.stderr)
    except Exception as e:  # nothing more to do on the way out
        print(f"hipart-serve: shutdown incomplete: {type(e).__name__}: {e}"[:300], file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
