"""Training and evaluation of the temporal lifter: MPJPE + velocity loss, held-out metrics, generated caches."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from hipart import skeleton
from hipart.atomic_write import atomic_path
from hipart.checkpoint import model_hash
from hipart.data.dataset import load_manifest, open_arrays
from hipart.data.sequences import PoseWindows, sparse_inputs, split_rows
from hipart.metrics import p_mpjpe
from hipart.models.hipart import HiPART
from hipart.models.temporal import TemporalLifter
from hipart.training.loop import LoopConfig, collate, train_loop
from hipart.training.schedules import step_decay
from hipart.training.stages import generate_dataset


@dataclass
class TemporalRecipe:
    """Optimiser settings of a temporal run (Adam with step decay, as the lifter stage)."""

    lr: float = 5e-4
    weight_decay: float = 0.0
    batch_size: int = 16
    epochs: int = 20
    lambda_vel: float = 1.0  # weight of the velocity (MPJVE-style) term; seq2seq only


def temporal_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, lambda_vel: float = 1.0
                  ) -> dict[str, torch.Tensor]:  # fmt: skip
    """MPJPE over valid frames + lambda_vel * velocity error over valid consecutive pairs (metres).

    pred/target [B, T, 17, 3] with valid [B, T], or one frame each: pred/target [B, 17, 3] (no velocity term).
    """
    if pred.dim() == 3:
        err = (pred - target).norm(dim=-1).mean()
        return {"loss": err, "mpjpe_mm": err.detach() * 1000}
    w = valid.to(pred.dtype)
    per_frame = (pred - target).norm(dim=-1).mean(-1)  # [B, T]
    mpjpe = (per_frame * w).sum() / w.sum().clamp(min=1)
    pair = w[:, 1:] * w[:, :-1]
    vel = ((pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])).norm(dim=-1).mean(-1)
    mpjve = (vel * pair).sum() / pair.sum().clamp(min=1)
    return {"loss": mpjpe + lambda_vel * mpjve, "mpjpe_mm": mpjpe.detach() * 1000, "mpjve_mm": mpjve.detach() * 1000}


def window_offset(model: TemporalLifter) -> int:
    """Where a window's target frame sits for this model: 0 (seq2seq chunks) or its seq2frame output frame."""
    return 0 if model.config.pipeline == "seq2seq" else model.config.output_index


def train_temporal(model: TemporalLifter, data: Dataset, recipe: TemporalRecipe, loop: LoopConfig, out: Path,
                   resume: bool = False) -> dict:  # fmt: skip
    """Train on PoseWindows samples with `temporal_loss`; resumable through hipart.training.loop.train_loop."""
    params = [p for p in model.parameters() if p.requires_grad]  # not the frozen single-frame lifter
    opt = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = step_decay(opt, -(-len(data) // recipe.batch_size), gamma=0.96, every_epochs=1)
    seq = model.config.pipeline == "seq2seq"
    f = model.config.output_index

    def step(b: dict[str, torch.Tensor], net: torch.nn.Module) -> dict[str, torch.Tensor]:
        pred = net(b["x"], b.get("features"))
        if seq:
            return temporal_loss(pred, b["pose3d"], b["valid"], recipe.lambda_vel)
        return temporal_loss(pred, b["pose3d"][:, f], b["valid"][:, f])

    cfg = LoopConfig(**{**loop.__dict__, "epochs": recipe.epochs, "batch_size": recipe.batch_size})
    return train_loop("temporal", model, data, step, opt, sched, cfg, out, resume)


@torch.no_grad()
def predict_rows(model: TemporalLifter, data: PoseWindows | Subset, batch_size: int = 32, progress: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(rows [M], predictions [M, 17, 3], targets [M, 17, 3]) of every real frame the model outputs, sorted by row.

    seq2seq windows contribute all their valid frames, seq2frame windows their target frame; a row predicted
    twice (overlapping windows) keeps its first prediction.
    """
    model.eval()
    seq = model.config.pipeline == "seq2seq"
    f = model.config.output_index
    rows, preds, targets = [], [], []
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate)
    for b in tqdm(loader, desc="eval", disable=not progress, dynamic_ncols=True):
        out = model(b["x"], b.get("features"))
        if seq:
            keep = b["valid"] > 0
            rows.append(b["row"][keep].numpy())
            preds.append(out[keep].numpy())
            targets.append(b["pose3d"][keep].numpy())
        else:
            rows.append(b["row"][:, f].numpy())
            preds.append(out.numpy())
            targets.append(b["pose3d"][:, f].numpy())
    r = np.concatenate(rows)
    r, first = np.unique(r, return_index=True)
    return r, np.concatenate(preds)[first], np.concatenate(targets)[first]


def evaluate_temporal(model: TemporalLifter | FrameWiseHiPART, data: PoseWindows, batch_size: int = 32,
                      progress: bool = False) -> dict:
    """MPJPE, PA-MPJPE (mm, per frame) and MPJVE (mm/frame, over consecutive frames of one clip and camera)."""
    t0 = time.perf_counter()
    rows, pred, target = predict_rows(model, data, batch_size, progress)
    wall = time.perf_counter() - t0
    a = data.arrays if isinstance(data, PoseWindows) else data.dataset.arrays
    err = np.linalg.norm(pred - target, axis=-1).mean(-1)
    same_seq = (np.diff(rows) == 1) & (np.diff(np.asarray(a["clip"])[rows]) == 0) & (
        np.diff(np.asarray(a["camera"])[rows]) == 0)  # fmt: skip
    vel = np.linalg.norm(np.diff(pred, axis=0) - np.diff(target, axis=0), axis=-1).mean(-1)[same_seq]
    return {
        "n": int(len(rows)),
        "mpjpe_mm": float(err.mean() * 1000),
        "pa_mpjpe_mm": float(p_mpjpe(pred, target).mean() * 1000),
        "mpjve_mm": float(vel.mean() * 1000) if len(vel) else float("nan"),
        "frames_per_s": float(len(rows) / wall) if wall > 0 else 0.0,
    }


@torch.no_grad()
def lifter_feature_table(model: TemporalLifter, data: PoseWindows, batch_size: int = 256, progress: bool = False
                         ) -> np.ndarray:  # fmt: skip
    """`model.lifter_features` of every frame of `data` (aligned with data.rows): [M, 17, D + 3] float32."""
    was = model.training
    model.eval()
    n = len(data.rows)
    out = np.empty((n, model.config.num_joints, model.lifter_channels), np.float32)
    for s in tqdm(range(0, n, batch_size), desc="single-frame lifter", disable=not progress, dynamic_ncols=True):
        pos = np.arange(s, min(n, s + batch_size))
        out[pos] = model.lifter_features(torch.from_numpy(data.frame_inputs(pos))[:, None])[:, 0].numpy()
    model.train(was)
    return out


def attach_lifter_features(model: TemporalLifter, data: PoseWindows, cache_dir: str | Path | None = None,
                           progress: bool = False) -> None:  # fmt: skip
    """Give `data` the frozen single-frame lifter's per-frame features (reduction='lifter' models; else nothing),
    computed once or read from `cache_dir` (keyed by the lifter's weights and the exact frame inputs)."""
    if model.lifter is None:
        return
    path = None
    if cache_dir is not None:
        h = hashlib.sha256(model_hash(model.lifter).encode())
        for arr in (data.rows, data.x_s, data.dense, data.fine):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).tobytes())
        path = Path(cache_dir) / f"lifter_features_{h.hexdigest()[:16]}.npy"
        if path.is_file():
            table = np.load(path, mmap_mode="r")
            if table.shape == (len(data.rows), model.config.num_joints, model.lifter_channels):
                data.features = np.asarray(table)
                return
    data.features = lifter_feature_table(model, data, progress=progress)
    if path is not None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, data.features)


class FrameWiseHiPART(torch.nn.Module):
    """Single-frame HiPART lifter applied to every frame of a window: the reference the temporal lifter must beat,
    scored by `evaluate_temporal` on exactly the same windows (same x_s, same generated dense/fine)."""

    def __init__(self, hipart: HiPART, frames: int):
        super().__init__()
        self.hipart = hipart
        self.config = SimpleNamespace(pipeline="seq2seq", output_index=frames - 1, frames=frames)

    def forward(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, T, 161, 2] -> [B, T, 17, 3]: each frame lifted on its own (precomputed `features` are ignored)."""
        b, t = x.shape[:2]
        flat = x.reshape(b * t, *x.shape[2:])
        ns, nd = skeleton.NUM_JOINTS, skeleton.NUM_DENSE
        pose = self.hipart.lift(flat[:, :ns], flat[:, ns : ns + nd], flat[:, ns + nd :])
        return pose.reshape(b, t, *pose.shape[1:])


class _SparseFrames(Dataset):
    """x_s of chosen rows, for hipart.training.stages.generate_dataset."""

    def __init__(self, x_s: np.ndarray):
        self.x_s = torch.from_numpy(x_s)

    def __len__(self) -> int:
        return len(self.x_s)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x_s": self.x_s[i]}


def generate_cache(model: HiPART, root: str | Path, split: str, out: str | Path, input_2d: str = "det",
                   camera: int | None = None, batch_size: int = 256, progress: bool = True) -> Path:  # fmt: skip
    """HiPART-generated dense/fine of every row of a split (one camera per clip when given) -> .npz with
    dense [M,48,2], fine [M,96,2], rows [M], input_2d. Uses the same x_s as PoseWindows(input_2d=...)."""
    rows = split_rows(root, split, camera)
    if len(rows) == 0:
        raise ValueError(f"split {split!r} has no rows" + (f" for camera {camera}" if camera is not None else ""))
    x_s = sparse_inputs(open_arrays(root), rows, input_2d, tuple(load_manifest(root)["image_size"]))
    dense, fine = generate_dataset(model, _SparseFrames(x_s), batch_size, progress)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:  # np.savez would append .npz to a name without it
        np.savez(fh, dense=dense, fine=fine, rows=rows, input_2d=np.array(input_2d))
    return out
