"""The three training stages of HiPART (App. C) and the caches between them (tokens, generated poses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from hipart.data.flip import flip_batch
from hipart.models.generator import HiARM
from hipart.models.hipart import HiPART
from hipart.models.lifter import Lifter, MLPLifter
from hipart.models.tokenizer import MSSTokenizer
from hipart.training.loop import LoopConfig, collate, train_loop
from hipart.training.schedules import constant, step_decay, warmup_cosine


@dataclass
class StageRecipe:
    """Optimiser settings of one stage (paper App. C defaults) and its epoch budget."""

    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    warmup_steps: int = 0
    schedule: str = "paper"  # the stage's paper schedule, or "cosine": linear warm-up + cosine to 0


@dataclass
class TrainRecipe:
    """Settings of a full training run; defaults are the paper's optimisers with a CPU-sized epoch budget."""

    tokenizer: StageRecipe = field(default_factory=lambda: StageRecipe(1e-3, 0.15, 128, 20, warmup_steps=500))
    generator: StageRecipe = field(default_factory=lambda: StageRecipe(5e-4, 0.03, 64, 50))
    lifter: StageRecipe = field(default_factory=lambda: StageRecipe(1e-3, 0.0, 256, 25))
    lifter_gt_mix: float = 0.0  # fraction of lifter batches fed ground-truth dense/fine instead of generated
    lifter_flip: float = 0.5  # probability of a horizontal flip (mirror + left/right swap) per lifter sample


class WithArrays(Dataset):
    """A dataset whose samples gain extra per-sample arrays (e.g. cached tokens), matched by position."""

    def __init__(self, base: Dataset, extra: dict[str, np.ndarray]):
        for k, v in extra.items():
            if len(v) != len(base):
                raise ValueError(f"cache {k!r} has {len(v)} rows for a dataset of {len(base)}")
        self.base, self.extra = base, extra

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = dict(self.base[i])
        s.update({k: torch.as_tensor(np.asarray(v[i])) for k, v in self.extra.items()})
        return s


def _batches(dataset: Dataset, batch_size: int, desc: str, progress: bool):
    if hasattr(dataset, "batch"):  # in-memory split: whole batches by index
        n = len(dataset)
        loader = (dataset.batch(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size))
        return tqdm(loader, total=-(-n // batch_size), desc=desc, disable=not progress, dynamic_ncols=True)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    return tqdm(loader, desc=desc, disable=not progress, dynamic_ncols=True)


@torch.no_grad()
def tokenize_dataset(tok: MSSTokenizer, dataset: Dataset, batch_size: int = 512, progress: bool = True):
    """Ground-truth tokens (q_s [N,16], q_d [N,48]) of every sample's fine pose, in dataset order."""
    tok.eval()
    qs, qd = [], []
    for b in _batches(dataset, batch_size, "tokenise", progress):
        s, d = tok.encode(b["x_f"])
        qs.append(s.numpy())
        qd.append(d.numpy())
    return np.concatenate(qs), np.concatenate(qd)


@torch.no_grad()
def generate_dataset(model: HiPART, dataset: Dataset, batch_size: int = 256, progress: bool = True):
    """HiPART-generated dense [N,48,2] and fine [N,96,2] poses from each sample's (noisy) x_s."""
    model.eval()
    dense, fine = [], []
    for b in _batches(dataset, batch_size, "generate", progress):
        out = model.densify(b["x_s"])
        dense.append(out["dense"].numpy())
        fine.append(out["fine"].numpy())
    return np.concatenate(dense).astype(np.float32), np.concatenate(fine).astype(np.float32)


def train_tokenizer(tok: MSSTokenizer, data: Dataset, r: StageRecipe, loop: LoopConfig, out: Path, resume=False):
    """Stage 1: MSST on ground-truth fine/dense poses (+ action labels for Global Alignment)."""
    opt = torch.optim.AdamW(tok.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    steps = -(-len(data) // r.batch_size) * r.epochs
    sched = warmup_cosine(opt, steps, r.warmup_steps)
    use_action = tok.config.global_alignment

    def step(b, net):
        o = net(b["x_f"], b["x_d"], b["action"] if use_action else None)
        return {k: v for k, v in o.items() if k.startswith(("loss", "perplexity", "action_acc"))}

    cfg = LoopConfig(**{**loop.__dict__, "epochs": r.epochs, "batch_size": r.batch_size})
    return train_loop("tokenizer", tok, data, step, opt, sched, cfg, out, resume)


def train_generator(gen: HiARM, data: Dataset, r: StageRecipe, loop: LoopConfig, out: Path, resume=False):
    """Stage 2: HiARM on (x_s, cached tokens) with teacher forcing; data must carry q_s and q_d."""
    opt = torch.optim.AdamW(gen.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    sched = constant(opt)

    def step(b, net):
        ls, ld = net(b["x_s"], b["q_s"], b["q_d"])
        return gen.loss(ls, ld, b["q_s"], b["q_d"])

    cfg = LoopConfig(**{**loop.__dict__, "epochs": r.epochs, "batch_size": r.batch_size})
    return train_loop("generator", gen, data, step, opt, sched, cfg, out, resume)


def lifter_input(b: dict[str, torch.Tensor], num_points: int, gt_mix: float = 0.0) -> torch.Tensor:
    """The lifter's [B, N, 2] input: x_s alone (17), x_s + dense (65) or x_s + dense + fine (161); dense/fine are
    the generated ones (or, with probability gt_mix, the ground truth)."""
    if num_points == b["x_s"].shape[1]:
        return b["x_s"]
    dense, fine = b["gen_dense"], b["gen_fine"]
    if gt_mix > 0:
        use_gt = (torch.rand(dense.shape[0]) < gt_mix)[:, None, None]
        dense, fine = torch.where(use_gt, b["x_d"], dense), torch.where(use_gt, b["x_f"], fine)
    if num_points == b["x_s"].shape[1] + dense.shape[1]:
        return torch.cat([b["x_s"], dense], 1)
    return torch.cat([b["x_s"], dense, fine], 1)


def train_lifter(lifter: Lifter | MLPLifter, data: Dataset, r: StageRecipe, loop: LoopConfig, out: Path, resume=False,
                 gt_mix: float = 0.0, flip: float = 0.0):
    """Stage 3: lifter on [x_s, generated dense, generated fine] -> root-relative 3D, MPJPE loss (metres)."""
    opt = torch.optim.AdamW(lifter.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    steps_per_epoch = -(-len(data) // r.batch_size)
    if r.schedule == "cosine":  # leaves the mean-pose plateau at once (warm-up), ends at lr 0 (edge recipe)
        sched = warmup_cosine(opt, steps_per_epoch * r.epochs, r.warmup_steps)
    else:
        sched = step_decay(opt, steps_per_epoch)
    n = lifter.config.num_points

    def step(b, net):
        if flip > 0:
            b = flip_batch(b, torch.rand(b["x_s"].shape[0]) < flip)
        pred = net(lifter_input(b, n, gt_mix))
        err = (pred - b["pose3d"]).norm(dim=-1).mean()
        return {"loss": err, "mpjpe_mm": err.detach() * 1000}

    cfg = LoopConfig(**{**loop.__dict__, "epochs": r.epochs, "batch_size": r.batch_size})
    return train_loop("lifter", lifter, data, step, opt, sched, cfg, out, resume)
