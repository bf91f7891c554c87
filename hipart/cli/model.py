"""`hipart-model`: model summary (parameters, FLOPs per stage) and a smoke run on the bundled sample pose."""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path

import torch

from hipart import skeleton
from hipart.camera import normalize_screen_coordinates
from hipart.checkpoint import CheckpointError, bundled_checkpoint, load_checkpoint, model_hash, random_model
from hipart.cli.arg_types import positive_int, writable_file
from hipart.cli.guard import exit_codes, interruptible
from hipart.models.complexity import codebook_entries, stage_costs

PAPER_PARAMS_M, PAPER_GFLOPS = 2.4, 2.24


def load_sample_pose() -> torch.Tensor:
    """The bundled sample 2D pose, screen-normalised, as [1, 17, 2]."""
    data = json.loads(resources.files("hipart").joinpath("assets/sample_pose_2d.json").read_text())
    w, h = data["image_size"]
    px = torch.tensor(data["joints_px"], dtype=torch.float32)[None]
    return normalize_screen_coordinates(px, w, h)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hipart-model",
        description="Summarise the HiPART model (parameters and FLOPs per stage) and run it once on the "
        "bundled sample pose.",
        epilog=exit_codes({0: "ok", 1: "the checkpoint cannot be loaded (one-line reason)", 2: "bad flag"}),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, help="a HiPART checkpoint (.pt); default: the bundled model")
    p.add_argument("--random-weights", choices=["paper", "edge", "tiny"],
                   help="an untrained model of this architecture instead (shape and speed checks only)")
    p.add_argument("--batch", type=positive_int, default=1, help="batch size of the smoke run (default 1)")
    p.add_argument("--runs", type=positive_int, default=3, help="timed runs of the smoke forward (default 3)")
    p.add_argument("--json", type=writable_file, help="also write the summary as JSON here")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of hipart-model (exit codes in the parser's epilog)."""
    return interruptible("hipart-model", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch < 1 or args.runs < 1:
        print("error: --batch and --runs must be >= 1", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    ckpt = args.checkpoint or (None if args.random_weights else bundled_checkpoint())
    if ckpt is not None:
        try:
            model, meta = load_checkpoint(ckpt)
        except CheckpointError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        source = f"checkpoint {ckpt} (data version {meta.get('data_version')})"
    else:
        arch = args.random_weights or "paper"
        model, _ = random_model(arch, args.seed)
        why = "" if args.random_weights else " (no bundled checkpoint found)"
        source = f"{arch} config, RANDOM weights{why} (untrained: outputs are shape/speed checks only)"
    x = load_sample_pose().repeat(args.batch, 1, 1)

    costs = stage_costs(model, x[:1])
    print(f"HiPART model — {source}; hash {model_hash(model)}")
    print(f"{'stage':48s} {'params':>10s} {'MFLOPs/pose':>12s}")
    for c in costs:
        print(f"{c.stage:48s} {c.params:10,d} {c.flops / 1e6:12.2f}")
    inf = [c for c in costs if c.in_inference]
    p_inf, f_inf = sum(c.params for c in inf), sum(c.flops for c in inf)
    print(f"{'inference total (decode + decoders + lifter)':48s} {p_inf:10,d} {f_inf / 1e6:12.2f}")
    print(f"codebook values (EMA buffers): {codebook_entries(model):,d}")
    print(f"paper: {PAPER_PARAMS_M} M params, {PAPER_GFLOPS} GFLOPs")

    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        out = model(x)
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(f"\nsmoke run on the bundled sample pose, batch {args.batch}: {best * 1e3:.1f} ms "
          f"({args.batch / best:.1f} poses/s, best of {args.runs}, {torch.get_num_threads()} threads)")
    print("sparse tokens q_s[0]:", out["q_s"][0].tolist())
    print("pose3d[0] (m):")
    for j, name in enumerate(skeleton.JOINT_NAMES):
        print(f"  {name:11s} " + " ".join(f"{v:+.3f}" for v in out["pose3d"][0, j].tolist()))
    if args.json:
        summary = {
            "source": source,
            "model_hash": model_hash(model),
            "stages": [c.__dict__ for c in costs],
            "inference_params": p_inf,
            "inference_flops_per_pose": f_inf,
            "smoke_ms": best * 1e3,
            "batch": args.batch,
        }
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
