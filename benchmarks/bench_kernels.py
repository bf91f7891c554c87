"""GPU timings of each kernel against its PyTorch reference, and of the 17-position decode; JSON out.

    python benchmarks/bench_kernels.py                 # all, writes benchmarks/results/kernels-<gpu>-<utc>.json
    python benchmarks/bench_kernels.py --only decode --reps 200

Needs a CUDA GPU (refuses to run otherwise: interpreter timings would mean nothing). Each case times the
Triton launcher, the plain-PyTorch reference, and (when libhipart_kernels is built) the AOT library, as
the median of --reps timed calls after warm-up (CUDA events around each call, so launch overhead counts:
batch-1 decode is launch-bound). Outputs are checked against the reference before timing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kernels import library  # noqa: E402
from kernels.codebook_nn import codebook_nn, reference_codebook_nn  # noqa: E402
from kernels.decode_attention import decode_attention, reference_decode_attention  # noqa: E402
from kernels.head_argmax import head_argmax, reference_head_argmax  # noqa: E402


def time_us(fn, reps: int, warmup: int = 10) -> float:
    """Median wall time of fn() on the GPU in microseconds (CUDA events around each call)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    return statistics.median(times)


def backends(triton_fn, ref_fn, lib_fn):
    out = {"triton": triton_fn, "torch": ref_fn}
    if library.available():
        out["library"] = lib_fn
    return out


def bench_codebook(reps):
    rows = []
    for k in (2048, 3072):
        for n in (1, 64, 4096):
            z, c = torch.randn(n, 128, device="cuda"), torch.randn(k, 128, device="cuda")
            ref = reference_codebook_nn(z, c)[0]
            fns = backends(
                lambda z=z, c=c: codebook_nn(z, c, on_nan="mark"),
                lambda z=z, c=c: reference_codebook_nn(z, c, on_nan="mark"),
                lambda z=z, c=c: library.codebook_nn(z, c, on_nan="mark"),
            )
            agree = {name: float((f()[0] == ref).float().mean()) for name, f in fns.items()}
            rows.append(
                {
                    "kernel": "codebook_nn",
                    "N": n,
                    "K": k,
                    "D": 128,
                    "index_agreement": agree,
                    "us": {name: time_us(f, reps) for name, f in fns.items()},
                }
            )
    return rows


def bench_head(reps):
    rows = []
    for k in (2048, 3072):
        for b in (1, 3, 48):
            h, w = torch.randn(b, 128, device="cuda"), torch.randn(k, 128, device="cuda") / 11.3
            bias, table = torch.randn(k, device="cuda"), torch.randn(k, 128, device="cuda")
            ref = reference_head_argmax(h, w, bias, table)[0]
            fns = backends(
                lambda h=h, w=w, bias=bias, t=table: head_argmax(h, w, bias, t, on_nan="mark"),
                lambda h=h, w=w, bias=bias, t=table: t[(h @ w.t() + bias).argmax(1)],  # what PyTorch does
                lambda h=h, w=w, bias=bias, t=table: library.head_argmax(h, w, bias, t, on_nan="mark"),
            )
            agree = {name: float((f()[0] == ref).float().mean()) for name, f in fns.items() if name != "torch"}
            rows.append(
                {
                    "kernel": "head_argmax",
                    "B": b,
                    "K": k,
                    "D": 128,
                    "index_agreement": agree,
                    "us": {name: time_us(f, reps) for name, f in fns.items()},
                }
            )
    return rows


def bench_attention(reps):
    rows = []
    for b in (1, 8):
        qkv = torch.randn(b, 384, device="cuda")
        ck, cv = torch.randn(b, 8, 17, 16, device="cuda"), torch.randn(b, 8, 17, 16, device="cuda")
        w, bias, res = (
            torch.randn(128, 128, device="cuda") / 11.3,
            torch.randn(128, device="cuda"),
            torch.randn(b, 128, device="cuda"),
        )
        ref = reference_decode_attention(qkv, ck.clone(), cv.clone(), 16, w, bias, res)
        args = (qkv, ck, cv, 16, w, bias, res)
        fns = backends(
            lambda a=args: decode_attention(*a),
            lambda a=args: reference_decode_attention(*a),
            lambda a=args: library.decode_attention(*a),
        )
        err = {name: float((f() - ref).abs().max()) for name, f in fns.items()}
        rows.append(
            {
                "kernel": "decode_attention",
                "B": b,
                "heads": 8,
                "head_dim": 16,
                "pos": 16,
                "max_abs_err": err,
                "us": {name: time_us(f, reps) for name, f in fns.items()},
            }
        )
    return rows


def torch_graph_decoder(gen, x):
    """gen.generate (torch, KV-cached) captured once into a CUDA graph for inputs shaped like x; returns a runner."""
    static_x = x.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(side):
        for _ in range(2):  # warm-up: allocations and cuBLAS handles outside the capture
            gen.generate(static_x, use_cache=True)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        out = gen.generate(static_x, use_cache=True)

    def run(x):
        static_x.copy_(x)
        graph.replay()
        return out

    return run


def bench_decode(reps):
    from hipart.models.config import GeneratorConfig, TokenizerConfig
    from hipart.models.generator import HiARM
    from kernels.decode_driver import TritonDecoder

    rows = []
    torch.manual_seed(0)
    gen = HiARM(GeneratorConfig(), TokenizerConfig(dense_codebook_size=3072)).cuda().eval()
    gen.set_codebooks(torch.randn_like(gen.codebook_s), torch.randn_like(gen.codebook_d))
    for b in (1, 8):
        x = torch.randn(b, 17, 2, device="cuda")
        ref = torch.cat(gen.generate(x, use_cache=True), 1)
        eager, graph = TritonDecoder(gen, b, use_graph=False), TritonDecoder(gen, b, use_graph=True)
        torch_graph = torch_graph_decoder(gen, x)
        same = {
            "triton_eager": bool(torch.equal(torch.cat(eager(x), 1), ref)),
            "triton_graph": bool(torch.equal(torch.cat(graph(x), 1), ref)),
            "torch_cuda_graph": bool(torch.equal(torch.cat(torch_graph(x), 1), ref)),
        }
        rows.append(
            {
                "kernel": "hiarm_decode",
                "B": b,
                "config": "paper (dim 128, 8 heads, 12+4 blocks, 2048/3072)",
                "tokens_identical": same,
                "us": {
                    "torch_cached": time_us(lambda x=x: gen.generate(x, use_cache=True), reps),
                    "torch_cuda_graph": time_us(lambda x=x, d=torch_graph: d(x), reps),
                    "triton_eager": time_us(lambda x=x, d=eager: d(x), reps),
                    "triton_graph": time_us(lambda x=x, d=graph: d(x), reps),
                },
            }
        )
    return rows


SUITES = {"codebook": bench_codebook, "head": bench_head, "attention": bench_attention, "decode": bench_decode}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", choices=sorted(SUITES), help="suites to run (default: all)")
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_kernels: needs a CUDA GPU; none is present (interpreter timings would be meaningless).")
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    results = []
    for name in args.only or SUITES:
        for row in SUITES[name](args.reps):
            print(json.dumps(row))
            results.append(row)
    props = torch.cuda.get_device_properties(0)
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    report = {
        "device": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "command": " ".join([sys.executable, *sys.argv]),
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton_version,
        "library": str(library.load().path) if library.available() else None,
        "host": platform.node(),
        "reps": args.reps,
        "timing": "median of per-call CUDA-event times (us), after 10 warm-up calls",
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    gpu = props.name.replace(" ", "_").replace("/", "_")
    path = args.out / f"kernels-{gpu}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
