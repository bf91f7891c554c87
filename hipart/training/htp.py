"""Training, evaluation and cost of the HTP diffusion lifter (hipart.models.htp) on PoseWindows.

Training follows D3DP: one timestep per window (H = K = 1), the denoiser predicts the clean pose, MPJPE on it over
valid frames (+ an optional velocity term). Evaluation samples H hypotheses with K DDIM steps from seeded noise per
window and scores the JPMA aggregate, the hypothesis mean, and the oracle best-of-H per pose and per joint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from hipart.data.dataset import load_manifest
from hipart.data.sequences import PoseWindows
from hipart.metrics import p_mpjpe
from hipart.models.diffusion import jpma, normalised_intrinsics
from hipart.models.htp import HTPConfig, HTPDenoiser, htp_cost
from hipart.training.loop import LoopConfig, collate, train_loop
from hipart.training.schedules import step_decay
from hipart.training.temporal import temporal_loss

RUN_NAME = "htp"  # <out>/htp.state.pt, htp.log.jsonl; the checkpoint is <out>/htp.pt


@dataclass
class HTPRecipe:
    """Optimiser settings of an HTP run (AdamW with weight decay 0.1 as the paper; per-epoch decay)."""

    lr: float = 5e-4
    weight_decay: float = 0.1
    batch_size: int = 16
    epochs: int = 20
    lr_decay: float = 0.96  # per epoch (paper: 0.993 over 150 epochs)
    lambda_vel: float = 0.0  # velocity term; the paper trains with MPJPE only


def htp_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], lambda_vel: float = 0.0
             ) -> dict[str, torch.Tensor]:  # fmt: skip
    """One diffusion training step's loss: noise the target at a random timestep, predict x0, MPJPE (+ velocity)."""
    diff = model.diffusion if isinstance(model, HTPDenoiser) else model.module.diffusion  # DDP wraps the model
    y0 = batch["pose3d"]
    t = torch.randint(0, diff.timesteps, (y0.shape[0],), device=y0.device)
    x0 = model(diff.q_sample(y0, t, torch.randn_like(y0)), t, batch["x"], batch.get("features"))
    return temporal_loss(diff.to_metres(x0), y0, batch["valid"], lambda_vel)


def train_htp(model: HTPDenoiser, data: PoseWindows, recipe: HTPRecipe, loop: LoopConfig, out: Path,
              resume: bool = False, minutes: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Train through train_loop (resumable, logged). `minutes` bounds the wall time: the run goes in chunks of at most
    `loop.save_every` steps, each resumed exactly from the state the previous one saved, until the time is used."""
    params = [p for p in model.parameters() if p.requires_grad]  # not the frozen single-frame lifter
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = step_decay(opt, -(-len(data) // recipe.batch_size), gamma=recipe.lr_decay, every_epochs=1)

    def step(b: dict[str, torch.Tensor], net: torch.nn.Module) -> dict[str, torch.Tensor]:
        return htp_loss(net, b, recipe.lambda_vel)

    cfg = replace(loop, epochs=recipe.epochs, batch_size=recipe.batch_size)
    if minutes is None:
        return train_loop(RUN_NAME, model, data, step, opt, sched, cfg, out, resume)
    state = out / f"{RUN_NAME}.state.pt"
    done = torch.load(state, map_location="cpu", weights_only=True)["step"] if resume and state.exists() else 0
    stop = -(-len(data) // recipe.batch_size) * recipe.epochs
    stop = stop if cfg.max_steps is None else min(stop, cfg.max_steps)
    deadline, per_step, rec = time.monotonic() + 60 * minutes, None, {}
    while done < stop and time.monotonic() < deadline:
        left = deadline - time.monotonic()
        chunk = 3 if per_step is None else max(1, min(int(left / per_step), cfg.save_every))
        t0 = time.monotonic()
        rec = train_loop(RUN_NAME, model, data, step, opt, sched, replace(cfg, max_steps=min(stop, done + chunk)),
                         out, resume or done > 0)  # fmt: skip
        if rec.get("step", done) <= done:
            break
        per_step, done = (time.monotonic() - t0) / (rec["step"] - done), rec["step"]
    return rec


def window_intrinsics(data: PoseWindows, rows: np.ndarray, size: tuple[int, int]) -> torch.Tensor | None:
    """Normalised intrinsics [B, 4] of windows whose first rows are `rows` [B], for 2D normalised with the image
    size (width, height) `size` (None: the dataset stores no cam_K)."""
    a = data.arrays
    if "cam_K" not in a:
        return None
    k = np.asarray(a["cam_K"])[np.asarray(a["camera"])[rows]]  # [B, 3, 3]
    k_px = torch.from_numpy(np.stack([k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2]], -1).astype(np.float32))
    return normalised_intrinsics(k_px, *size)


def window_noise(index: torch.Tensor, hypotheses: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Initial noise [H, B, *shape] of windows `index` [B]: one generator per (seed, window), so a window's draw
    does not depend on the batch it is in."""
    draws = [torch.randn((hypotheses, *shape), generator=torch.Generator().manual_seed(seed * 1_000_003 + int(i)))
             for i in index]  # fmt: skip
    return torch.stack(draws, 1)


def _pose_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    err = np.linalg.norm(pred - target, axis=-1).mean(-1)
    return {"mpjpe_mm": float(err.mean() * 1000), "pa_mpjpe_mm": float(p_mpjpe(pred, target).mean() * 1000)}


def _mpjve_mm(rows: np.ndarray, pred: np.ndarray, target: np.ndarray, data: PoseWindows) -> float:
    """MPJVE (mm/frame) over consecutive frames of one clip and camera (rows sorted)."""
    a = data.arrays
    same = (np.diff(rows) == 1) & (np.diff(np.asarray(a["clip"])[rows]) == 0) & (
        np.diff(np.asarray(a["camera"])[rows]) == 0)  # fmt: skip
    vel = np.linalg.norm(np.diff(pred, axis=0) - np.diff(target, axis=0), axis=-1).mean(-1)[same]
    return float(vel.mean() * 1000) if len(vel) else float("nan")


@torch.no_grad()
def evaluate_htp(model: HTPDenoiser, data: PoseWindows, size: tuple[int, int], hypotheses: int = 5, steps: int = 5,
                 seed: int = 0, batch_size: int = 8, progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """Every valid frame of `data` once (non-overlapping windows): MPJPE / PA-MPJPE (mm) of the JPMA aggregate, the
    hypothesis mean, P-Best (best hypothesis per pose) and J-Best (per joint), MPJVE, and the sampling speed.
    `size` = (width, height) of the dataset's normalisation (`image_size`)."""
    model.eval()
    cfg = model.config
    shape = (cfg.frames, cfg.num_joints, 3)
    loader = DataLoader(_Indexed(data), batch_size=batch_size, shuffle=False, collate_fn=collate)
    keep: dict[str, list[np.ndarray]] = {k: [] for k in ("row", "target", "jpma", "mean", "p_best", "j_best")}
    wall, windows, has_k = 0.0, 0, True
    for b in tqdm(loader, desc="htp eval", disable=not progress, dynamic_ncols=True):
        noise = window_noise(b["index"], hypotheses, shape, seed)
        intr = window_intrinsics(data, b["row"][:, 0].numpy(), size)
        t0 = time.perf_counter()
        hyps = model.sample_hypotheses(b["x"], steps=steps, features=b.get("features"), noise=noise)
        agg = hyps.mean(0) if intr is None else jpma(hyps, b["x"][:, :, : cfg.num_joints], intr)
        wall += time.perf_counter() - t0
        windows += len(b["x"])
        has_k &= intr is not None
        target = b["pose3d"]
        err = (hyps - target[None]).norm(dim=-1)  # [H, B, T, J]
        p_best = hyps.gather(0, err.mean(-1).argmin(0)[None, ..., None, None].expand(1, *hyps.shape[1:]))[0]
        j_best = hyps.gather(0, err.argmin(0)[None, ..., None].expand(1, *hyps.shape[1:]))[0]
        valid = b["valid"] > 0
        for k, v in (("row", b["row"]), ("target", target), ("jpma", agg), ("mean", hyps.mean(0)),
                     ("p_best", p_best), ("j_best", j_best)):  # fmt: skip
            keep[k].append(v[valid].numpy())
    rows, first = np.unique(np.concatenate(keep["row"]), return_index=True)
    got = {k: np.concatenate(v)[first] for k, v in keep.items() if k != "row"}
    target = got.pop("target")
    metrics = {k: _pose_metrics(v, target) for k, v in got.items()}
    for k in ("jpma", "mean"):
        metrics[k]["mpjve_mm"] = _mpjve_mm(rows, got[k], target, data)
    if not has_k:
        metrics.pop("jpma")  # without stored intrinsics there is no reprojection to aggregate with
    return {
        "n": int(len(rows)),
        "hypotheses": hypotheses,
        "steps": steps,
        "seed": seed,
        "aggregate": "jpma" if has_k else "mean",
        "metrics": metrics,
        "windows_per_s": windows / wall if wall > 0 else 0.0,
        "frames_per_s": len(rows) / wall if wall > 0 else 0.0,
        "sampling_s": wall,
        "threads": torch.get_num_threads(),
    }


class _Indexed(torch.utils.data.Dataset):
    """PoseWindows samples with their window index (for per-window noise)."""

    def __init__(self, data: PoseWindows):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**self.data[i], "index": torch.tensor(i)}


def image_size(root: str | Path) -> tuple[int, int]:
    """(width, height) the dataset's normalised coordinates were made with."""
    w, h = load_manifest(root)["image_size"]
    return int(w), int(h)


# -- bench -------------------------------------------------------------------------------------------------------------
_BOOL = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}
_INT = ("frames", "num_points", "dim", "blocks", "heads", "sft_layers", "keep", "tcep_k", "mgptp_k", "timesteps")


def parse_spec(spec: str) -> HTPConfig:
    """'small' | 'edge' | 'paper' followed by ',key=value' overrides, e.g. 'small,frames=27,mgptp=0,keep=6'."""
    name, *pairs = [p.strip() for p in spec.split(",") if p.strip()] or [""]
    if name not in ("small", "edge", "paper"):
        raise ValueError(f"config spec must start with small, edge or paper, got {name!r}")
    kw: dict[str, Any] = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep:
            raise ValueError(f"bad config item {p!r} in {spec!r}; expected key=value")
        if k in ("tcep", "sft", "mgptp", "residual"):
            if v.lower() not in _BOOL:
                raise ValueError(f"{k} takes 0/1/true/false/on/off, got {v!r}")
            kw[k] = _BOOL[v.lower()]
        elif k in _INT:
            kw[k] = int(v)
        elif k in ("mlp_ratio", "dropout", "pose_scale"):
            kw[k] = float(v)
        else:
            kw[k] = v
    if kw.get("tcep") is False:
        kw.setdefault("sft", False)  # SFT needs TCEP's mask
    return getattr(HTPConfig, name)(**kw)


def describe(cfg: HTPConfig) -> str:
    """Short label, e.g. 'd32x4 T27 tcep(k9)+sft+mgptp(n6,k3)@2 2d'."""
    parts = [f"tcep(k{cfg.tcep_k})" if cfg.tcep else "", "sft" if cfg.sft else "",
             f"mgptp(n{cfg.keep},k{cfg.mgptp_k})@{cfg.sft_layers}" if cfg.mgptp else ""]  # fmt: skip
    return f"d{cfg.dim}x{cfg.blocks} T{cfg.frames} {'+'.join(p for p in parts if p) or 'baseline'} {cfg.condition}"


@torch.no_grad()
def measure_htp(cfg: HTPConfig, hypotheses: int = 5, steps: int = 5, runs: int = 3) -> dict[str, Any]:
    """Params, MACs per frame and the median CPU latency of one window (batch 1: H x K denoiser calls + JPMA)."""
    cost = htp_cost(cfg, hypotheses, steps)
    torch.manual_seed(0)
    model = HTPDenoiser(cfg).eval()
    x = torch.randn(1, cfg.frames, cfg.num_points, 2) * 0.3
    noise = torch.randn(hypotheses, 1, cfg.frames, cfg.num_joints, 3)
    intr = torch.tensor([[2.0, 2.0, 0.0, 0.0]])
    times = []
    for r in range(runs + 1):  # the first call warms up
        t0 = time.perf_counter()
        model.lift(x, noise, steps, intrinsics=intr)
        if r:
            times.append(time.perf_counter() - t0)
    ms = 1000 * sorted(times)[len(times) // 2]
    return {"config": describe(cfg), **cost, "window_ms": ms, "fps": 1000 * cfg.frames / ms,
            "threads": torch.get_num_threads(), "model": cfg.to_dict()}  # fmt: skip
