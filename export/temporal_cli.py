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
from hipart.cli.arg_types import positive_int

TEMPORAL_ARTIFACT = "temporal_lift"


def export(a: argparse.Namespace) -> int:
    """hipart-temporal export (needs the `export` extra: onnx, onnxruntime, onnxsim).

    By default the artifact goes into the artifacts folder (--artifacts, default ./exported) as temporal_lift.onnx
    (an HTP checkpoint: htp_lift.onnx) and is listed in its manifest.json, beside the HiPART artifacts; --out FILE
    writes one file and no manifest.
    """
    from export.htp_onnx import ARTIFACT as HTP_ARTIFACT
    from export.htp_onnx import check_htp_parity, deployed_sampling, export_htp
    from export.manifest import Manifest, default_dir
    from export.temporal_onnx import check_temporal_parity, export_temporal
    from hipart.checkpoint import CheckpointError, bundled_temporal_checkpoint, model_hash

    ckpt = a.checkpoint or bundled_temporal_checkpoint()
    if ckpt is None:
        raise CheckpointError("no --checkpoint given and this build bundles no temporal model")
    model, meta = load_checkpoint(ckpt, expect_kind=None)
    if meta["kind"] not in ("temporal", "htp"):
        raise CheckpointError(f"{ckpt} holds a {meta['kind']!r} checkpoint, expected 'temporal' or 'htp'")
    name = HTP_ARTIFACT if meta["kind"] == "htp" else TEMPORAL_ARTIFACT
    folder = None if a.out is not None else Path(a.artifacts or default_dir())
    out = a.out if a.out is not None else folder / f"{name}.onnx"
    if meta["kind"] == "htp":
        h, k = deployed_sampling(meta)
        h, k = a.hypotheses or h, a.steps or k
        path = export_htp(model, out, h, k)
        rep = check_htp_parity(path, model)
        print(f"[export] {path}: HTP H={h} K={k}; onnxruntime vs PyTorch lift (fixed noise) max abs error "
              f"{rep.max_abs_err['pose3d']:.2e} m")  # fmt: skip
    else:
        path = export_temporal(model, out, allow_dynamic=a.allow_dynamic)
        rep = check_temporal_parity(path, model)
        print(f"[export] {path}: onnxruntime vs PyTorch max abs error {rep.max_abs_err['pose3d']:.2e} m")
    if folder is not None:
        import onnx

        man = Manifest(folder)
        opset = next((o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                      if o.domain in ("", "ai.onnx")), None)  # fmt: skip
        man.add_file(path, artifact=name, kind="onnx", precision="fp32", model_hash=model_hash(model), opset=opset)
        print(f"[export] manifest: {man.write()}")
    return 0


def add_export(sub: Any) -> None:
    """Add the `export` subcommand to hipart-temporal's subparsers."""
    x = sub.add_parser("export", help="temporal_lift.onnx (an HTP checkpoint: htp_lift.onnx) into the artifacts folder "
                       "(listed in its manifest.json), with an onnxruntime parity check")  # fmt: skip
    x.add_argument("--checkpoint", type=Path, help="temporal or HTP checkpoint (default: the bundled temporal model)")
    x.add_argument("--artifacts", type=Path, metavar="DIR",
                   help="artifacts folder (default $HIPART_ARTIFACTS or ./exported): DIR/temporal_lift.onnx + manifest")
    x.add_argument("--out", type=Path, help="write this one ONNX file instead (no manifest)")
    x.add_argument("--allow-dynamic", action="store_true", help="also TPC/TPA/TPMo (TopK + GatherElements)")
    x.add_argument("--hypotheses", type=positive_int, metavar="H",
                   help="HTP: hypotheses of the exported sampler (default: the checkpoint's deployed H, else 3)")
    x.add_argument("--steps", type=positive_int, metavar="K",
                   help="HTP: DDIM steps, unrolled (default: the checkpoint's deployed K, else 2)")
    x.set_defaults(func=export)


def build_parser() -> argparse.ArgumentParser:
    """hipart-temporal's full parser: train, eval, bench, cache, export."""
    return temporal.build_parser(extra=(add_export,))


def main(argv: list[str] | None = None) -> int:
    return temporal.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
