"""hipart-export: HiPART -> ONNX -> FP16 / INT8 (calibrated Q/DQ) -> TensorRT engines, all listed in a manifest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from calib.calibration_set import CalibrationDataError
from calib.drift import DEFAULT_MAX_OUTPUT_ERR
from export.artifacts import ARTIFACTS
from export.hipart_graphs import UnsupportedModelError
from export.manifest import DEFAULT_DIR
from export.onnx_export import ExportError
from export.pipeline import (
    EXIT_BAD_INPUT,
    EXIT_DRIFT,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PARITY,
    BadInput,
    Options,
    format_table,
    run,
)
from export.trt_builder import EngineBuildError, UnsupportedTensorRTVersion, parse_batch
from export.trt_ops import target_for
from hipart.atomic_write import OutputDirError
from hipart.cli.arg_types import confidence, non_negative_int, positive_float, positive_int
from hipart.cli.guard import exit_codes, interruptible
from hipart.models.config import ARCHITECTURES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hipart-export",
        description=__doc__ + " With no model option it exports the bundled model; with no calibration option "
        "INT8 is calibrated on the bundled calibration set (training subjects) and its drift measured on the set's "
        "held-out part. <out>/manifest.json lists every file written (the contract hipart-run / hipart-bench read).",
        epilog=exit_codes({0: "ok", 1: "unexpected error", 2: "bad input (flag, checkpoint, calibration data, folder)",
                           3: "parity failure", 4: "TensorRT preflight errors",
                           5: "drift above target (artifacts written and flagged)"}),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", type=Path, help="hipart checkpoint (.pt) to export (default: the bundled model)")
    src.add_argument("--random-weights", choices=ARCHITECTURES, metavar="ARCH",
                     help="an untrained model of architecture paper | edge | tiny (plumbing checks only)")
    p.add_argument("--out", "--artifacts", dest="out", type=Path, default=Path(DEFAULT_DIR), metavar="DIR",
                   help="the artifacts folder, as hipart-run/hipart-bench --artifacts read it "
                   f"(default: {DEFAULT_DIR}/); DIR/manifest.json lists every file")
    p.add_argument("--only", default=",".join(ARTIFACTS), metavar="NAMES",
                   help=f"export only these artifacts, comma-separated, from {','.join(ARTIFACTS)} (default: all)")
    p.add_argument("--onnx-only", action="store_true", help="stop after the FP32 ONNX artifacts")
    p.add_argument("--fp16", action="store_true", help="mixed-precision FP16 ONNX (+ engine where TensorRT is)")
    p.add_argument("--int8", action="store_true", help="calibrate, Q/DQ, drift report, fallback, engine")
    p.add_argument("--calib-size", type=positive_int, default=512, help="calibration poses (default 512)")
    p.add_argument("--eval-size", type=non_negative_int, default=2048,
                   help="with --dataset: val poses for the drift report, spread evenly (default 2048; 0 = all)")
    p.add_argument("--calib-method", default="minmax", choices=("minmax", "entropy", "percentile"))
    p.add_argument("--calib-data", type=Path, help="npz with x_s from TRAINING subjects (k-center selected); default: "
                   "the bundled calibration set (calib.bundled)")
    p.add_argument("--dataset", type=Path, help="`hipart-data build` directory: calibrate on train, drift on val")
    p.add_argument("--eval-data", type=Path, help="npz with x_s (+ pose3d) from VALIDATION subjects for drift")
    p.add_argument("--synthetic-calib", action="store_true", help="use generated poses (calib.synthetic_poses)")
    p.add_argument("--quantizer", choices=("ort", "modelopt"), default="ort")
    p.add_argument("--batch", default="1,8,64", help="engine profile MIN,OPT,MAX batch (default 1,8,64)")
    p.add_argument("--workspace-mib", type=positive_int, default=1024)
    p.add_argument("--check-trt", action="store_true", help="TensorRT preflight of every artifact (no TensorRT needed)")
    p.add_argument("--trt-version", help="preflight target when TensorRT is absent: 10, 10.15, 11 (default 10)")
    p.add_argument("--no-parity", action="store_true", help="skip the onnxruntime vs PyTorch parity check")
    p.add_argument("--max-drift-mm", type=positive_float, default=1.0, help="INT8 target: MPJPE vs FP32 (default 1.0)")
    p.add_argument("--min-token-agreement", type=confidence, default=0.98, help="INT8 target (default 0.98)")
    p.add_argument("--max-output-err", type=positive_float, default=DEFAULT_MAX_OUTPUT_ERR,
                   help="INT8 target for artifacts without a 3D output (decode_step, densify): worst mean |error| "
                        f"of any float output vs FP32, in its own units (default {DEFAULT_MAX_OUTPUT_ERR})")
    p.add_argument("--fallback-trials", type=non_negative_int, default=24,
                   help="max layers tried in FP32 fallback (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--triton-repo", type=Path, metavar="DIR",
                   help="also write a Triton Inference Server model repository (hipart_onnx, hipart_trt, "
                   "hipart_temporal) from the folder's hipart.onnx (docs/DEPLOY.md)")
    p.add_argument("--triton-kind", choices=("gpu", "cpu"), default="gpu",
                   help="instance kind of the repository's onnxruntime models (default gpu)")
    p.add_argument("--triton-temporal", metavar="CKPT|none",
                   help="temporal checkpoint served as hipart_temporal (default: the bundled temporal model)")
    p.add_argument("--triton-ort-trt", action="store_true",
                   help="hipart_onnx through onnxruntime's TensorRT execution accelerator (FP16)")
    return p


def _old_subset_flag(argv: list[str]) -> list[str]:
    """`--artifacts hipart,lift` (a list of artifact names: what --artifacts meant before it named the folder, as in
    every other command) is read as `--only hipart,lift`, with a note."""
    out = list(argv)
    for i, a in enumerate(out):
        name, eq, value = a.partition("=")
        if name != "--artifacts":
            continue
        value = value if eq else (out[i + 1] if i + 1 < len(out) else "")
        names = [v for v in value.split(",") if v]
        if names and all(v in ARTIFACTS for v in names):
            print(f"note: --artifacts {value} read as --only {value} (--artifacts now names the folder, as in "
                  "hipart-run and hipart-bench)", file=sys.stderr)  # fmt: skip
            if eq:
                out[i] = f"--only={value}"
            else:
                out[i] = "--only"
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of hipart-export (exit codes in the parser's epilog)."""
    return interruptible("hipart-export", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(_old_subset_flag(argv if argv is not None else sys.argv[1:]))
    only = tuple(a for a in args.only.split(",") if a)
    try:
        if args.calib_size < 1:
            raise BadInput("--calib-size must be >= 1")
        if args.trt_version:
            try:
                target_for(args.trt_version)
            except ValueError as e:
                raise BadInput(str(e)) from None
        try:
            batch = parse_batch(args.batch)
        except ValueError as e:
            raise BadInput(str(e)) from None
        opts = Options(
            out=args.out, checkpoint=args.checkpoint, random_weights=args.random_weights, seed=args.seed,
            artifacts=only, onnx_only=args.onnx_only,
            fp16=args.fp16, int8=args.int8, calib_size=args.calib_size, eval_size=args.eval_size,
            calib_method=args.calib_method,
            calib_data=args.calib_data, dataset=args.dataset, eval_data=args.eval_data,
            synthetic=args.synthetic_calib,
            quantizer=args.quantizer, batch=batch, workspace_mib=args.workspace_mib,
            check_trt=args.check_trt, trt_version=args.trt_version, parity=not args.no_parity,
            max_mpjpe_mm=args.max_drift_mm, min_agreement=args.min_token_agreement,
            max_output_err=args.max_output_err,
            fallback_trials=args.fallback_trials,
        )  # fmt: skip
        triton = None
        if args.triton_repo is not None:  # checked before the export work, written after it
            from export.triton_repo import RepoOptions, prepare

            triton = prepare(args.triton_repo, args.out, RepoOptions(args.triton_kind, batch,
                             ort_tensorrt=args.triton_ort_trt), args.triton_temporal)  # fmt: skip
        result = run(opts)
        if triton is not None and result.exit_code in (EXIT_OK, EXIT_DRIFT):
            try:
                result.notes += triton.write()
            except ExportError as e:  # the streaming temporal graph: export or its parity check
                result.notes.append(f"triton repo NOT written: {e}")
                result.fail(EXIT_PARITY)
        elif triton is not None:
            result.notes.append("triton repo NOT written: the export above failed")
    except (BadInput, CalibrationDataError, OutputDirError, UnsupportedTensorRTVersion, UnsupportedModelError) as e:
        print(f"hipart-export: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except EngineBuildError as e:
        print(f"hipart-export: engine build failed: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(format_table(result))
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
