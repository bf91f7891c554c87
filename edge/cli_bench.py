"""hipart-bench: every HiPART backend side by side on the same inputs (Markdown table + JSON)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.backends import BACKENDS
from hipart.cli.arg_types import (
    add_model_flags,
    device_name,
    non_negative_int,
    positive_float,
    positive_int,
    writable_file,
)
from hipart.cli.guard import exit_codes, interruptible

if TYPE_CHECKING:
    from edge.bench import BenchReport

EXIT_CODES = exit_codes({
    0: "every requested backend that can run here was timed (the others are listed with the reason)",
    1: "nothing was timed: every requested backend was skipped (the reasons are printed)",
    2: "cannot start: bad flag, model, or --json path",
})


def _ints(s: str) -> list[int]:
    try:
        v = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not v or min(v) < 1:
        raise argparse.ArgumentTypeError("batch sizes must be >= 1")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The hipart-bench argument parser."""
    p = argparse.ArgumentParser(
        prog="hipart-bench",
        description="Benchmark HiPART backends side by side.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backends",
                   help=f"comma list from {','.join(BACKENDS)} or 'all' (default: every backend, none with --temporal; "
                   "those that cannot run here are listed with the reason)")
    p.add_argument("--batch", type=_ints, default=[1, 8, 64], help="batch sizes, e.g. 1,8,64,256 (default 1,8,64)")
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "fp16", "int8"],
        help="engine precision for tensorrt (default auto: the manifest's fp16, else int8, else fp32 engine for this "
        "GPU); CPU backends run fp32",
    )
    p.add_argument("--iters", type=positive_int, default=50, help="timed calls per cell (default 50)")
    p.add_argument("--warmup", type=non_negative_int, default=5, help="untimed warm-up calls (default 5)")
    p.add_argument("--max-seconds", type=positive_float, default=20.0, help="time cap per cell (default 20 s)")
    p.add_argument(
        "--artifacts",
        help="hipart-export output folder, read through its manifest.json (default $HIPART_ARTIFACTS or ./exported; "
        "when that has no hipart.onnx, the model's ONNX is exported there first)",
    )
    add_model_flags(p)
    p.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch and onnxruntime (default: all cores)")
    p.add_argument("--json", type=writable_file, help="also write the report as JSON to this path")
    p.add_argument("--report", metavar="PNG", type=writable_file,
                   help="also draw the report: ms per pose by batch against the FLOP floor, and %% of the ceiling")
    p.add_argument(
        "--pipeline", action="store_true", help="also time the full video path (detector + HiPART + outputs)"
    )
    p.add_argument("--source", help="video for --pipeline (default: a rendered 640x480 synthetic clip)")
    p.add_argument("--frames", type=positive_int, default=150, help="frames for --pipeline (default 150)")
    p.add_argument("--temporal", metavar="HTP_PT",
                   help="time the HTP causal stream of one person (hipart-run --temporal; an HTP checkpoint or 'htp' "
                   "for the bundled one): ms/frame and frames/s on --threads (default 1) thread(s), torch and "
                   "onnxruntime, --iters frames after a full buffer of warm-up (backends too only with --backends)")
    p.add_argument("--htp-sampling", nargs="+", type=_sampling, metavar="H,K",
                   help="--temporal: hypotheses,steps pairs, e.g. 1,1 3,2 5,5 (default: the checkpoint's deployed one)")
    return p


def _sampling(s: str) -> tuple[int, int]:
    """argparse type: 'H,K' with both >= 1."""
    v = _ints(s)
    if len(v) != 2:
        raise argparse.ArgumentTypeError(f"expected H,K (hypotheses,steps), got {s!r}")
    return v[0], v[1]


def main(argv: list[str] | None = None) -> int:
    """Entry point: prints the Markdown table; exit codes in EXIT_CODES."""
    return interruptible("hipart-bench", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # OpenCV's own warnings; ours are clearer
    from edge.bench import BenchReport, bench_pipeline, environment, peak_matmul_gflops, run_bench
    from edge.weights import load_model

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    backends = args.backends or ("none" if args.temporal else "all")
    names = list(BACKENDS) if backends == "all" else [b.strip() for b in backends.split(",") if b.strip() != "none"]
    bad = [b for b in names if b not in BACKENDS]
    if bad:
        print(f"hipart-bench: error: unknown backend(s) {bad}; choose from {', '.join(BACKENDS)}", file=sys.stderr)
        return 2
    if args.pipeline and args.source and not Path(args.source).expanduser().exists():
        print(f"hipart-bench: error: --source {args.source}: not found", file=sys.stderr)
        return 2
    try:
        htp = _htp_model(args.temporal) if args.temporal else None
        loaded = load_model(args.checkpoint, args.config, random_weights=args.random_weights) if names else None
    except Exception as e:  # CheckpointError and friends: one line
        print(f"hipart-bench: error: {e}", file=sys.stderr)
        return 2
    if loaded is None:  # HTP stream only
        report = BenchReport(env=environment(htp[1].get("model_hash", ""), peak_matmul_gflops()))
        return _finish(args, report, names, htp)
    if loaded.banner:
        print(f"note: {loaded.banner} (timings are still valid)", file=sys.stderr)
    print(f"model: {loaded.source} [{loaded.model_hash}]", file=sys.stderr)
    if args.precision != "auto":
        print(f"note: precision {args.precision} applies to tensorrt engines only", file=sys.stderr)
    if args.artifacts is None and _needs_onnx(names):
        _export_if_absent(loaded)
    report = run_bench(
        loaded,
        names,
        args.batch,
        args.iters,
        args.warmup,
        args.max_seconds,
        args.artifacts,
        args.device,
        progress=lambda m: print(m, file=sys.stderr, flush=True),
        threads=args.threads,
        precision=None if args.precision == "auto" else args.precision,
    )
    report.env["precision"] = args.precision
    if args.pipeline:
        print("pipeline ...", file=sys.stderr, flush=True)
        try:
            report.pipeline = bench_pipeline(
                loaded, names[0], args.source, artifacts=args.artifacts, frames=args.frames
            )
        except Exception as e:  # report, keep the backend table
            report.skipped["pipeline"] = f"{type(e).__name__}: {e}"
    return _finish(args, report, names, htp)


def _htp_model(spec: str) -> tuple[Any, dict]:
    """The HTP model and checkpoint metadata of --temporal (a checkpoint, or 'htp': the bundled one)."""
    from edge.temporal import load_video_lifter

    model, meta = load_video_lifter(spec)
    if meta["kind"] != "htp":
        raise ValueError(f"--temporal {spec}: a {meta['kind']!r} checkpoint; hipart-bench times HTP models only")
    return model, meta


def _finish(args: argparse.Namespace, report: BenchReport, names: list[str], htp: tuple[Any, dict] | None) -> int:
    """The --temporal rows, then the report: Markdown, --json, --report; the exit code."""
    from edge.bench import bench_htp_stream, to_markdown
    from export.htp_onnx import deployed_sampling

    if htp is not None:
        report.temporal, skipped = bench_htp_stream(
            htp[0], args.htp_sampling or [deployed_sampling(htp[1])], iters=args.iters, max_seconds=args.max_seconds,
            threads=args.threads or 1, progress=lambda m: print(m, file=sys.stderr, flush=True))  # fmt: skip
        report.skipped.update(skipped)
    print(to_markdown(report))
    if args.json:
        try:
            Path(args.json).write_text(report.to_json())
        except OSError as e:
            print(f"hipart-bench: error: writing {args.json} failed: {e.strerror or e}", file=sys.stderr)
            return 1
        print(f"wrote {args.json}", file=sys.stderr)
    if args.report and report.rows:
        from edge.bench_report import plot_report

        try:
            print(f"wrote {plot_report(report, args.report)}", file=sys.stderr)
        except OSError as e:
            print(f"hipart-bench: error: writing {args.report} failed: {e.strerror or e}", file=sys.stderr)
            return 1
    if not report.rows and not report.temporal:
        why = "; ".join(f"{k}: {v}" for k, v in report.skipped.items() if k in names or k.startswith("htp"))
        print(f"hipart-bench: error: nothing was timed: every requested backend was skipped ({why})", file=sys.stderr)
        return 1
    return 0


def _needs_onnx(names: list[str]) -> bool:
    """A requested backend that can run here reads hipart.onnx (so exporting it first is worth the time)."""
    import importlib.util

    return ("onnxruntime" in names and importlib.util.find_spec("onnxruntime") is not None) or (
        "tensorrt" in names and importlib.util.find_spec("tensorrt") is not None
    )


def _export_if_absent(loaded: object) -> None:
    """Export the model's hipart.onnx into the default folder when it has none (one-line notice)."""
    import importlib.util

    from edge.backends.registry import default_artifacts_dir
    from edge.bench import export_onnx_for_bench, needs_onnx_export

    folder = default_artifacts_dir()
    why = needs_onnx_export(folder, loaded)
    if why is None or importlib.util.find_spec("onnxruntime") is None:  # nothing to do, or onnxruntime is skipped
        return
    print(f"note: {why}: exporting {loaded.source} [{loaded.model_hash}] there first "
          f"(= hipart-export --only hipart --onnx-only --out {folder})", file=sys.stderr, flush=True)  # fmt: skip
    try:
        export_onnx_for_bench(loaded, folder)
    except Exception as e:  # reported in one line; the backends that needed it are then skipped with the reason
        print(f"note: exporting the ONNX model into {folder} failed: {type(e).__name__}: {e}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
