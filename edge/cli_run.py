"""hipart-run: camera/video/keypoints -> 2D detection -> HiPART -> annotated video + poses."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from edge.backends import BACKENDS
from edge.occlusion import DEFAULT_MIN_CONF
from edge.run import RunError, RunOptions, run_pipeline, summary


def build_parser() -> argparse.ArgumentParser:
    """The hipart-run argument parser."""
    p = argparse.ArgumentParser(
        prog="hipart-run",
        description="Real-time HiPART 3D pose: camera, video, image folder, URL or 2D keypoints in; "
        "annotated video and per-frame poses out.",
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
    p.add_argument("--artifacts",
                   help="hipart-export folder, read via its manifest.json (default $HIPART_ARTIFACTS or ./exported)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--checkpoint", help="HiPART checkpoint .pt (default: the bundled one; random weights if none)")
    p.add_argument("--config", default="paper", choices=["paper", "tiny"], help="model size when no checkpoint exists")
    p.add_argument("--detector", default="blazepose", choices=["blazepose", "onnx"], help="2D pose detector")
    p.add_argument("--detector-model", help="ONNX pose model for --detector onnx (RTMPose, YOLO-pose)")
    p.add_argument("--detector-layout", default="topdown", choices=["topdown", "yolo"], help="ONNX detector layout")
    p.add_argument("--keypoint-format", choices=["coco17", "h36m17"], help="joint order of a keypoint source")
    p.add_argument("--save", help="annotated side-by-side video (.mp4/.avi)")
    p.add_argument("--poses", action="append", default=[], help="per-frame poses (.jsonl or .npz); repeatable")
    p.add_argument("--show", action="store_true", help="open a window when a display exists")
    p.add_argument("--smooth", action="store_true", help="One-Euro smoothing of the 3D output (causal; off by default)")
    p.add_argument(
        "--min-conf",
        type=float,
        default=DEFAULT_MIN_CONF,
        help=f"joints below this confidence are masked (default {DEFAULT_MIN_CONF})",
    )
    p.add_argument("--queue-size", type=int, default=4, help="bounded queue length between stages (default 4)")
    p.add_argument(
        "--max-batch-frames",
        type=int,
        default=8,
        help="frames already waiting that may share one HiPART call (default 8; 1 = no batching)",
    )
    p.add_argument("--temporal", help="temporal lifter checkpoint (hipart-temporal), or 'default' for the bundled "
                   "causal one: 3D from the last T frames")
    p.add_argument(
        "--temporal-mode",
        default="causal",
        choices=["causal", "centred", "seq2seq"],
        help="causal: newest frame (no delay; default); centred: window centre (lags T/2 frames); "
        "seq2seq: files only, T frames per call",
    )
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--loop", action="store_true", help="loop a file source (soak tests)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (soak tests)")
    p.add_argument("--threads", type=int, help="CPU threads for torch / onnxruntime (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no per-frame progress")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit 0 ok, 1 run stopped by an error (outputs kept), 2 cannot start, 130 Ctrl-C."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # OpenCV's own warnings; ours are clearer
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    opts = RunOptions(**{k: v for k, v in vars(args).items()})
    try:
        stats = run_pipeline(opts)
    except RunError as e:
        print(f"hipart-run: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hipart-run: interrupted before the pipeline started", file=sys.stderr)
        return 130
    print(summary(stats, opts), file=sys.stderr)
    if stats.error:
        return 1
    return 130 if stats.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
