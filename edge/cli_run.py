"""hipart-run: camera/video/keypoints -> 2D detection -> HiPART -> annotated video + poses."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from edge.backends import BACKENDS
from edge.backends.remote import DEFAULT_RETRY_S, DEFAULT_TIMEOUT_S, server_url
from edge.occlusion import DEFAULT_MIN_CONF
from edge.run import RunError, RunOptions, run_pipeline, summary
from edge.sinks import SinkError, recover_npz
from hipart.cli.arg_types import (
    add_model_flags,
    confidence,
    device_name,
    non_negative_float,
    positive_float,
    positive_int,
)
from hipart.cli.guard import interruptible

EXIT_CODES = """exit codes:
  0    finished; every output complete
  1    the run stopped on an error, every frame failed, or an output could not be finished (disk full);
       outputs are complete up to the last good frame, and the message says which
  2    cannot start: bad flag, source, model, detector, artifacts or output path, or no hipart-serve at --server
       (no output touched)
  130  stopped by Ctrl-C (SIGINT), 143 by SIGTERM, 129 by SIGHUP: in-flight frames drained, outputs complete
A killed run (SIGKILL, power loss) leaves JSONL and video readable up to their last flushed frame and the .npz
frames in <name>.npz.partial.jsonl: `hipart-run --recover <name>.npz` writes the .npz from it."""


def build_parser() -> argparse.ArgumentParser:
    """The hipart-run argument parser."""
    p = argparse.ArgumentParser(
        prog="hipart-run",
        description="Real-time HiPART 3D pose: camera, video, image folder, URL or 2D keypoints in; "
        "annotated video and per-frame poses out.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--source",
        default="sample",
        help="camera index, /dev/videoN, video file, image folder, rtsp/http URL, keypoints .npz/.json, "
        "'sample' (bundled synthetic walk as keypoints; default), 'sample-video' (the walk as 640x480 video) or "
        "'sample-clip' (test-subject mocap clip rendered on the Anny body, with ground truth)",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=[*BACKENDS, "auto"],
        help="HiPART backend; auto (default): the fastest available here -- tensorrt, triton, onnxruntime "
        "(when --artifacts holds an export of the model in use), else torch; the pick is printed",
    )
    p.add_argument("--server", type=_server_url, metavar="URL",
                   help="run HiPART on a hipart-serve server (e.g. http://127.0.0.1:8000) instead of here: no local "
                   "model, artifacts or --backend; capture, detection, tracking, smoothing, --temporal and outputs "
                   "stay local. A frame the server cannot answer gets an error status and the run goes on")
    p.add_argument("--server-timeout", type=positive_float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"--server: the longest one frame waits on the server (default {DEFAULT_TIMEOUT_S:g} s)")
    p.add_argument("--server-retry", type=positive_float, default=DEFAULT_RETRY_S, metavar="S",
                   help="--server: while the server is away, the longest gap between reconnection attempts "
                   f"(backoff from 0.05 s; default {DEFAULT_RETRY_S:g} s)")
    p.add_argument("--artifacts",
                   help="hipart-export folder, read via its manifest.json (default $HIPART_ARTIFACTS or ./exported)")
    p.add_argument(
        "--device", default="auto", type=device_name, help="auto, cpu, cuda, cuda:N (default: cuda when available)"
    )
    add_model_flags(p)
    p.add_argument("--detector", default="blazepose", choices=["blazepose", "blazepose-multi", "onnx"],
                   help="2D pose detector: blazepose (one person, tracked; default), blazepose-multi (every person "
                   "in each frame: BlazePose's own detector + landmarks per person), onnx (your RTMPose / YOLO-pose)")
    p.add_argument("--max-persons", type=positive_int, default=8, help="blazepose-multi: most persons per frame "
                   "(default 8)")
    p.add_argument("--min-person-height", type=non_negative_float, default=0.0, metavar="PX",
                   help="blazepose-multi: drop persons shorter than this in pixels (default 0: keep all)")
    p.add_argument("--detector-tiles", action="store_true", help="blazepose-multi: also look at 2x2 overlapping "
                   "tiles, for people too small for the whole-frame detector (~3x the detection cost)")
    p.add_argument("--detector-model", help="ONNX pose model for --detector onnx (RTMPose, YOLO-pose)")
    p.add_argument("--detector-layout", default="topdown", choices=["topdown", "yolo"], help="ONNX detector layout")
    p.add_argument("--keypoint-format", choices=["coco17", "h36m17"], help="joint order of a keypoint source")
    p.add_argument("--save", help="annotated side-by-side video: .mp4 (fragmented H.264; default choice), .mkv, .avi")
    p.add_argument("--poses", action="append", default=[], help="per-frame poses (.jsonl or .npz); repeatable")
    p.add_argument(
        "--recover",
        metavar="NPZ",
        help="write NPZ from the journal a killed run left beside it (NPZ.partial.jsonl), then exit",
    )
    p.add_argument("--show", action="store_true", help="open a window when a display exists")
    p.add_argument("--track", action=argparse.BooleanOptionalAction, default=None,
                   help="stable per-person track ids (norfair) in the outputs and on the overlay, smoothing and "
                   "temporal state kept per track (default: on with blazepose-multi / onnx detectors, off otherwise; "
                   "never across the images of a folder)")
    p.add_argument("--track-max-age", type=positive_int, default=30, metavar="FRAMES",
                   help="frames an established track survives without a detection (default 30)")
    p.add_argument("--intrinsics", metavar="F|fx,fy,cx,cy",
                   help="camera intrinsics in pixels (a focal length alone puts the principal point at the image "
                   "centre): each person's root is then placed in metric camera space (root_cam in the outputs); "
                   "without them the 3D is root-relative and the outputs say so")
    p.add_argument("--smooth", action="store_true", help="One-Euro smoothing of the 3D output (causal; off by default)")
    p.add_argument(
        "--min-conf",
        type=confidence,
        default=DEFAULT_MIN_CONF,
        help=f"joints below this confidence are masked (default {DEFAULT_MIN_CONF})",
    )
    p.add_argument("--queue-size", type=positive_int, default=4, help="bounded queue length between stages (default 4)")
    p.add_argument(
        "--max-batch-frames",
        type=positive_int,
        default=8,
        help="frames already waiting that may share one HiPART call (default 8; 1 = no batching)",
    )
    p.add_argument("--temporal", help="temporal lifter checkpoint (hipart-temporal), or 'default' for the bundled "
                   "causal one: 3D from the last T frames; an HTP diffusion lifter checkpoint (htp-train), or 'htp' "
                   "for the bundled one (onnxruntime when --artifacts holds its htp_lift.onnx for the same H, K)")
    p.add_argument("--htp-hypotheses", type=positive_int, metavar="H",
                   help="HTP: hypotheses per window (default: the checkpoint's deployed H, else 3)")
    p.add_argument("--htp-steps", type=positive_int, metavar="K",
                   help="HTP: DDIM steps per window (default: the checkpoint's deployed K, else 2)")
    p.add_argument(
        "--temporal-mode",
        default="causal",
        choices=["causal", "centred", "seq2seq"],
        help="causal: newest frame (no delay; default); centred: window centre (lags T/2 frames); "
        "seq2seq: files only, T frames per call",
    )
    p.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    p.add_argument("--loop", action="store_true", help="loop a file source (soak tests)")
    p.add_argument("--pace", action="store_true", help="play a file source in real time, like a camera: frames at "
                   "its fps, skipped when the pipeline falls behind; latency is then what a camera user sees")
    p.add_argument("--duration", type=positive_float, help="stop after this many seconds (soak tests)")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch / onnxruntime (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no per-frame progress")
    return p


def _server_url(text: str) -> str:
    """argparse type: a hipart-serve URL (edge.backends.remote.server_url)."""
    try:
        return server_url(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _recover(path: str) -> int:
    """--recover: the .npz from a killed run's journal."""
    try:
        out, n = recover_npz(path)
    except SinkError as e:
        print(f"hipart-run: error: {e}", file=sys.stderr)
        return 1
    print(f"recovered {n} frames into {out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit codes in EXIT_CODES (0 ok, 1 stopped by an error, 2 cannot start, 128+N signal N)."""
    # the pipeline installs its own handlers (drain and close); these cover the time before and after it
    return interruptible("hipart-run", lambda: _main(argv), " before the pipeline started; no output written")


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.recover:
        return _recover(args.recover)
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # OpenCV's own warnings; ours are clearer
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    opts = RunOptions(**{k: v for k, v in vars(args).items() if k != "recover"})
    try:
        stats = run_pipeline(opts)
    except RunError as e:
        print(f"hipart-run: error: {e}", file=sys.stderr)
        return 2
    print(summary(stats, opts), file=sys.stderr)
    if stats.error:
        return 1
    return 128 + (stats.signal or signal.SIGINT) if stats.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
