"""Where training time goes: samples/s of each training stage (and of the generated-pose cache) on this CPU.

  python benchmarks/train_throughput.py --data data/cmu_lab --threads 1 \
      --out benchmarks/results/train_throughput_1t.json

Each row times `--steps` optimiser steps (after one warm-up step) on real batches from the in-memory split,
forward + backward + AdamW, at the batch size the CPU recipe uses; `generate` is HiPART inference (cached
decode) as run once to build the lifter's generated-pose cache.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from hipart.data.dataset import InMemorySplit
from hipart.models.config import HiPARTConfig
from hipart.models.hipart import HiPART
from hipart.models.lifter import build_lifter


def _time(fn, steps: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def _points(b: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([b["x_s"], b["x_d"], b["x_f"]], 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    data = InMemorySplit(a.data, "train", "noisy", subsample=50)
    rows = []

    def bench(name: str, model: torch.nn.Module, bs: int, loss_fn, train: bool = True) -> None:
        b = data.batch(range(bs))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4) if train else None

        def step():
            if train:
                model.train()
                loss = loss_fn(b)
                opt.zero_grad()
                loss.backward()
                opt.step()
            else:
                with torch.no_grad():
                    loss_fn(b)

        sec = _time(step, a.steps)
        rows.append({"stage": name, "batch": bs, "sec_per_step": round(sec, 4), "samples_per_s": round(bs / sec, 1),
                     "params": sum(p.numel() for p in model.parameters())})
        print(f"{name:34s} batch {bs:4d}: {sec * 1e3:8.1f} ms/step  {bs / sec:8.1f} samples/s", flush=True)

    paper = HiPART(HiPARTConfig.paper())
    tok, gen = paper.tokenizer, paper.generator
    q = tok.encode(data.batch(range(128))["x_f"])
    bench("tokenizer (paper)", tok, 128, lambda b: tok(b["x_f"], b["x_d"], b["action"])["loss"])

    def gen_loss(g):
        def f(b):
            n = len(b["x_s"])
            ls, ld = g(b["x_s"], q[0][:n], q[1][:n])
            return g.loss(ls, ld, q[0][:n], q[1][:n])["loss"]
        return f

    bench("generator (paper, 12 GCSAB)", gen, 64, gen_loss(gen))
    small = HiPART(HiPARTConfig.from_dict({**HiPARTConfig.paper().to_dict(),
                                           "generator": {"gcsab_blocks": 4, "head_blocks": 2}}))
    bench("generator (4 GCSAB, 2 head)", small.generator, 64, gen_loss(small.generator))
    for name, lcfg in (("lifter transformer (paper, 12 blk)", HiPARTConfig.paper().lifter),
                       ("lifter mlp (edge)", HiPARTConfig.edge().lifter)):
        lf = build_lifter(lcfg)
        for bs in ((64,) if "transformer" in name else (256, 1024)):
            bench(name, lf, bs, lambda b, lf=lf: (lf(_points(b)) - b["pose3d"]).norm(dim=-1).mean())
    paper.eval()
    bench("generate cache (paper, inference)", paper, 256, lambda b: paper.densify(b["x_s"]), train=False)
    small.eval()
    bench("generate cache (4 GCSAB, inference)", small, 256, lambda b: small.densify(b["x_s"]), train=False)
    res = {"threads": a.threads, "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
           "command": f"python benchmarks/train_throughput.py --data {a.data} --threads {a.threads}", "rows": rows}
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
