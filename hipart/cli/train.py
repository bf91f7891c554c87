"""`hipart-train`: train the HiPART stages on a dataset built by `hipart-data build`."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hipart import skeleton
from hipart.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hipart.cli.arg_types import confidence, positive_int
from hipart.cli.guard import exit_codes, interruptible, is_dataset_dir, run_guarded
from hipart.data.dataset import InMemorySplit, load_manifest
from hipart.models.config import LIFTER_POINTS, HiPARTConfig
from hipart.models.generator import HiARM
from hipart.models.hipart import HiPART
from hipart.models.lifter import Lifter, MLPLifter, build_lifter
from hipart.models.tokenizer import MSSTokenizer
from hipart.training.loop import LoopConfig
from hipart.training.stages import (
    StageRecipe,
    TrainRecipe,
    generate_dataset,
    tokenize_dataset,
    train_generator,
    train_lifter,
    train_tokenizer,
)

STAGES = ("tokenizer", "generator", "lifter", "all", "assemble")


def data_version(root: Path) -> str:
    """Content version of a built dataset: hash of its manifest (which lists every array's sha256)."""
    return "sha256:" + hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest()[:16]


def record_run(a: argparse.Namespace, cfg: Any, name: str) -> tuple[str, dict[str, str]]:
    """Create run folder a.out and write `<name>_config.json` (model config, CLI args, data version of a.data) ->
    (data version, args as strings) for the checkpoint's metadata."""
    version = data_version(a.data)
    a.out.mkdir(parents=True, exist_ok=True)
    args = {k: str(v) for k, v in vars(a).items() if k != "func"}
    (a.out / f"{name}_config.json").write_text(json.dumps({"model": cfg.to_dict(), "args": args,
                                                           "data_version": version}, indent=1))  # fmt: skip
    return version, args


def single_frame_lifter(path: str | os.PathLike) -> Lifter | MLPLifter:
    """The lifter of a trained HiPART checkpoint, for the video lifters built on it (it must take 161 or 17 points)."""
    hip, _ = load_checkpoint(path, expect_kind="hipart")
    if hip.lifter.config.num_points not in (skeleton.NUM_HIERARCHY_POINTS, skeleton.NUM_JOINTS):
        raise ValueError(f"{path}: its lifter takes {hip.lifter.config.num_points} points; the video lifters take "
                         f"{skeleton.NUM_HIERARCHY_POINTS} (hierarchy) or {skeleton.NUM_JOINTS} (sparse)")
    return hip.lifter


def load_config(spec: str, lifter_input: str) -> HiPARTConfig:
    """'paper', 'edge', 'tiny' or a JSON file of HiPARTConfig fields."""
    if spec == "paper":
        cfg = HiPARTConfig.paper()
    elif spec == "edge":
        cfg = HiPARTConfig.edge(lifter_input)
    elif spec == "tiny":
        cfg = HiPARTConfig.tiny(lifter_input)
    else:
        p = Path(spec)
        if not p.is_file():
            raise ValueError(f"--config {spec}: not paper, edge, tiny or an existing HiPARTConfig JSON file")
        try:
            cfg = HiPARTConfig.from_dict(json.loads(p.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise ValueError(f"--config {spec}: not a readable HiPARTConfig JSON ({type(e).__name__}: {e})") from None
    if lifter_input != cfg.lifter_input:
        d = cfg.to_dict()
        d["lifter_input"] = lifter_input
        d["lifter"]["num_points"] = LIFTER_POINTS[lifter_input]
        cfg = HiPARTConfig.from_dict(d)
    return cfg


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hipart-train",
        description="Train HiPART stage by stage (paper App. C).",
        epilog=exit_codes({0: "ok", 1: "bad checkpoint or data (one-line reason); state saved at the last checkpoint "
                           "step, rerun with --resume", 2: "bad flag or not a dataset folder"}),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("stage", choices=STAGES, help="which stage to train; 'all' runs the three in order; 'assemble' "
                   "only joins stage checkpoints into <out>/hipart.pt (ablations: mix stages of different runs)")
    p.add_argument("--data", type=Path, required=True, help="dataset folder from `hipart-data build`")
    p.add_argument("--out", type=Path, default=Path("runs/default"), help="run folder (default runs/default)")
    p.add_argument("--config", default="paper", help="paper | edge | tiny | path to a HiPARTConfig JSON")
    p.add_argument("--lifter-input", choices=["hierarchy", "dense", "sparse"], default="hierarchy",
                   help="lifter sees 17+48+96 points (default), 17+48, or the 17 joints only")
    p.add_argument("--epochs", type=positive_int, nargs=3, metavar=("TOK", "GEN", "LIFT"),
                   help="epochs per stage (default: the CPU budget in docs/TRAINING.md)")
    p.add_argument("--subsample", type=positive_int, default=1, help="use every K-th training sample (default 1)")
    p.add_argument("--input-2d", choices=["noisy", "det", "gt"], default="noisy",
                   help="2D input of generator/lifter: detector-like noise (default), stored detections, or clean")
    p.add_argument("--batch-sizes", type=positive_int, nargs=3, metavar=("TOK", "GEN", "LIFT"),
                   help="override the paper's batch sizes (128 64 256)")
    p.add_argument("--flip", type=confidence, default=0.5,
                   help="probability of a horizontal flip (mirror + L/R swap) per lifter sample (default 0.5)")
    p.add_argument("--tokenizer-from", type=Path, help="assemble: tokenizer.pt to use (default <out>/tokenizer.pt)")
    p.add_argument("--generator-from", type=Path, help="assemble: generator.pt to use (default <out>/generator.pt)")
    p.add_argument("--lifter-from", type=Path, help="assemble: lifter.pt to use (default <out>/lifter.pt)")
    p.add_argument("--init-from", type=Path, metavar="HIPART.pt",
                   help="start from a trained model (e.g. the bundled one): its tokenizer and generator (config and "
                        "weights) seed <out>/tokenizer.pt and generator.pt; the generator stage fine-tunes from them; "
                        "the lifter comes from --config")
    p.add_argument("--generator-dropout", type=float, help="override the generator's dropout (paper 0.25)")
    p.add_argument("--max-steps", type=positive_int, help="stop each stage after N steps (smoke runs; resumable)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/<stage>.state.pt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-progress", action="store_true")
    return p


def _need(path: Path, what: str) -> None:
    if not path.exists():
        raise CheckpointError(f"{path} not found: train the {what} stage first (hipart-train {what} ...)")


def assemble_stages(tokenizer: Path, generator: Path, lifter: Path) -> tuple[HiPART, str]:
    """HiPART from three stage checkpoints (each keeps its own config) -> (model, data version of the lifter)."""
    for path, what in ((tokenizer, "tokenizer"), (generator, "generator"), (lifter, "lifter")):
        _need(path, what)
    tok, _ = load_checkpoint(tokenizer, "tokenizer")
    gen, _ = load_checkpoint(generator, "generator")
    lif, meta = load_checkpoint(lifter, "lifter")
    training_only = {"num_actions", "local_alignment", "global_alignment", "lambda_local", "lambda_global", "tau"}
    want, have = (
        {k: v for k, v in asdict(c).items() if k not in training_only} for c in (tok.config, gen.tok_config)
    )
    if want != have:
        raise ValueError(f"{generator} was trained for a different tokenizer than {tokenizer}")
    inputs = {n: k for k, n in LIFTER_POINTS.items()}
    if lif.config.num_points not in inputs:
        raise ValueError(f"{lifter}: a lifter over {lif.config.num_points} points matches no lifter input")
    cfg = HiPARTConfig(tokenizer=tok.config, generator=gen.config, lifter=lif.config,
                       lifter_input=inputs[lif.config.num_points])
    model = _join(cfg, tok, gen, lif)
    return model.eval(), meta.get("data_version", "")


def _init_distributed(device: str) -> None:
    """Under torchrun (WORLD_SIZE > 1): join the process group (nccl on GPU, gloo on CPU)."""
    dist = torch.distributed
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def _is_writer() -> bool:
    """Only rank 0 writes files (every rank when not distributed)."""
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def _save(path: Path, *args, **kwargs) -> None:
    if _is_writer():
        save_checkpoint(path, *args, **kwargs)


def _savez(path: Path, **arrays) -> None:
    if _is_writer():
        np.savez(path, **arrays)


def run(a: argparse.Namespace) -> int:
    torch.manual_seed(a.seed)
    _init_distributed(a.device)
    if a.stage == "assemble":
        model, version = assemble_stages(a.tokenizer_from or a.out / "tokenizer.pt",
                                         a.generator_from or a.out / "generator.pt",
                                         a.lifter_from or a.out / "lifter.pt")
        a.out.mkdir(parents=True, exist_ok=True)
        _save(a.out / "hipart.pt", model, version, {"assembled_from": {
            "tokenizer": str(a.tokenizer_from or a.out / "tokenizer.pt"),
            "generator": str(a.generator_from or a.out / "generator.pt"),
            "lifter": str(a.lifter_from or a.out / "lifter.pt")}})
        print(f"[hipart] assembled model written to {a.out / 'hipart.pt'}")
        return 0
    cfg = load_config(a.config, a.lifter_input)
    init = None
    if a.init_from is not None:
        init, _ = load_checkpoint(a.init_from, "hipart")
        cfg = HiPARTConfig(tokenizer=init.config.tokenizer, generator=init.config.generator, lifter=cfg.lifter,
                           lifter_input=cfg.lifter_input)
        a.out.mkdir(parents=True, exist_ok=True)
        for name, part in (("tokenizer", init.tokenizer), ("generator", init.generator)):
            if not (a.out / f"{name}.pt").exists():
                _save(a.out / f"{name}.pt", part, None, {"init_from": str(a.init_from)})
    if a.generator_dropout is not None:
        d = cfg.to_dict()
        d["generator"]["dropout"] = a.generator_dropout
        cfg = HiPARTConfig.from_dict(d)
    man = load_manifest(a.data)
    if "action_classes" not in man:
        raise ValueError(f"{a.data}/manifest.json lacks action_classes (rebuild it with `hipart-data build`)")
    n_actions = len(man["action_classes"])
    if init is None and cfg.tokenizer.num_actions != n_actions:  # Global Alignment head = the dataset's classes
        d = cfg.to_dict()
        d["tokenizer"]["num_actions"] = n_actions
        cfg = HiPARTConfig.from_dict(d)
    recipe = TrainRecipe()
    if cfg.lifter.kind == "mlp":  # residual-MLP lifter: batch 256, warm-up + cosine (docs/TRAINING.md)
        recipe.lifter = StageRecipe(1e-3, 1e-4, 256, recipe.lifter.epochs, warmup_steps=300, schedule="cosine")
    if a.epochs:
        recipe.tokenizer.epochs, recipe.generator.epochs, recipe.lifter.epochs = a.epochs
    if a.batch_sizes:
        recipe.tokenizer.batch_size, recipe.generator.batch_size, recipe.lifter.batch_size = a.batch_sizes
    recipe.lifter_flip = a.flip
    loop = LoopConfig(seed=a.seed, max_steps=a.max_steps, device=a.device, progress=not a.no_progress)
    version = data_version(a.data)
    a.out.mkdir(parents=True, exist_ok=True)
    _barrier()
    if _is_writer():
        (a.out / "config.json").write_text(json.dumps({"model": cfg.to_dict(), "args": {
        k: str(v) for k, v in vars(a).items()}, "data_version": version}, indent=1))
    stages = ["tokenizer", "generator", "lifter"] if a.stage == "all" else [a.stage]
    t_start = time.perf_counter()
    for stage in stages:
        t0 = time.perf_counter()
        if stage == "tokenizer":
            tok = MSSTokenizer(cfg.tokenizer).to(a.device)
            data = InMemorySplit(a.data, "train", "gt", a.subsample, seed=a.seed)
            rec = train_tokenizer(tok, data, recipe.tokenizer, loop, a.out, a.resume)
            _save(a.out / "tokenizer.pt", tok.cpu(), version, {"last": rec, **tok.codebook_report()})
        elif stage == "generator":
            _need(a.out / "tokenizer.pt", "tokenizer")
            tok, _ = load_checkpoint(a.out / "tokenizer.pt", "tokenizer")
            data = InMemorySplit(a.data, "train", a.input_2d, a.subsample, seed=a.seed)
            cache = a.out / f"tokens_train_s{a.subsample}.npz"
            if cache.exists():
                z = np.load(cache)
                q_s, q_d = z["q_s"], z["q_d"]
            else:
                q_s, q_d = tokenize_dataset(tok, data, progress=not a.no_progress)
                _savez(cache, q_s=q_s, q_d=q_d)
            gen = HiARM(cfg.generator, cfg.tokenizer)
            if init is not None:
                gen.load_state_dict(init.generator.state_dict())
            gen.set_codebooks(tok.sparse_quantizer.codebook, tok.dense_quantizer.codebook)
            rec = train_generator(gen.to(a.device), data.add(q_s=q_s, q_d=q_d), recipe.generator, loop, a.out,
                                  a.resume)
            _save(a.out / "generator.pt", gen.cpu(), version, {"last": rec})
        else:
            model = assemble(a.out, cfg, lifter=None)
            data = InMemorySplit(a.data, "train", a.input_2d, a.subsample, seed=a.seed)
            extra = {}
            if cfg.lifter_input != "sparse":
                cache = a.out / f"generated_train_s{a.subsample}_{a.input_2d}.npz"
                if cache.exists():
                    z = np.load(cache)
                    extra = {"gen_dense": z["dense"], "gen_fine": z["fine"]}
                else:
                    dense, fine = generate_dataset(model, data, progress=not a.no_progress)
                    _savez(cache, dense=dense, fine=fine)
                    extra = {"gen_dense": dense, "gen_fine": fine}
            lifter = build_lifter(cfg.lifter).to(a.device)
            rec = train_lifter(lifter, data.add(**extra), recipe.lifter, loop, a.out, a.resume,
                               recipe.lifter_gt_mix, recipe.lifter_flip)
            _save(a.out / "lifter.pt", lifter.cpu(), version, {"last": rec})
            model = assemble(a.out, cfg, lifter.cpu())
            args = {k: str(v) for k, v in vars(a).items()}
            _save(a.out / "hipart.pt", model, version, {"train_args": args})
            print(f"[hipart] assembled model written to {a.out / 'hipart.pt'}")
        _barrier()  # every rank sees this stage's files before the next stage reads them
        print(f"[{stage}] done in {time.perf_counter() - t0:.0f} s; last: {rec}")
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


def assemble(out: Path, cfg: HiPARTConfig, lifter: Lifter | MLPLifter | None) -> HiPART:
    """HiPART from the stage checkpoints in `out` (and an in-memory lifter if given)."""
    _need(out / "tokenizer.pt", "tokenizer")
    _need(out / "generator.pt", "generator")
    tok, _ = load_checkpoint(out / "tokenizer.pt", "tokenizer")
    gen, _ = load_checkpoint(out / "generator.pt", "generator")
    return _join(cfg, tok, gen, lifter)


def _join(cfg: HiPARTConfig, tok: MSSTokenizer, gen: HiARM, lifter: Lifter | MLPLifter | None) -> HiPART:
    """HiPART(cfg) holding the given stage weights (a missing lifter keeps its fresh weights), in eval mode."""
    model = HiPART(cfg)
    model.tokenizer.load_state_dict(tok.state_dict())
    model.generator.load_state_dict(gen.state_dict())
    if lifter is not None:
        model.lifter.load_state_dict(lifter.state_dict())
    model.sync_codebooks()
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    """Entry point of hipart-train (exit codes in the parser's epilog)."""
    return interruptible("hipart-train", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    a = build_parser().parse_args(argv)
    if a.subsample < 1:
        print("error: --subsample must be >= 1", file=sys.stderr)
        return 2
    if not is_dataset_dir(a.data):
        return 2
    return run_guarded(run, a, (CheckpointError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
