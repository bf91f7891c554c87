"""`hipart-temporal` console script: hipart.cli.temporal's train / eval / bench / cache plus `export`.

`export` (temporal_lift.onnx + onnxruntime parity) lives here, in the export package, so that hipart never
reaches the ONNX exporter; the subcommand still needs the `export` extra (onnx, onnxruntime, onnxsim) only
when it runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hipart.checkpoint import load_checkpoint
from hipart.cli import temporal


def export(a: argparse.Namespace) -> int:
    """hipart-temporal export (needs the `export` extra: onnx, onnxruntime, onnxsim)."""
    from export.temporal_onnx import check_temporal_parity, export_temporal

    model, _ = load_checkpoint(a.checkpoint, expect_kind="temporal")
    path = export_temporal(model, a.out, allow_dynamic=a.allow_dynamic)
    rep = check_temporal_parity(path, model)
    print(f"[export] {path}: onnxruntime vs PyTorch max abs error {rep.max_abs_err['pose3d']:.2e} m")
    return 0


def add_export(sub: Any) -> None:
    """Add the `export` subcommand to hipart-temporal's subparsers."""
    x = sub.add_parser("export", help="temporal_lift.onnx with an onnxruntime parity check (TPS+TRI: static)")
    x.add_argument("--checkpoint", type=Path, required=True)
    x.add_argument("--out", type=Path, default=Path("artifacts/temporal_lift.onnx"))
    x.add_argument("--allow-dynamic", action="store_true", help="also TPC/TPA/TPMo (TopK + GatherElements)")
    x.set_defaults(func=export)


def build_parser() -> argparse.ArgumentParser:
    """hipart-temporal's full parser: train, eval, bench, cache, export."""
    return temporal.build_parser(extra=(add_export,))


def main(argv: list[str] | None = None) -> int:
    return temporal.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
