"""Sanity experiment (paper App. E, Fig. 12 top): lifter trained on ground-truth 2D with and without the
dense/fine levels, evaluated on the test subjects (MPJPE, mm, root-relative).

  python benchmarks/sanity_hierarchy.py --data out/cmu_lab --variant hier   --minutes 20 --out out/sanity_hier.json
  python benchmarks/sanity_hierarchy.py --data out/cmu_lab --variant sparse --minutes 20 --out out/sanity_sparse.json

CPU-sized: on 2 (shared) CPU cores the paper's transformer Lifter runs at ~6 s per batch of 256 even at
dim 64 / 4 blocks, so the default model here is a Martinez-style residual MLP lifter (--model mlp);
--model transformer uses hipart.models.lifter.Lifter. Both variants get the identical model, wall-clock
budget and data.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from hipart.data.dataset import load_manifest, open_arrays
from hipart.models.config import LifterConfig
from hipart.models.lifter import Lifter


class MLPLifter(torch.nn.Module):
    """Residual MLP lifter (Martinez et al. 2017 style): N x 2 -> 17 x 3."""

    def __init__(self, num_points: int, width: int = 1024, blocks: int = 2, dropout: float = 0.1):
        super().__init__()
        nn = torch.nn
        self.inp = nn.Sequential(nn.Linear(num_points * 2, width), nn.BatchNorm1d(width), nn.ReLU(),
                                 nn.Dropout(dropout))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout),
                          nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout))
            for _ in range(blocks)
        )  # fmt: skip
        self.out = nn.Linear(width, 17 * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x.flatten(1))
        for b in self.blocks:
            h = h + b(h)
        return self.out(h).view(-1, 17, 3)


def inputs(a: dict, idx: np.ndarray, variant: str, center: bool = False) -> np.ndarray:
    """[N, 17|161 (+2), 2] normalised 2D: sparse only, or concat(x_s, x_d, x_f). With center=True the points
    are taken relative to the pelvis and divided by the pose scale (mean joint distance to the pelvis), and
    two extra points carry what that removes: (pelvis x, pelvis y) and (scale, 0)."""
    xs = np.asarray(a["x_s"][idx])
    x = xs if variant == "sparse" else np.concatenate([xs, np.asarray(a["x_d"][idx]),
                                                      np.asarray(a["x_f"][idx])], 1)
    if not center:
        return x
    root = xs[:, :1]
    s = np.linalg.norm(xs - root, axis=-1).mean(1)[:, None, None]
    extra = np.concatenate([root, np.concatenate([s, np.zeros_like(s)], -1)], 1)
    return np.concatenate([(x - root) / s, extra], 1).astype(np.float32)


def targets(a: dict, idx: np.ndarray) -> np.ndarray:
    p = np.asarray(a["p3d_s"][idx])
    return p - p[:, :1]


def mpjpe_mm(model: torch.nn.Module, X: np.ndarray, Y: np.ndarray, bs: int = 1024) -> float:
    model.eval()
    errs = []
    with torch.no_grad():
        for i in range(0, len(X), bs):
            pred = model(torch.from_numpy(X[i : i + bs]))
            errs.append(torch.linalg.norm(pred - torch.from_numpy(Y[i : i + bs]), dim=-1).mean(-1).numpy())
    model.train()
    return float(np.concatenate(errs).mean() * 1000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--variant", choices=("sparse", "hier"), required=True)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--train-stride", type=int, default=2, help="use every k-th training sample")
    ap.add_argument("--test-stride", type=int, default=4)
    ap.add_argument("--model", choices=("mlp", "transformer"), default="mlp")
    ap.add_argument("--center", action="store_true", help="pelvis-centred, scale-normalised 2D input")
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    man = load_manifest(args.data)
    a = open_arrays(args.data, ["x_s", "x_d", "x_f", "p3d_s", "split"])
    split = np.asarray(a["split"])
    tr = np.nonzero(split == man["splits"].index("train"))[0][:: args.train_stride]
    te = np.nonzero(split == man["splits"].index("test"))[0][:: args.test_stride]
    Xtr, Ytr = inputs(a, tr, args.variant, args.center), targets(a, tr)
    Xte, Yte = inputs(a, te, args.variant, args.center), targets(a, te)
    n_pts = Xtr.shape[1]
    if args.model == "mlp":
        model = MLPLifter(n_pts, args.width)
    else:
        model = Lifter(LifterConfig(num_points=n_pts, dim=args.dim, blocks=args.blocks, heads=args.heads,
                                    dropout=0.0))  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    budget = args.minutes * 60
    it, epoch, log = 0, 0, []
    while time.perf_counter() - t0 < budget:
        perm = rng.permutation(len(Xtr))
        for i in range(0, len(perm) - args.batch + 1, args.batch):
            b = perm[i : i + args.batch]
            x, y = torch.from_numpy(Xtr[b]), torch.from_numpy(Ytr[b])
            loss = torch.linalg.norm(model(x) - y, dim=-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            it += 1
            frac = (time.perf_counter() - t0) / budget
            for g in opt.param_groups:  # cosine decay over the wall-clock budget
                g["lr"] = args.lr * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0)))
            if frac >= 1.0:
                break
        epoch += 1
        log.append({"epoch": epoch, "iters": it, "minutes": round((time.perf_counter() - t0) / 60, 2),
                    "train_loss_mm": round(float(loss) * 1000, 1)})  # fmt: skip
        print(log[-1], flush=True)
    err = mpjpe_mm(model, Xte, Yte)
    res = {"variant": args.variant, "num_points": n_pts, "test_mpjpe_mm": round(err, 2), "iters": it,
           "epochs": epoch, "train_samples": len(tr), "test_samples": len(te), "config": vars(args),
           "model": args.model, "log": log}  # fmt: skip
    print(json.dumps({k: v for k, v in res.items() if k != "log"}), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
