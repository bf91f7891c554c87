"""PyTorch eager timings of HiPART on this machine: full forward, cached vs uncached decode, params, FLOPs.

Run: python benchmarks/bench_model.py [--batches 1 64] [--iters 20] [--json benchmarks/results/model_cpu.json]
Timings are medians over --iters runs after --warmup runs, random (untrained) paper-size weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from hipart.checkpoint import model_hash
from hipart.cli.model import load_sample_pose
from hipart.models.complexity import stage_costs
from hipart.models.config import HiPARTConfig
from hipart.models.hipart import HiPART


def median_ms(fn, iters: int, warmup: int) -> tuple[float, float]:
    """(median, p90) wall time of fn() in milliseconds."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return statistics.median(ts), ts[min(len(ts) - 1, int(0.9 * len(ts)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/model_cpu.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = HiPART(HiPARTConfig.paper()).eval()
    with torch.no_grad():  # spread codes so decoding is not degenerate
        model.tokenizer.sparse_quantizer.codebook.normal_()
        model.tokenizer.dense_quantizer.codebook.normal_()
    model.sync_codebooks()
    gen = model.generator
    rows = []
    for b in args.batches:
        x = load_sample_pose().repeat(b, 1, 1) + 0.02 * torch.randn(b, 17, 2)
        with torch.no_grad():
            full = median_ms(lambda x=x: model(x), args.iters, args.warmup)
            cached = median_ms(lambda x=x: gen.generate(x, use_cache=True), args.iters, args.warmup)
            uncached = median_ms(lambda x=x: gen.generate(x, use_cache=False), args.iters, args.warmup)
        row = {
            "batch": b,
            "full_forward_ms": full[0],
            "full_forward_p90_ms": full[1],
            "poses_per_s": b / full[0] * 1e3,
            "decode_cached_ms": cached[0],
            "decode_uncached_ms": uncached[0],
            "cache_speedup": uncached[0] / cached[0],
        }
        rows.append(row)
        print(
            f"batch {b:4d}: forward {full[0]:8.2f} ms ({row['poses_per_s']:8.1f} poses/s) | decode cached "
            f"{cached[0]:8.2f} ms, uncached {uncached[0]:8.2f} ms -> {row['cache_speedup']:.2f}x"
        )
    costs = [c.__dict__ for c in stage_costs(model)]
    result = {
        "command": "python benchmarks/bench_model.py " + " ".join(
            f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()
            if k != "json"
        ),
        "device": f"CPU: {platform.processor() or platform.machine()}, {args.threads} threads",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model": "HiPART paper config, random weights",
        "model_hash": model_hash(model),
        "timings": rows,
        "stages": costs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
