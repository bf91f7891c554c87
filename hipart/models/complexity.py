"""Parameter and FLOP counts per HiPART stage (FLOPs = 2 x multiply-accumulates, counted by torch)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hipart import skeleton
from hipart.models.hipart import HiPART


@dataclass
class StageCost:
    """Cost of one stage for one pose."""

    stage: str
    params: int
    flops: int
    in_inference: bool


def count_params(*modules: nn.Module | None) -> int:
    """Trainable parameters of the given modules (each counted once)."""
    seen: set[int] = set()
    n = 0
    for m in modules:
        if m is None:
            continue
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
    return n


def count_flops(fn, *args, **kwargs) -> int:
    """FLOPs torch counts for one call of fn (matmuls, convolutions, attention)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def stage_costs(model: HiPART, sample: torch.Tensor | None = None) -> list[StageCost]:
    """Per-stage parameters and FLOPs per pose (batch 1) for a HiPART model in eval mode."""
    model = model.eval()
    x_s = sample if sample is not None else torch.zeros(1, skeleton.NUM_JOINTS, 2)
    tok, gen = model.tokenizer, model.generator
    q_s, q_d = gen.generate(x_s)
    x_d, x_f = tok.decode(q_s, q_d)
    lifter_in = x_s if model.config.lifter_input == "sparse" else torch.cat([x_s, x_d, x_f], 1)
    return [
        StageCost("MSST encoders (tokenisation, training only)", count_params(tok.enc_fine, tok.enc_dense,
                  tok.dense_fuse), count_flops(tok.encode, x_f), False),
        StageCost("MSST alignment heads (training only)", count_params(tok.action_proj), 0, False),
        StageCost("HiARM decode, KV cache (16 steps)", count_params(gen), count_flops(gen.generate, x_s), True),
        StageCost("HiARM decode, no cache (reference)", count_params(gen),
                  count_flops(gen.generate, x_s, use_cache=False), False),
        StageCost("MSST decoders (D_s, D_d, D_f)", count_params(tok.up_sparse, tok.dec_dense, tok.dec_fine),
                  count_flops(tok.decode, q_s, q_d), True),
        StageCost(f"Lifter ({lifter_in.shape[1]} points)", count_params(model.lifter),
                  count_flops(model.lifter, lifter_in), True),
    ]


def codebook_entries(model: HiPART) -> int:
    """Number of codebook values (EMA buffers, not trainable parameters)."""
    tok = model.tokenizer
    n = tok.sparse_quantizer.codebook.numel()
    if tok.dense_quantizer is not tok.sparse_quantizer:
        n += tok.dense_quantizer.codebook.numel()
    return n
