"""H2OT Token Recovering Module: TRA (cross-attention from full-length queries) and TRI (linear interpolation).

TRA restores T frame tokens from the r kept ones before the regression head; TRI regresses the r kept
frames and interpolates the 3D poses over time (needs the kept frames in temporal order: TPS).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hipart.models.blocks import Attention
from hipart.models.token_pruning import gather_frames

RECOVERY_STRATEGIES = ("tra", "tri")


class TokenRecoveryAttention(nn.Module):
    """TRA: x_hat = q + MCA(q, kept, kept) with q = zero-initialised learnable tokens [T, C] + positions."""

    def __init__(self, frames: int, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.queries = nn.Parameter(torch.zeros(frames, dim))
        # one multi-head attention layer; its fused qkv weight is split into the query and key/value parts
        self.attn = Attention(dim, heads, dropout)

    def forward(self, kept: torch.Tensor, pos: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """kept [B', r, C] tokens, pos [T, C] temporal positions (or [B', T, C]: per-sequence query inputs, e.g.
        positions + the tokens before pruning) -> recovered [B', T, C] (or only `frames`)."""
        q_in = self.queries + pos
        if frames is not None:
            q_in = q_in.index_select(-2, frames)
        if q_in.dim() == 2:
            q_in = q_in.unsqueeze(0).expand(kept.shape[0], -1, -1)
        a = self.attn
        d = q_in.shape[-1]
        w, bias = a.qkv.weight, a.qkv.bias
        q = F.linear(q_in, w[:d], bias[:d])
        kv = F.linear(kept, w[d:], bias[d:])
        k, v = kv.chunk(2, dim=-1)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(t.shape[0], t.shape[1], a.heads, a.head_dim).transpose(1, 2)

        return q_in + a.attend(heads(q), heads(k), heads(v), None)


def interpolation_table(kept: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For sorted kept frame indices [r] and target frames [m]: (left slot, right slot, weight of right), each [m].

    Targets outside [kept[0], kept[-1]] take the nearest end (no extrapolation).
    """
    kept, targets = kept.long(), targets.long()
    if kept.numel() == 0 or bool((kept[1:] <= kept[:-1]).any()):
        raise ValueError("TRI needs strictly increasing kept frame indices (an ordered sampler: TPS)")
    r = kept.numel()
    right = torch.searchsorted(kept, targets, right=False).clamp(0, r - 1)
    left = (right - 1).clamp(min=0)
    exact = kept[right] == targets
    left = torch.where(exact | (targets < kept[0]), right, left)
    span = (kept[right] - kept[left]).clamp(min=1).float()
    w = ((targets - kept[left]).float() / span).clamp(0.0, 1.0)
    w = torch.where(left == right, torch.zeros_like(w), w)
    return left, right, w


def interpolate_frames(values: torch.Tensor, left: torch.Tensor, right: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """TRI: values [B, r, ...] at kept frames -> [B, m, ...] linearly interpolated with a precomputed table."""
    shape = (1, -1) + (1,) * (values.dim() - 2)
    a, b = values.index_select(1, left), values.index_select(1, right)
    return a + (b - a) * w.to(values.dtype).view(shape)


def interpolate_kept(values: torch.Tensor, kept: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """values [B, r, ...] at per-sample sorted kept frames kept [B, r] -> [B, m, ...] linearly interpolated at target
    frames [m] (nearest end outside the kept range). Comparisons and gathers only, so dynamic strategies export."""
    b, r = kept.shape
    t = targets.to(kept.device).long().view(1, 1, -1)
    n_le = (kept.unsqueeze(-1) <= t).sum(1)  # [B, m] kept frames at or before each target
    left, right = (n_le - 1).clamp(0, r - 1), n_le.clamp(0, r - 1)
    k_left, k_right = kept.gather(1, left), kept.gather(1, right)
    w = ((t[0] - k_left).to(values.dtype) / (k_right - k_left).clamp(min=1).to(values.dtype)).clamp(0.0, 1.0)
    a, z = gather_frames(values, left), gather_frames(values, right)
    return a + (z - a) * w.view(b, -1, *(1,) * (values.dim() - 2))
