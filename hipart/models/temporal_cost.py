"""Parameters, FLOPs and CPU latency of temporal-lifter configurations (`hipart-temporal bench`).

Two ways to run a window model, both measured at batch 1:
- seq2seq: one call per window of T frames, so frames/s = T / latency (offline video);
- streaming seq2frame: one call per new frame, reusing the cached per-frame tokens of the T - 1 older frames
  (`TemporalLifter.frame_tokens`), so frames/s = 1 / latency (live camera, causal or centred).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from hipart.models.complexity import count_flops, count_params
from hipart.models.temporal import TemporalConfig, TemporalLifter


def parse_spec(spec: str) -> TemporalConfig:
    """'small' | 'edge' | 'edge,frames=81,prune=none,reduction=none,schedule_r=41/27,...' -> TemporalConfig."""
    name, *pairs = [p.strip() for p in spec.split(",") if p.strip()]
    if name not in ("small", "edge"):
        raise ValueError(f"config spec must start with small or edge, got {name!r}")
    kw: dict[str, Any] = {}
    for p in pairs:
        if "=" not in p:
            raise ValueError(f"bad config item {p!r} in {spec!r}; expected key=value")
        k, v = p.split("=", 1)
        if k in ("schedule_r", "schedule_b"):
            kw[k] = tuple(int(x) for x in v.split("/") if x)
        elif k in ("frames", "num_points", "dim", "blocks", "heads", "reduce_after", "tpc_k"):
            kw[k] = int(v)
        elif k in ("mlp_ratio", "dropout"):
            kw[k] = float(v)
        else:
            kw[k] = v
    frames = kw.pop("frames", 27 if name == "small" else 243)
    points = kw.pop("num_points", 161)
    return getattr(TemporalConfig, name)(frames, points, **kw)


def describe(cfg: TemporalConfig) -> str:
    """Short label of a configuration, e.g. 'edge d128x8 T243 N161 linear tps+tri r122/81 b0/3'."""
    prune = "no-prune" if cfg.prune == "none" else (
        f"{cfg.prune}+{cfg.recover} r{'/'.join(map(str, cfg.schedule_r))} b{'/'.join(map(str, cfg.schedule_b))}")
    pipe = "" if cfg.pipeline == "seq2seq" else f" seq2frame-{cfg.output_frame}"
    return f"d{cfg.dim}x{cfg.blocks} T{cfg.frames} N{cfg.num_points} {cfg.reduction} {prune}{pipe}"


@torch.no_grad()
def window_cost(model: TemporalLifter) -> dict[str, Any]:
    """Parameters and FLOPs of one seq2seq window at batch 1; with reduction='lifter', also the frozen
    single-frame lifter's share (it runs once per frame, as single-frame HiPART does)."""
    cfg = model.config
    x = torch.randn(1, cfg.frames, cfg.num_points, 2) * 0.3
    total = count_flops(model.forward_sequence, x)
    lifted = x.index_select(1, model.tps_stage0) if model.pre_prune else x  # frames that run the per-frame stage
    lifter = count_flops(model.lifter_features, lifted) if model.lifter is not None else 0
    # one output frame: seq2seq shares a window among its T frames; seq2frame pays a window per frame (no cache)
    per_frame = total / cfg.frames if cfg.pipeline == "seq2seq" else count_flops(model.forward_frame, x)
    return {
        "params": count_params(model),
        "params_trained": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "gflops_per_output_frame": per_frame / 1e9,
        "gflops_window": total / 1e9,
        "gflops_window_lifter": lifter / 1e9,
        "gflops_window_temporal": (total - lifter) / 1e9,
    }


@torch.no_grad()
def _latency_ms(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1000 * times[len(times) // 2]


@torch.no_grad()
def measure(cfg: TemporalConfig, runs: int = 5, seed: int = 0) -> dict[str, Any]:
    """Params, FLOPs per window and per output frame, median CPU latency and frames/s of one configuration."""
    torch.manual_seed(seed)
    model = TemporalLifter(cfg).eval()
    x = torch.randn(1, cfg.frames, cfg.num_points, 2) * 0.3
    tokens = model.frame_tokens(x)
    cost = window_cost(model)
    flops_stream = count_flops(model.frame_tokens, x[:, -1:]) + count_flops(
        model.forward_frame, x, cfg.frames - 1, tokens)
    window_ms = _latency_ms(lambda: model.forward_sequence(x), runs)
    stream_ms = _latency_ms(lambda: (model.frame_tokens(x[:, -1:]), model.forward_frame(x, cfg.frames - 1, tokens)),
                            runs)  # fmt: skip
    return {
        "config": describe(cfg),
        **cost,
        "mflops_per_frame_seq2seq": cost["gflops_window"] / cfg.frames * 1e3,
        "gflops_per_frame_stream": flops_stream / 1e9,
        "window_ms": window_ms,
        "fps_seq2seq": 1000 * cfg.frames / window_ms,
        "stream_ms": stream_ms,
        "fps_stream": 1000 / stream_ms,
        "threads": torch.get_num_threads(),
        "model": cfg.to_dict(),
    }
