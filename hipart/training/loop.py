"""A small resumable training loop: deterministic data order, progress bar, JSONL log, atomic state files."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from hipart.checkpoint import atomic_torch_save

# step_fn(batch, net): `net` is the model, or its DistributedDataParallel wrapper under torchrun (call forward
# through it so gradients are averaged across ranks).
StepFn = Callable[[dict[str, torch.Tensor], nn.Module], dict[str, torch.Tensor]]


@dataclass
class LoopConfig:
    """How long and how to run one stage."""

    epochs: int = 1
    batch_size: int = 64
    seed: int = 0
    max_steps: int | None = None  # stop early (smoke runs); the state is saved so --resume continues
    save_every: int = 200  # steps between state saves
    grad_clip: float | None = 1.0
    device: str = "cpu"
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The sample order of one epoch: a permutation fixed by (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack a list of sample dicts into a batch dict."""
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def train_loop(
    name: str,
    model: nn.Module,
    dataset: Dataset,
    step_fn: StepFn,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    cfg: LoopConfig,
    out_dir: Path,
    resume: bool = False,
) -> dict[str, Any]:
    """Train `model` with `step_fn(batch) -> {"loss": ..., other scalars}`; returns the last logged record.

    State (model, optimizer, scheduler, RNG, position in the epoch) goes to `<out>/<name>.state.pt` every
    `save_every` steps and at the end, so `resume=True` continues exactly where a run stopped.

    Under torchrun (an initialised process group) the model is wrapped in DistributedDataParallel and each
    rank takes its share (`rank::world`) of every global batch of `batch_size`; each rank's loss is weighted
    by its share, so the averaged gradient is the global batch's and the weights stay identical across ranks
    and equal to a one-process run. Only rank 0 writes the log and state files.
    """
    dist = torch.distributed
    ddp = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    state_path, log_path = out_dir / f"{name}.state.pt", out_dir / f"{name}.log.jsonl"
    n = len(dataset)
    if n == 0:
        raise ValueError(f"{name}: the training set is empty")
    steps_per_epoch = -(-n // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    step, epoch, start_batch = 0, 0, 0
    torch.manual_seed(cfg.seed)
    if resume and state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"])
        optimizer.load_state_dict(st["optimizer"])
        scheduler.load_state_dict(st["scheduler"])
        torch.set_rng_state(st["rng"])
        step, epoch, start_batch = st["step"], st["epoch"], st["batch_in_epoch"]
    elif resume:
        print(f"[{name}] no state at {state_path}; starting from scratch")

    def save(epoch_: int, batch_: int) -> None:
        if rank != 0:
            return
        atomic_torch_save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "rng": torch.get_rng_state(), "step": step, "epoch": epoch_, "batch_in_epoch": batch_}, state_path,
        )

    record: dict[str, Any] = {}
    stop_at = total if cfg.max_steps is None else min(total, cfg.max_steps)
    bar = tqdm(total=stop_at, initial=step, desc=name, disable=not cfg.progress or rank != 0, dynamic_ncols=True)
    model.train()
    net = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
    with open(log_path if rank == 0 else os.devnull, "a") as log:
        while epoch < cfg.epochs and step < stop_at:
            order = epoch_order(n, cfg.seed, epoch)[start_batch * cfg.batch_size :]
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
            shards = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
            share = [len(g[rank::world]) * world / len(g) for g in shards]  # loss weight of this rank's part
            shards = [g[rank::world] for g in shards]
            if hasattr(dataset, "batch"):  # in-memory split: gather whole batches by index
                loader = (dataset.batch(g) for g in shards)
            else:  # a private generator keeps the DataLoader from drawing on the global RNG (exact resume)
                loader = DataLoader(dataset, batch_sampler=shards, collate_fn=collate, generator=torch.Generator())
            for bi, batch in enumerate(loader, start=start_batch):
                t0 = time.perf_counter()
                batch = {k: v.to(cfg.device) for k, v in batch.items()}
                out = step_fn(batch, net)
                optimizer.zero_grad(set_to_none=True)
                (out["loss"] * share[bi - start_batch]).backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                record = {"stage": name, "step": step, "epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
                          "sec": round(time.perf_counter() - t0, 4)}
                record.update({k: round(float(v.detach()), 6) for k, v in out.items() if v.dim() == 0})
                log.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{record['loss']:.4f}", ep=epoch)
                bar.update(1)
                if step % cfg.save_every == 0 or step >= stop_at:
                    log.flush()
                    nxt = (epoch, bi + 1) if bi + 1 < steps_per_epoch else (epoch + 1, 0)
                    save(*nxt)
                if step >= stop_at:
                    break
            else:
                epoch, start_batch = epoch + 1, 0
                continue
            break
    bar.close()
    model.eval()
    return record
