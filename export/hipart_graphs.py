"""Export-friendly views of a HiPART model: the graphs behind densify/decode_step/lift/hipart.onnx.

They run the model's own decode step (`HiARM.decode_step` / `decode_tokens`, the one the eager decode uses); only
the cache write differs so that it traces to a static graph: the KV cache is a value (not a module buffer of a fixed
batch), written by concatenation at constant positions (unrolled graph) or by a one-hot blend at an input position
(step graph), batch-first at the graph boundary. Parity with `HiPART.forward` is tested.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hipart.models.generator import HiARM
from hipart.models.hipart import HiPART


class UnsupportedModelError(ValueError):
    """The model configuration has no static-graph export (e.g. classification-mode generator)."""


def _require_exportable(gen: HiARM) -> None:
    cfg = gen.config
    if cfg.mode != "autoregressive" or not cfg.sparse_to_dense:
        raise UnsupportedModelError(
            f"export supports the autoregressive sparse-to-dense generator; got mode={cfg.mode!r}, "
            f"sparse_to_dense={cfg.sparse_to_dense}"
        )


def empty_cache(gen: HiARM, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero K/V caches [B, layers, heads, 17, head_dim] (the decode_step graph's cache layout)."""
    c = gen.config
    shape = (batch, c.gcsab_blocks, c.heads, gen.max_len, c.dim // c.heads)
    return like.new_zeros(shape), like.new_zeros(shape)


class DensifyGraph(nn.Module):
    """x_s [B,17,2] -> (dense [B,48,2], fine [B,96,2], q_s [B,16], q_d [B,48]); all decode steps unrolled."""

    def __init__(self, model: HiPART):
        super().__init__()
        _require_exportable(model.generator)
        self.model = model

    def tokens(self, x_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """HiARM.decode_tokens with the caches as values, written at static positions (slice + concat)."""
        gen = self.model.generator
        t = gen.max_len
        k, v = empty_cache(gen, x_s.shape[0], x_s)

        def write_at(i: int):
            def write(cache: torch.Tensor, new: torch.Tensor) -> torch.Tensor:  # no scatter: slice + concat
                return torch.cat([cache[:, :, :i], new, cache[:, :, i + 1 : t]], 2)

            return write

        def mask_at(i: int) -> torch.Tensor:
            return (torch.arange(t) <= i).view(1, 1, 1, t)

        return gen.decode_tokens(x_s, k.unbind(1), v.unbind(1), write_at, mask_at)

    def forward(self, x_s: torch.Tensor):
        q_s, q_d = self.tokens(x_s)
        x_d, x_f = self.model.tokenizer.decode(q_s, q_d)
        return x_d, x_f, q_s, q_d


class DecodeStepGraph(nn.Module):
    """One decode step for looping runtimes: HiARM.decode_step with a one-hot cache write at an input position.

    (x_s [B,17,2], step [1] int64, prev_q_s [B], prev_q_d [B,r], past_k, past_v [B,L,H,17,hd])
    -> (q_s [B], q_d [B,r], logits_s [B,Ks], logits_d [B,r,Kd], present_k, present_v).
    Step 0 embeds SOS from x_s and ignores prev_*; step i > 0 embeds the pair decoded at step i-1.
    Token ids are in generation order; part `order[step]` is the part predicted at this step.
    """

    def __init__(self, model: HiPART):
        super().__init__()
        _require_exportable(model.generator)
        self.model = model

    def forward(self, x_s, step, prev_q_s, prev_q_d, past_k, past_v):
        gen = self.model.generator
        t = gen.max_len
        slots = torch.arange(t)
        prev_part = gen.order[(step - 1).clamp(min=0)]
        x = torch.where(step == 0, gen.sos_input(x_s)[:, 0], gen.pair_input(prev_q_s, prev_q_d, prev_part, step)[:, 0])
        onehot = (slots == step).to(x.dtype).view(1, 1, t, 1)

        def write(cache, new):
            return cache * (1 - onehot) + new * onehot

        mask = (slots <= step).view(1, 1, 1, t)
        q_s, q_d, ls, ld, k, v = gen.decode_step(x[:, None], gen.order[step], past_k.unbind(1), past_v.unbind(1),
                                                 write, mask)  # fmt: skip
        return q_s, q_d, ls, ld, torch.stack(k, 1), torch.stack(v, 1)


class DetokenizeGraph(nn.Module):
    """(q_s [B,16], q_d [B,48]) int64, canonical order -> (dense [B,48,2], fine [B,96,2]): the MSST decoders alone.

    What follows a looping decode (decode_step.onnx x 16) to reach the points DensifyGraph gives.
    """

    def __init__(self, model: HiPART):
        super().__init__()
        self.tokenizer = model.tokenizer

    def forward(self, q_s: torch.Tensor, q_d: torch.Tensor):
        return self.tokenizer.decode(q_s, q_d)


class LiftGraph(nn.Module):
    """[B, N, 2] hierarchical 2D points (x_s, dense, fine concatenated) -> pose3d [B, 17, 3]."""

    def __init__(self, model: HiPART):
        super().__init__()
        self.lifter = model.lifter

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.lifter(points)


class HiPARTGraph(nn.Module):
    """x_s -> (dense, fine, pose3d, q_s, q_d): densify and lift in one graph."""

    def __init__(self, model: HiPART):
        super().__init__()
        self.densify = DensifyGraph(model)
        self.model = model

    def forward(self, x_s: torch.Tensor):
        x_d, x_f, q_s, q_d = self.densify(x_s)
        return x_d, x_f, self.model.lift(x_s, x_d, x_f), q_s, q_d


def run_step_loop(step_fn, gen: HiARM, x_s):
    """Drive a decode-step callable for all parts; returns (q_s [B,16], q_d [B,48]) in canonical order.

    `step_fn(x_s, step, prev_q_s, prev_q_d, past_k, past_v)` returns at least (q_s, q_d, _, _, k, v); it can
    be the PyTorch DecodeStepGraph or an onnxruntime session adapter, with numpy or torch values alike.
    """
    b, p, r = x_s.shape[0], gen.num_parts, gen.r
    k, v = (c.numpy() for c in empty_cache(gen, b, torch.zeros(1)))
    q_s, q_d = np.zeros(b, np.int64), np.zeros((b, r), np.int64)
    qs, qd = [], []
    for i in range(p):
        q_s, q_d, _, _, k, v = step_fn(x_s, np.array([i], np.int64), q_s, q_d, k, v)[:6]
        qs.append(q_s)
        qd.append(q_d)
    inv = gen.inv_order.numpy()
    return np.stack(qs, 1)[:, inv], np.stack(qd, 1)[:, inv].reshape(b, p * r)
