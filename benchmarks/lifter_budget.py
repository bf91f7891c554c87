"""Lifter architectures at equal CPU time: test MPJPE against inference GFLOPs per pose (issue: accuracy per compute).

  python benchmarks/lifter_budget.py --data data/cmu_lab --minutes 8 --out benchmarks/results/lifter_budget_cpu.json \
      --plot docs/images/lifter_budget.png

Every candidate trains for the same training-time budget on one thread (the clock stops while it is scored on a
fixed 1,024-pose val probe, 12 times per run), on the same cached inputs: the stored
detector-like x_s of the training subjects (every `--subsample`-th sample) and the dense/fine points the
given HiPART checkpoint generates from them (computed once, cached under --cache). Candidates are chosen on
the val subjects (best val checkpoint kept); test subjects 05/08/13 are scored once at the end. The GFLOPs
of a hierarchy lifter include the generator and MSST decoders it needs; a sparse lifter needs neither.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from hipart.checkpoint import bundled_checkpoint, load_checkpoint
from hipart.data.dataset import InMemorySplit
from hipart.data.flip import flip_batch
from hipart.metrics import mpjpe, p_mpjpe
from hipart.models.complexity import count_flops, stage_costs
from hipart.models.config import LIFTER_POINTS, LifterConfig
from hipart.models.lifter import build_lifter
from hipart.training.stages import generate_dataset, lifter_input

CANDIDATES = {
    # name: (lifter input, LifterConfig fields, batch size)
    "mlp-hier-1024x3": ("hierarchy", dict(kind="mlp", dim=32, width=1024, blocks=3), 256),
    "mlp-hier-512x2": ("hierarchy", dict(kind="mlp", dim=32, width=512, blocks=2), 256),
    "mlp-sparse-1024x3": ("sparse", dict(kind="mlp", dim=32, width=1024, blocks=3), 256),
    "mlp-sparse-512x2": ("sparse", dict(kind="mlp", dim=32, width=512, blocks=2), 256),
    "mlp-dense-1024x3": ("dense", dict(kind="mlp", dim=32, width=1024, blocks=3), 256),
    "transformer-hier-64x4": ("hierarchy", dict(dim=64, blocks=4, heads=4), 64),
    "transformer-hier-paper": ("hierarchy", dict(), 64),
    "transformer-sparse-paper": ("sparse", dict(), 64),
}


def cached_split(data: Path, split: str, subsample: int, model, cache: Path, tag: str) -> InMemorySplit:
    """The split on stored detections with the model's generated dense/fine attached (generated once)."""
    ds = InMemorySplit(data, split, "det", subsample)
    f = cache / f"gen_{tag}_{split}_s{subsample}.npz"
    if not f.exists():
        dense, fine = generate_dataset(model, ds)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(f, dense=dense, fine=fine)
    z = np.load(f)
    return ds.add(gen_dense=z["dense"], gen_fine=z["fine"])


@torch.no_grad()
def score(lifter, ds: InMemorySplit, n: int) -> tuple[float, float]:
    """(MPJPE, PA-MPJPE) in mm over the whole split."""
    lifter.eval()
    pred, gt = [], []
    for i in range(0, len(ds), 1024):
        b = ds.batch(range(i, min(i + 1024, len(ds))))
        pred.append(lifter(lifter_input(b, n)).numpy())
        gt.append(b["pose3d"].numpy())
    lifter.train()
    pred, gt = np.concatenate(pred), np.concatenate(gt)
    return float(mpjpe(pred, gt).mean() * 1000), float(p_mpjpe(pred, gt).mean() * 1000)


def train_one(name: str, train: InMemorySplit, val: InMemorySplit, minutes: float, seed: int, flip: float):
    """Train one candidate for `minutes` of training time (the clock stops while it is scored on val)."""
    inp, fields, bs = CANDIDATES[name]
    n = LIFTER_POINTS[inp]
    torch.manual_seed(seed)
    lifter = build_lifter(LifterConfig(num_points=n, **fields))
    opt = torch.optim.AdamW(lifter.parameters(), lr=1e-3, weight_decay=1e-4)
    budget, warm = minutes * 60, 100
    rng = np.random.default_rng(seed)
    probe = val.subset(np.linspace(0, len(val) - 1, min(len(val), 1024)).astype(int))  # fixed val probe
    step, best, best_state, log, el, next_eval = 0, math.inf, None, [], 0.0, 0.0
    while el < budget:
        t0 = time.perf_counter()
        # warm-up, then cosine over the training-time budget: every candidate ends its budget at lr ~ 0
        lr = 1e-3 * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, el / budget)))
        for g in opt.param_groups:
            g["lr"] = lr
        b = train.batch(rng.integers(0, len(train), bs))
        b = flip_batch(b, torch.rand(bs) < flip)
        loss = (lifter(lifter_input(b, n)) - b["pose3d"]).norm(dim=-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lifter.parameters(), 1.0)
        opt.step()
        step += 1
        el += time.perf_counter() - t0
        if el >= next_eval or el >= budget:
            v = score(lifter, probe, n)[0]
            log.append({"sec": round(el), "step": step, "train_mm": round(loss.item() * 1000, 1),
                        "val_probe_mm": round(v, 1)})
            print(f"  {name}: {el:5.0f}s step {step:6d} train {loss.item() * 1000:6.1f} val {v:6.1f} mm", flush=True)
            if v < best:
                best, best_state = v, {k: t.clone() for k, t in lifter.state_dict().items()}
            next_eval = el + budget / 12
    lifter.load_state_dict(best_state)
    val_mm, val_pa = score(lifter, val, n)
    return lifter.eval(), {"steps": step, "samples": step * bs, "batch": bs, "val_mpjpe_mm": val_mm,
                           "val_pa_mpjpe_mm": val_pa, "curve": log}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, help="HiPART whose generator feeds the lifters (default: bundled)")
    p.add_argument("--candidates", default=",".join(CANDIDATES))
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--subsample", type=int, default=4, help="every K-th training sample (default 4)")
    p.add_argument("--eval-subsample", type=int, default=4)
    p.add_argument("--flip", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", type=Path, default=Path("runs/cache"))
    p.add_argument("--save-dir", type=Path, help="write each candidate's lifter.pt here")
    p.add_argument("--cache-only", action="store_true", help="build the generated-pose caches and stop")
    p.add_argument("--out", type=Path)
    p.add_argument("--plot", type=Path)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    ckpt = a.checkpoint or bundled_checkpoint()
    model, _ = load_checkpoint(ckpt)
    tag = hashlib.sha256(Path(ckpt).read_bytes()).hexdigest()[:12]
    train = cached_split(a.data, "train", a.subsample, model, a.cache, tag)
    val = cached_split(a.data, "val", a.eval_subsample, model, a.cache, tag)
    test = cached_split(a.data, "test", a.eval_subsample, model, a.cache, tag)
    if a.cache_only:
        return
    gen_flops = sum(c.flops for c in stage_costs(model) if c.in_inference and "Lifter" not in c.stage)
    out = json.loads(a.out.read_text()) if a.out and a.out.exists() else {"rows": {}}
    out.update(checkpoint=str(ckpt), minutes=a.minutes, threads=a.threads, train_samples=len(train),
               command="python benchmarks/lifter_budget.py " + " ".join(
                   f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if v is not None))
    for name in a.candidates.split(","):
        inp = CANDIDATES[name][0]
        lifter, log = train_one(name, train, val, a.minutes, 0, a.flip)
        n = LIFTER_POINTS[inp]
        t_mm, t_pa = score(lifter, test, n)
        lf = count_flops(lifter, torch.zeros(1, n, 2))
        total = lf + (0 if inp == "sparse" else gen_flops)
        params = sum(q.numel() for q in lifter.parameters())
        out["rows"][name] = {"input": inp, "config": CANDIDATES[name][1], "params": params,
                             "lifter_gflops": lf / 1e9, "total_gflops": total / 1e9,
                             "test_mpjpe_mm": t_mm, "test_pa_mpjpe_mm": t_pa, **log}
        print(f"{name}: test {t_mm:.1f} / PA {t_pa:.1f} mm, {total / 1e9:.3f} GFLOPs per pose", flush=True)
        if a.save_dir:
            from hipart.checkpoint import save_checkpoint

            a.save_dir.mkdir(parents=True, exist_ok=True)
            save_checkpoint(a.save_dir / f"{name}.pt", lifter, None, {"budget": log})
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(out, indent=1))
    if a.plot:
        plot(out, a.plot)


def plot(res: dict, path: Path) -> None:
    """Test MPJPE against inference GFLOPs per pose, one point per candidate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in res["rows"].items():
        colour = {"hierarchy": "tab:green", "dense": "tab:olive", "sparse": "tab:blue"}[r["input"]]
        marker = "o" if r["config"].get("kind") == "mlp" else "s"
        ax.scatter(r["total_gflops"], r["test_mpjpe_mm"], c=colour, marker=marker, s=60)
        ax.annotate(name, (r["total_gflops"], r["test_mpjpe_mm"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("inference GFLOPs per pose (generator + lifter; sparse lifters skip the generator)")
    ax.set_ylabel("test MPJPE (mm), subjects 05/08/13")
    ax.set_title(f"Lifters at equal CPU time ({res['minutes']:g} min, 1 thread each)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
