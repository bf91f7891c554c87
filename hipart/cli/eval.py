"""`hipart-eval`: metrics of a checkpoint on held-out subjects, with the paper's occlusion sweeps (Table 7)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from hipart.checkpoint import CheckpointError, load_checkpoint
from hipart.cli.arg_types import positive_int, writable_file
from hipart.cli.guard import exit_codes, interruptible
from hipart.data.dataset import load_manifest, open_split
from hipart.evaluation import evaluate, evaluate_tokenizer, markdown_table

SWEEPS = {"mask": (0.0, 0.2, 0.4, 0.6, 0.8), "crop": (0.0, 0.1, 0.2, 0.3, 0.4)}
COLUMNS = ["setting", "n", "mpjpe_mm", "pa_mpjpe_mm", "dense_2d_px", "fine_2d_px", "token_acc_sparse",
           "token_acc_dense", "poses_per_s"]
TOKENIZER_COLUMNS = ["n", "recon_dense_px", "recon_fine_px", "perplexity_sparse", "perplexity_dense",
                     "codes_used_sparse", "codes_used_dense"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hipart-eval",
        description="Evaluate a HiPART checkpoint on held-out subjects.",
        epilog=exit_codes({0: "ok", 1: "bad checkpoint or data (one-line reason)",
                           2: "bad usage: bad flag, not a dataset folder, or --split train"}),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="a hipart checkpoint (full metrics) or a tokenizer checkpoint (reconstruction only)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="dataset folder from `hipart-data build`")
    src.add_argument("--bvh-dir", type=Path, help="any BVH folder: built on the fly, every clip held out")
    p.add_argument("--split", default="test", help="split to evaluate (default test; never train)")
    p.add_argument("--input-2d", choices=["noisy", "det", "gt"], default="det",
                   help="2D input: stored detector-like detections (default), resampled noise, or clean")
    p.add_argument("--occlusion", choices=sorted(SWEEPS), help="also run the Table 7 sweep of this kind")
    p.add_argument("--subsample", type=positive_int, default=1, help="every K-th sample (quick looks)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--json", type=writable_file, help="write all results here")
    p.add_argument("--markdown", type=writable_file, help="write the summary table here")
    p.add_argument("--no-progress", action="store_true")
    return p


def run_tokenizer(a: argparse.Namespace, data_root: Path, tok, meta: dict) -> dict:
    """Tokenizer checkpoint: reconstruction and codebook metrics only (paper Table 3 view)."""
    w = load_manifest(data_root)["image_size"][0]
    ds = open_split(data_root, a.split, "gt", a.subsample)
    m = evaluate_tokenizer(tok, ds, w, progress=not a.no_progress)
    print(f"tokenizer  dense {m['recon_dense_px']:.2f} px  fine {m['recon_fine_px']:.2f} px  perplexity "
          f"{m['perplexity_sparse']:.0f}/{m['perplexity_dense']:.0f}  ({m['n']} poses)")
    result = {"checkpoint": str(a.checkpoint), "model_hash": meta.get("model_hash"), "kind": "tokenizer",
              "trained_on": meta.get("data_version"), "split": a.split, "results": [m]}
    table = markdown_table([m], TOKENIZER_COLUMNS)
    print("\n" + table)
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    if a.markdown:
        a.markdown.write_text(table + "\n")
    return result


def load_scored_model(path: Path) -> tuple[object, dict]:
    """The checkpoint to score (hipart or tokenizer), checked before any data is built; CheckpointError otherwise."""
    model, meta = load_checkpoint(path, expect_kind=None)
    if meta.get("kind") not in ("hipart", "tokenizer"):
        raise CheckpointError(f"{path} holds a {meta.get('kind')!r} checkpoint; hipart-eval takes a "
                              "hipart (full model) or tokenizer checkpoint")
    return model, meta


def run(a: argparse.Namespace, data_root: Path, model: object, meta: dict) -> dict:
    """Score `model` on split `a.split` of the dataset at `data_root`; print and write the tables."""
    if meta.get("kind") == "tokenizer":
        return run_tokenizer(a, data_root, model, meta)
    man = load_manifest(data_root)
    w = man["image_size"][0]
    names = man.get("action_classes")
    settings = [("no occlusion", 0.0, 0.0)]
    if a.occlusion:
        settings = [(f"{a.occlusion} {r:.1f}", r if a.occlusion == "mask" else 0.0, r if a.occlusion == "crop" else 0.0)
                    for r in SWEEPS[a.occlusion]]
    rows = []
    for label, mask, crop in settings:
        ds = open_split(data_root, a.split, a.input_2d, a.subsample, mask, crop)
        m = evaluate(model, ds, w, a.batch_size, names, progress=not a.no_progress)
        m["setting"] = label
        rows.append(m)
        print(f"{label:16s} MPJPE {m['mpjpe_mm']:.1f} mm  PA-MPJPE {m['pa_mpjpe_mm']:.1f} mm  "
              f"dense {m['dense_2d_px']:.1f} px  fine {m['fine_2d_px']:.1f} px  ({m['n']} poses)")
    table = markdown_table(rows, COLUMNS)
    per_action = markdown_table(
        [{"action": k, **v} for k, v in rows[0]["per_action"].items()], ["action", "n", "mpjpe_mm", "pa_mpjpe_mm"]
    )
    print("\n" + table + "\n\nper action (first setting):\n" + per_action)
    result = {"checkpoint": str(a.checkpoint), "model_hash": meta.get("model_hash"),
              "trained_on": meta.get("data_version"), "split": a.split, "input_2d": a.input_2d, "results": rows}
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    if a.markdown:
        a.markdown.write_text(table + "\n\n" + per_action + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of hipart-eval (exit codes in the parser's epilog)."""
    return interruptible("hipart-eval", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    a = build_parser().parse_args(argv)
    if a.split == "train":
        print("error: refusing to evaluate on the training split", file=sys.stderr)
        return 2
    try:
        model, meta = load_scored_model(a.checkpoint)  # seconds; the BVH build below takes minutes
        if a.bvh_dir:
            from hipart.data.bvh import read_bvh
            from hipart.data.dataset_build import build_dataset, discover

            jobs = discover(a.bvh_dir)
            for j in jobs:  # every clip parsed first (fast): a bad file fails before the body model is built
                read_bvh(j.path)
            subjects = {j.subject for j in jobs}
            with tempfile.TemporaryDirectory(prefix="hipart-eval-") as tmp:
                build_dataset(a.bvh_dir, tmp, split={s: "test" for s in subjects}, progress=not a.no_progress)
                a.split = "test"
                run(a, Path(tmp), model, meta)
        else:
            if not (a.data / "manifest.json").exists():
                print(f"error: {a.data} is not a dataset folder (no manifest.json)", file=sys.stderr)
                return 2
            run(a, a.data, model, meta)
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {getattr(e, 'strerror', None) and f'{e.filename}: {e.strerror}' or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
