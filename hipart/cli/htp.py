"""`hipart-temporal htp-train / htp-eval / htp-bench`: the HTP diffusion lifter (docs/TEMPORAL.md, "HTP")."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from hipart.checkpoint import bundled_checkpoint, load_checkpoint, save_checkpoint
from hipart.cli.arg_types import positive_float, positive_int
from hipart.cli.train import record_run, single_frame_lifter
from hipart.data.sequences import PoseWindows
from hipart.models.htp import HTPConfig, HTPDenoiser, htp_cost
from hipart.models.lifter import Lifter, MLPLifter
from hipart.training.htp import HTPRecipe, describe, evaluate_htp, image_size, measure_htp, parse_spec, train_htp
from hipart.training.loop import LoopConfig
from hipart.training.temporal import attach_lifter_features

# the paper's Table XI at T = 27 (baseline, TCEP, TCEP + SFT, TCEP + MGPTP, all three), then the edge width
DEFAULT_BENCH = ("small,frames=27,tcep=0,mgptp=0", "small,frames=27,sft=0,mgptp=0", "small,frames=27,mgptp=0",
                 "small,frames=27,sft=0", "small,frames=27", "edge,frames=27,tcep=0,mgptp=0",
                 "edge,frames=27")  # fmt: skip


def _lifter(a: argparse.Namespace) -> Lifter | MLPLifter | None:
    """The frozen single-frame lifter of --lifter-from (or the bundled HiPART's, for --condition lifter)."""
    if a.condition == "2d" and a.lifter_from is not None:
        raise ValueError("--lifter-from conditions the model on that lifter: drop --condition 2d")
    if a.lifter_from is None and a.condition != "lifter":
        return None
    path = a.lifter_from or bundled_checkpoint()
    if path is None:
        raise ValueError("--condition lifter needs --lifter-from HIPART.pt (this build bundles no HiPART model)")
    return single_frame_lifter(path)


def model_config(a: argparse.Namespace, lifter: Lifter | MLPLifter | None) -> HTPConfig:
    """HTPConfig from --config (small | edge | paper | JSON file) and the explicit switches."""
    over: dict[str, Any] = {k: getattr(a, k) for k in ("keep", "tcep_k", "mgptp_k", "sft_layers", "restore_base",
                                                         "restore_query")
                            if getattr(a, k) is not None}  # fmt: skip
    if a.no_tcep:
        over.update(tcep=False, sft=False)  # SFT needs TCEP's mask
    if a.no_sft:
        over["sft"] = False
    if a.no_mgptp:
        over["mgptp"] = False
    if lifter is not None:
        over.update(condition="lifter", lifter=asdict(lifter.config), num_points=lifter.config.num_points)
    if a.config in ("small", "edge", "paper"):
        return getattr(HTPConfig, a.config)(a.frames, **over)
    d = json.loads(Path(a.config).read_text())
    d.setdefault("frames", a.frames)
    return HTPConfig.from_dict({**d, **over})


def _windows(a: argparse.Namespace, model: HTPDenoiser, split: str, stride: int) -> PoseWindows:
    cfg = model.config
    data = PoseWindows(a.data, split, cfg.frames, stride, 0, a.input_2d, cfg.num_points, a.generated, a.camera)
    attach_lifter_features(model, data, a.feature_cache, not a.no_progress)  # duck-typed: HTP has the same interface
    return data


def train(a: argparse.Namespace) -> int:
    """hipart-temporal htp-train."""
    torch.manual_seed(a.seed)
    lifter = _lifter(a)
    cfg = model_config(a, lifter)
    model = HTPDenoiser(cfg)
    if lifter is not None:
        model.load_lifter(lifter)
    data = _windows(a, model, "train", a.stride or max(1, cfg.frames // 4))
    recipe = HTPRecipe(lr=a.lr, weight_decay=a.weight_decay, batch_size=a.batch_size, epochs=a.epochs,
                       lambda_vel=a.lambda_vel)  # fmt: skip
    loop = LoopConfig(seed=a.seed, max_steps=a.max_steps, device=a.device, progress=not a.no_progress)
    version, args = record_run(a, cfg, "htp")
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"[htp] {describe(cfg)}: {len(data)} windows of {cfg.frames} frames ({len(data.rows)} frames); "
          f"{trained} trained parameters")  # fmt: skip
    t0 = time.perf_counter()
    rec = train_htp(model.to(a.device), data, recipe, loop, a.out, a.resume, a.minutes)
    path = save_checkpoint(a.out / "htp.pt", model.cpu(), version, {"last": rec, "train_args": args})
    print(f"[htp] done in {time.perf_counter() - t0:.0f} s; last: {rec}; checkpoint {path}")
    return 0


def evaluate(a: argparse.Namespace) -> int:
    """hipart-temporal htp-eval."""
    if a.split == "train":
        print("error: refusing to evaluate on the training split", file=sys.stderr)
        return 2
    model, meta = load_checkpoint(a.checkpoint, expect_kind="htp")
    cfg = model.config
    data = _windows(a, model, a.split, a.stride or cfg.frames)
    t0 = time.perf_counter()
    r = evaluate_htp(model, data, image_size(a.data), a.hypotheses, a.steps, a.seed, a.batch_size, not a.no_progress)
    r["eval_s"] = time.perf_counter() - t0
    r["cost"] = htp_cost(cfg, a.hypotheses, a.steps)
    m = r["metrics"]
    for name in ("jpma", "mean", "p_best", "j_best"):
        if name in m:
            extra = f"  MPJVE {m[name]['mpjve_mm']:.2f} mm/frame" if "mpjve_mm" in m[name] else ""
            print(f"{a.split} {name:6s}: MPJPE {m[name]['mpjpe_mm']:6.1f} mm  PA-MPJPE {m[name]['pa_mpjpe_mm']:6.1f} "
                  f"mm{extra}")  # fmt: skip
    if "jpma" not in m:
        print("note: the dataset stores no camera intrinsics (cam_K): no JPMA, the aggregate is the hypothesis mean")
    c = r["cost"]
    print(f"{r['n']} frames, {describe(cfg)}, H={a.hypotheses} K={a.steps}: {r['frames_per_s']:.0f} frames/s "
          f"({r['windows_per_s']:.1f} windows/s, {r['threads']} thread(s)); {c['params'] / 1e6:.3f} M params, "
          f"{c['train_gmacs_per_frame'] * 1e3:.2f} M training / {c['infer_gmacs_per_frame'] * 1e3:.2f} M inference "
          f"MACs per frame; eval {r['eval_s']:.1f} s")  # fmt: skip
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"checkpoint": str(a.checkpoint), "model_hash": meta.get("model_hash"),
                                      "trained_on": meta.get("data_version"), "split": a.split,
                                      "input_2d": a.input_2d, "camera": a.camera, "model": cfg.to_dict(), **r},
                                     indent=1))  # fmt: skip
    return 0


def bench(a: argparse.Namespace) -> int:
    """hipart-temporal htp-bench."""
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = []
    for spec in a.configs or DEFAULT_BENCH:
        r = measure_htp(parse_spec(spec), a.hypotheses, a.steps, a.runs)
        rows.append({"spec": spec, **r})
        print(f"{r['config']:44s} params {r['params'] / 1e6:7.3f} M  train {r['train_gmacs_per_frame'] * 1e3:8.3f} "
              f"MMACs/frame  infer {r['infer_gmacs_per_frame'] * 1e3:8.3f} MMACs/frame  window {r['window_ms']:7.1f} "
              f"ms = {r['fps']:7.1f} frames/s", flush=True)  # fmt: skip
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"device": "cpu", "threads": torch.get_num_threads(), "runs": a.runs,
                                      "hypotheses": a.hypotheses, "steps": a.steps, "results": rows}, indent=1))
    return 0


def add_commands(sub: Any, data_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add htp-train / htp-eval / htp-bench to `hipart-temporal`'s subparsers (`data_args` adds its shared
    --data / --generated / --camera / --input-2d / --stride / --seed / --feature-cache / --no-progress)."""
    t = sub.add_parser("htp-train", help="train the HTP diffusion lifter (D3DP-style, hierarchical temporal pruning)")
    data_args(t)
    t.add_argument("--out", type=Path, default=Path("runs/htp"), help="run folder (default runs/htp)")
    t.add_argument("--frames", type=positive_int, default=27, help="window length T (default 27)")
    t.add_argument("--config", default="small", help="small | edge | paper | path to an HTPConfig JSON")
    t.add_argument("--no-tcep", action="store_true", help="no TCEP (and so no SFT-MHSA, which needs its mask)")
    t.add_argument("--no-sft", action="store_true", help="dense temporal attention instead of SFT-MHSA")
    t.add_argument("--no-mgptp", action="store_true", help="no frame pruning: all T frames through every block")
    t.add_argument("--keep", type=positive_int, help="MGPTP's kept frames n (default round(T*54/243), >= 2)")
    t.add_argument("--tcep-k", type=positive_int, help="TCEP's top-k neighbours per frame (default ~T/3)")
    t.add_argument("--mgptp-k", type=positive_int, help="MGPTP's kNN of the density (default 3)")
    t.add_argument("--sft-layers", type=int, help="blocks before MGPTP (SFT-MHSA ones; preset default)")
    t.add_argument("--restore-query", choices=["learned", "skip"],
                   help="MGPTP's restore queries: learned tokens + positions (default, as H2OT's TRA) or + each "
                   "frame's own tokens from before the pruning")
    t.add_argument("--restore-base", choices=["interpolated", "own"],
                   help="with MGPTP and --condition lifter: a dropped frame's single-frame pose is interpolated from "
                   "the kept frames' (default, as H2OT) or its own")
    t.add_argument("--condition", choices=["2d", "lifter"],
                   help="2d: x_s only; lifter: + the frozen single-frame lifter's features and pose (default 2d)")
    t.add_argument("--lifter-from", type=Path, metavar="HIPART_PT",
                   help="the HiPART checkpoint whose lifter conditions the model (implies --condition lifter; "
                        "default for --condition lifter: the bundled model)")
    t.add_argument("--epochs", type=positive_int, default=HTPRecipe.epochs)
    t.add_argument("--max-steps", type=positive_int, help="stop after N steps in all (resumable)")
    t.add_argument("--minutes", type=positive_float, help="stop after this much training wall time (resumable)")
    t.add_argument("--batch-size", type=positive_int, default=HTPRecipe.batch_size)
    t.add_argument("--lr", type=positive_float, default=HTPRecipe.lr)
    t.add_argument("--weight-decay", type=float, default=HTPRecipe.weight_decay)
    t.add_argument("--lambda-vel", type=float, default=HTPRecipe.lambda_vel, help="velocity loss weight (default 0)")
    t.add_argument("--resume", action="store_true", help="continue from <out>/htp.state.pt")
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    t.set_defaults(func=train)
    e = sub.add_parser("htp-eval", help="MPJPE / PA-MPJPE (JPMA, mean, P-Best, J-Best), MACs and speed of an HTP model")
    data_args(e)
    e.add_argument("--checkpoint", type=Path, required=True)
    e.add_argument("--split", default="test", help="split to evaluate (default test; never train)")
    e.add_argument("--hypotheses", type=positive_int, default=5, help="H (default 5)")
    e.add_argument("--steps", type=positive_int, default=5, help="K DDIM steps (default 5)")
    e.add_argument("--batch-size", type=positive_int, default=8, help="windows per call (default 8)")
    e.add_argument("--json", type=Path, help="write the metrics here")
    e.set_defaults(func=evaluate)
    b = sub.add_parser("htp-bench", help="params, MACs per frame and CPU latency of HTP configurations")
    b.add_argument("--configs", nargs="+", help="specs like 'small,frames=27,mgptp=0' (default: a T=27 ablation)")
    b.add_argument("--hypotheses", type=positive_int, default=5)
    b.add_argument("--steps", type=positive_int, default=5)
    b.add_argument("--runs", type=positive_int, default=3, help="timed windows per configuration (median; default 3)")
    b.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    b.add_argument("--json", type=Path, help="write the results here")
    b.set_defaults(func=bench)
