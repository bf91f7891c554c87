"""`hipart-temporal`: train, evaluate and benchmark the video (temporal) lifter with H2OT token pruning.

`hipart-temporal export` (ONNX) is added by export.temporal_cli, the console script's entry point."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from hipart import skeleton
from hipart.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hipart.cli import htp
from hipart.cli.arg_types import positive_float, positive_int
from hipart.cli.guard import exit_codes, interruptible, is_dataset_dir, run_guarded
from hipart.cli.train import record_run, single_frame_lifter
from hipart.data.sequences import PoseWindows
from hipart.models.temporal import TemporalConfig, TemporalLifter, default_schedule
from hipart.models.temporal_cost import measure, parse_spec, window_cost
from hipart.training.loop import LoopConfig
from hipart.training.temporal import (
    FrameWiseHiPART,
    TemporalRecipe,
    attach_lifter_features,
    evaluate_temporal,
    generate_cache,
    train_temporal,
    window_offset,
)

DEFAULT_BENCH = ("small,frames=27,prune=none", "small,frames=27", "small,frames=27,reduction=lifter,prune=none",
                 "small,frames=27,reduction=lifter", "edge,frames=27,prune=none,reduction=none",
                 "edge,frames=27,prune=none", "edge,frames=27")  # fmt: skip


def model_config(a: argparse.Namespace) -> TemporalConfig:
    """TemporalConfig from --config (small | edge | JSON file) and the explicit overrides."""
    over: dict[str, Any] = {k: getattr(a, k) for k in ("prune", "recover", "pipeline", "output_frame", "reduction")
                            if getattr(a, k) is not None}  # fmt: skip
    if a.schedule_r is not None:
        over["schedule_r"] = tuple(a.schedule_r)
    if a.schedule_b is not None:
        over["schedule_b"] = tuple(a.schedule_b)
    prune = over.get("prune")
    if prune not in (None, "none") and "recover" not in over:
        over["recover"] = "tri" if prune == "tps" else "tra"
    points = skeleton.NUM_JOINTS if a.input == "sparse" else skeleton.NUM_HIERARCHY_POINTS
    if a.lifter_from is not None:
        lifter = single_frame_lifter(a.lifter_from)
        over.update(reduction="lifter", lifter=asdict(lifter.config))
        points = lifter.config.num_points
    if a.config in ("small", "edge"):
        if points == skeleton.NUM_JOINTS:
            over.setdefault("reduction", "none")
        return getattr(TemporalConfig, a.config)(a.frames, points, **over)
    d = json.loads(Path(a.config).read_text())
    d.update(over)
    d.setdefault("frames", a.frames)
    if d.get("prune", "tps") != "none" and not d.get("schedule_r"):
        d["schedule_r"], d["schedule_b"] = default_schedule(d["frames"], d.get("blocks", 8))
    return TemporalConfig.from_dict(d)


def _windows(a: argparse.Namespace, model: TemporalLifter, split: str, stride: int | None) -> PoseWindows:
    cfg = model.config
    # the noise draw stays the dataset's (seed 0, as HierarchicalPoseDataset): a generated cache was made from it
    data = PoseWindows(a.data, split, cfg.frames, stride, window_offset(model), a.input_2d, cfg.num_points,
                       a.generated, a.camera)  # fmt: skip
    attach_lifter_features(model, data, a.feature_cache, not a.no_progress)
    return data


def train(a: argparse.Namespace) -> int:
    """hipart-temporal train."""
    torch.manual_seed(a.seed)
    cfg = model_config(a)
    model = TemporalLifter(cfg)
    if a.lifter_from is not None:
        model.load_lifter(single_frame_lifter(a.lifter_from))
    stride = a.stride or max(1, cfg.frames // 4)
    data = _windows(a, model, "train", stride)
    recipe = TemporalRecipe(lr=a.lr, batch_size=a.batch_size, epochs=a.epochs, lambda_vel=a.lambda_vel)
    loop = LoopConfig(seed=a.seed, max_steps=a.max_steps, device=a.device, progress=not a.no_progress)
    version, args = record_run(a, cfg, "temporal")
    print(f"[temporal] {len(data)} windows of {cfg.frames} frames ({len(data.rows)} frames, {len(data.runs)} "
          f"clip-camera runs); {sum(p.numel() for p in model.parameters() if p.requires_grad)} trained parameters"
          + (f" on the frozen single-frame lifter of {a.lifter_from}" if a.lifter_from else ""))  # fmt: skip
    t0 = time.perf_counter()
    rec = train_temporal(model.to(a.device), data, recipe, loop, a.out, a.resume)
    path = save_checkpoint(a.out / "temporal.pt", model.cpu(), version, {"last": rec, "train_args": args})
    print(f"[temporal] done in {time.perf_counter() - t0:.0f} s; last: {rec}; checkpoint {path}")
    return 0


def evaluate(a: argparse.Namespace) -> int:
    """hipart-temporal eval."""
    if a.split == "train":
        print("error: refusing to evaluate on the training split", file=sys.stderr)
        return 2
    model, meta = load_checkpoint(a.checkpoint, expect_kind="temporal")
    cfg = model.config
    stride = a.stride or (cfg.frames if cfg.pipeline == "seq2seq" else 1)
    data = _windows(a, model, a.split, stride)
    m = evaluate_temporal(model, data, a.batch_size, not a.no_progress)
    print(f"{a.split}: MPJPE {m['mpjpe_mm']:.1f} mm  PA-MPJPE {m['pa_mpjpe_mm']:.1f} mm  MPJVE {m['mpjve_mm']:.2f} "
          f"mm/frame  ({m['n']} frames, {cfg.pipeline}, T={cfg.frames}, {cfg.prune}"
          f"{'' if cfg.prune == 'none' else '+' + cfg.recover})")  # fmt: skip
    single = None
    if a.single_frame:
        hip, _ = load_checkpoint(a.single_frame, expect_kind="hipart")
        # the same frames, each lifted once: non-overlapping windows (a seq2frame model's windows overlap T-fold)
        same = data if cfg.pipeline == "seq2seq" and data.stride == cfg.frames else PoseWindows(
            a.data, a.split, cfg.frames, cfg.frames, 0, a.input_2d, cfg.num_points, a.generated, a.camera)
        single = evaluate_temporal(FrameWiseHiPART(hip, cfg.frames), same, a.batch_size, not a.no_progress)
        if single["n"] != m["n"]:
            raise ValueError(f"the single-frame reference scored {single['n']} frames, the temporal model {m['n']}")
        gain = 100 * (1 - m["mpjpe_mm"] / single["mpjpe_mm"])
        print(f"single-frame HiPART on the same frames: MPJPE {single['mpjpe_mm']:.1f} mm  PA-MPJPE "
              f"{single['pa_mpjpe_mm']:.1f} mm  MPJVE {single['mpjve_mm']:.2f} mm/frame  (temporal MPJPE "
              f"{abs(gain):.1f}% {'lower' if gain >= 0 else 'higher'})")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"checkpoint": str(a.checkpoint), "model_hash": meta.get("model_hash"),
                                      "trained_on": meta.get("data_version"), "split": a.split,
                                      "input_2d": a.input_2d, "generated": str(a.generated) if a.generated else None,
                                      "camera": a.camera, "model": cfg.to_dict(), "metrics": m,
                                      "cost": window_cost(model),
                                      "single_frame": single,
                                      "single_frame_checkpoint": str(a.single_frame) if a.single_frame else None},
                                     indent=1))  # fmt: skip
    return 0


def bench(a: argparse.Namespace) -> int:
    """hipart-temporal bench."""
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = []
    for spec in a.configs or DEFAULT_BENCH:
        r = measure(parse_spec(spec), a.runs)
        r["spec"] = spec
        rows.append(r)
        print(f"{r['config']:52s} params {r['params'] / 1e6:6.3f} M  {r['gflops_window']:7.3f} GFLOPs/window  "
              f"seq2seq {r['fps_seq2seq']:8.1f} fps  stream {r['stream_ms']:7.1f} ms = {r['fps_stream']:6.1f} fps",
              flush=True)  # fmt: skip
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"device": "cpu", "threads": torch.get_num_threads(), "runs": a.runs,
                                      "results": rows}, indent=1))  # fmt: skip
    return 0


def cache(a: argparse.Namespace) -> int:
    """hipart-temporal cache."""
    model, _ = load_checkpoint(a.hipart, expect_kind="hipart")
    path = generate_cache(model, a.data, a.split, a.out, a.input_2d, a.camera, a.batch_size, not a.no_progress)
    print(f"[cache] {path}")
    return 0


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="dataset folder from `hipart-data build`")
    p.add_argument("--generated", type=Path, help="HiPART-generated dense/fine cache .npz (else ground truth + noise)")
    p.add_argument("--camera", type=int, help="only the K-th camera of every clip (default: all cameras)")
    p.add_argument("--input-2d", choices=["det", "noisy", "gt"], default="det",
                   help="sparse 2D input: stored detections (default), resampled noise, or clean")
    p.add_argument("--stride", type=positive_int,
                   help="frames between window anchors (train: T/4; eval: each frame once)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--feature-cache", type=Path, metavar="DIR",
                   help="keep the frozen single-frame lifter's per-frame features here (--lifter-from models)")
    p.add_argument("--no-progress", action="store_true")


def build_parser(extra: Iterable[Callable[[Any], None]] = ()) -> argparse.ArgumentParser:
    """The train / eval / bench / cache subcommands; each of `extra` is called with the subparsers object to add
    more (export.temporal_cli adds `export`)."""
    p = argparse.ArgumentParser(
        prog="hipart-temporal",
        description="Video lifter over T hierarchical 2D frames with H2OT token pruning (docs/TEMPORAL.md).",
        epilog=exit_codes({0: "ok", 1: "bad checkpoint, data or export (one-line reason); training state is "
                           "resumable", 2: "bad flag or not a dataset folder"}),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a temporal lifter on a built dataset")
    _data_args(t)
    t.add_argument("--out", type=Path, default=Path("runs/temporal"), help="run folder (default runs/temporal)")
    t.add_argument("--frames", type=positive_int, default=27, help="window length T (27, 81, 243; default 27)")
    t.add_argument("--config", default="small", help="small | edge | path to a TemporalConfig JSON")
    t.add_argument("--input", choices=["hierarchy", "sparse"], default="hierarchy", help="161 points or 17 joints")
    t.add_argument("--reduction", choices=["none", "linear", "sparse"], help="161 -> 17 tokens (default linear)")
    t.add_argument("--lifter-from", type=Path, metavar="HIPART_PT",
                   help="build on this trained HiPART's single-frame lifter (frozen): its 17 joint features per "
                        "frame are the tokens, and the output is its pose + a learned temporal correction")
    t.add_argument("--prune", choices=["none", "tpc", "tpa", "tpmo", "tps"], help="token pruning (default tps)")
    t.add_argument("--recover", choices=["tra", "tri"], help="token recovery (default tri with tps, else tra)")
    t.add_argument("--schedule-r", type=int, nargs="+", help="tokens kept per pruning stage, e.g. 14 9")
    t.add_argument("--schedule-b", type=int, nargs="+", help="block after which each stage prunes, e.g. 0 1")
    t.add_argument("--pipeline", choices=["seq2seq", "seq2frame"], help="all T frames out, or one (default seq2seq)")
    t.add_argument("--output-frame", choices=["centre", "last"], help="seq2frame output frame (default centre)")
    t.add_argument("--epochs", type=positive_int, default=TemporalRecipe.epochs)
    t.add_argument("--batch-size", type=positive_int, default=TemporalRecipe.batch_size)
    t.add_argument("--lr", type=positive_float, default=TemporalRecipe.lr)
    t.add_argument("--lambda-vel", type=float, default=TemporalRecipe.lambda_vel, help="velocity loss weight")
    t.add_argument("--max-steps", type=positive_int, help="stop after N steps (smoke runs; resumable)")
    t.add_argument("--resume", action="store_true", help="continue from <out>/temporal.state.pt")
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    t.set_defaults(func=train)
    e = sub.add_parser("eval", help="MPJPE / PA-MPJPE / MPJVE of a checkpoint on held-out subjects")
    _data_args(e)
    e.add_argument("--checkpoint", type=Path, required=True)
    e.add_argument("--split", default="test", help="split to evaluate (default test; never train)")
    e.add_argument("--batch-size", type=positive_int, default=32)
    e.add_argument("--json", type=Path, help="write the metrics here")
    e.add_argument("--single-frame", type=Path, metavar="HIPART_PT",
                   help="also score this single-frame HiPART checkpoint on exactly the same frames (the baseline)")
    e.set_defaults(func=evaluate)
    b = sub.add_parser("bench", help="params, FLOPs and CPU frames/s of configurations")
    b.add_argument("--configs", nargs="+", help="specs like 'edge,frames=81,prune=tps' (default: a T=27 sweep)")
    b.add_argument("--runs", type=positive_int, default=5, help="timed calls per configuration (median; default 5)")
    b.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    b.add_argument("--json", type=Path, help="write the results here")
    b.set_defaults(func=bench)
    c = sub.add_parser("cache", help="HiPART-generated dense/fine for every frame of a split (--generated input)")
    c.add_argument("--hipart", type=Path, required=True, help="trained HiPART checkpoint (hipart.pt)")
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--split", default="train")
    c.add_argument("--out", type=Path, required=True, help="output .npz")
    c.add_argument("--camera", type=int, help="only the K-th camera of every clip")
    c.add_argument("--input-2d", choices=["det", "noisy", "gt"], default="det")
    c.add_argument("--batch-size", type=positive_int, default=256)
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=cache)
    htp.add_commands(sub, _data_args)  # htp-train / htp-eval / htp-bench: the diffusion lifter (hipart/cli/htp.py)
    for add in extra:
        add(sub)
    return p


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run one subcommand. The `hipart-temporal` console script is export.temporal_cli:main, which passes the
    parser with the `export` subcommand added (ONNX export lives in the export package, above hipart)."""
    return interruptible("hipart-temporal", lambda: _main(argv, parser))


def _main(argv: list[str] | None, parser: argparse.ArgumentParser | None) -> int:
    a = (parser or build_parser()).parse_args(argv)
    data = getattr(a, "data", None)
    if data is not None and not is_dataset_dir(data):
        return 2
    # RuntimeError: ExportError
    return run_guarded(a.func, a, (CheckpointError, ValueError, FileNotFoundError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
