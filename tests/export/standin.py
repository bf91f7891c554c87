"""A small stand-in for HiARM used by the export/calib tests until (and besides) the real model.

Same export-relevant structure as the real generator: SOS = proj(x_s), pre-LN causal transformer
blocks with a static KV cache [B, L, H, T, hd] written by one-hot (no data-dependent scatter),
a -inf causal mask, greedy argmax, codebook gather of the chosen code as the next input, then an
MLP decoder from the gathered codes to 2D points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class StandInConfig:
    dim: int = 32
    heads: int = 4
    layers: int = 2
    steps: int = 6
    codebook: int = 64
    points: int = 12


class Block(nn.Module):
    def __init__(self, cfg: StandInConfig):
        super().__init__()
        self.heads, self.hd = cfg.heads, cfg.dim // cfg.heads
        self.ln1, self.ln2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, 2 * cfg.dim), nn.GELU(), nn.Linear(2 * cfg.dim, cfg.dim))

    def forward(self, h, k_cache, v_cache, onehot, mask):
        """h [B,D]; caches [B,H,T,hd]; onehot [B,1,T,1] marks this step's slot; mask [B,1,1,T] (0 / -inf)."""
        b = h.shape[0]
        q, k, v = self.qkv(self.ln1(h)).view(b, 3, self.heads, 1, self.hd).unbind(1)
        k_cache = k_cache * (1 - onehot) + k * onehot
        v_cache = v_cache * (1 - onehot) + v * onehot
        att = q @ k_cache.transpose(-1, -2) / math.sqrt(self.hd) + mask
        out = (torch.softmax(att, dim=-1) @ v_cache).reshape(b, -1)
        h = h + self.proj(out)
        h = h + self.mlp(self.ln2(h))
        return h, k_cache, v_cache


class StandIn(nn.Module):
    def __init__(self, cfg: StandInConfig | None = None, seed: int = 0):
        super().__init__()
        cfg = cfg or StandInConfig()
        self.cfg = cfg
        g = torch.Generator().manual_seed(seed)
        self.sos = nn.Linear(17 * 2, cfg.dim)
        self.embed = nn.Linear(cfg.dim, cfg.dim)
        self.pos = nn.Parameter(torch.randn(cfg.steps, cfg.dim, generator=g) * 0.1)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, cfg.codebook)
        self.register_buffer("codebook", torch.randn(cfg.codebook, cfg.dim, generator=g))
        self.decoder = nn.Sequential(nn.Linear(cfg.steps * cfg.dim, 64), nn.GELU(), nn.Linear(64, cfg.points * 2))
        causal = torch.full((cfg.steps, cfg.steps), float("-inf")).triu(1)
        self.register_buffer("causal_mask", causal)
        self.register_buffer("slots", torch.eye(cfg.steps))  # row t: one-hot of cache slot t
        with torch.no_grad():  # deterministic non-default init so argmax margins are not degenerate
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.05))
            for blk in self.blocks:
                for ln in (blk.ln1, blk.ln2):
                    ln.weight.fill_(1.0)
            self.ln_f.weight.fill_(1.0)

    def empty_cache(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        shape = (b, c.layers, c.heads, c.steps, c.dim // c.heads)
        return torch.zeros(shape), torch.zeros(shape)

    def step(self, h, step, k_cache, v_cache):
        """One decode step: h [B,D] input embedding, step [B] int64, caches [B,L,H,T,hd] -> logits, caches."""
        t = self.cfg.steps
        slots = torch.arange(t, device=h.device)
        onehot = (slots[None, :] == step[:, None]).to(h.dtype)[:, None, :, None]
        mask = torch.where(slots[None, :] <= step[:, None], 0.0, float("-inf"))[:, None, None, :]
        h = h + (onehot[:, 0, :, 0] @ self.pos)
        ks, vs = [], []
        for i, blk in enumerate(self.blocks):
            h, k, v = blk(h, k_cache[:, i], v_cache[:, i], onehot, mask)
            ks.append(k)
            vs.append(v)
        return self.head(self.ln_f(h)), torch.stack(ks, 1), torch.stack(vs, 1)

    def forward(self, x_s):
        """x_s [B,17,2] -> (points [B,P,2], tokens [B,T]) with the T steps unrolled (static cache)."""
        b = x_s.shape[0]
        c = self.cfg
        h = self.sos(x_s.reshape(b, -1))
        k_cache = x_s.new_zeros(b, c.layers, c.heads, c.steps, c.dim // c.heads)
        v_cache = torch.zeros_like(k_cache)
        toks, codes = [], []
        for t in range(c.steps):
            onehot = self.slots[t].view(1, 1, c.steps, 1)
            mask = self.causal_mask[t].view(1, 1, 1, c.steps)
            h_t = h + self.pos[t]
            ks, vs = [], []
            for i, blk in enumerate(self.blocks):
                h_t, k, v = blk(h_t, k_cache[:, i], v_cache[:, i], onehot, mask)
                ks.append(k)
                vs.append(v)
            k_cache, v_cache = torch.stack(ks, 1), torch.stack(vs, 1)
            tok = self.head(self.ln_f(h_t)).argmax(-1)
            code = self.codebook[tok]
            toks.append(tok)
            codes.append(code)
            h = self.embed(code)
        points = self.decoder(torch.cat(codes, -1)).view(b, c.points, 2)
        return points, torch.stack(toks, 1)


class StandInStep(nn.Module):
    """decode_step wrapper: (h, step, past_k, past_v) -> (logits, token, present_k, present_v)."""

    def __init__(self, model: StandIn):
        super().__init__()
        self.model = model

    def forward(self, h, step, past_k, past_v):
        logits, k, v = self.model.step(h, step, past_k, past_v)
        return logits, logits.argmax(-1), k, v


def make_inputs(batch: int, seed: int) -> dict:
    """Random normalised-looking 2D poses x_s [B,17,2] (float32)."""
    g = torch.Generator().manual_seed(seed)
    return {"x_s": (torch.rand(batch, 17, 2, generator=g) * 2 - 1).numpy()}
