"""Building blocks shared by the HiPART networks: MLP-Mixer block and pre-norm transformer block."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class Mlp(nn.Module):
    """Two linear layers with GELU between (transformer/mixer feed-forward)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, out_dim: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim or dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class MixerBlock(nn.Module):
    """MLP-Mixer block over [B, J, C]: token mixing across joints, then channel mixing."""

    def __init__(self, num_tokens: int, dim: int, token_hidden: int, channel_hidden: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = Mlp(num_tokens, token_hidden, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = Mlp(dim, channel_hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


CacheWrite = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (cache [B,H,T,hd], new [B,H,1,hd]) -> cache


def write_in_place(pos: int) -> CacheWrite:
    """A cache write that stores the new K/V at slot `pos` of a static buffer, in place (eager decode)."""

    def write(cache: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        cache[:, :, pos : pos + 1] = new
        return cache

    return write


class Attention(nn.Module):
    """Multi-head self-attention with an optional boolean mask and a static KV-cache step."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, attn_dropout: float | None = None):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(dropout if attn_dropout is None else attn_dropout)
        self.proj_drop = nn.Dropout(dropout)

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, T, D] -> q, k, v, each [B, H, T, head_dim] (public: export builds its own cached step on it)."""
        b, t, _ = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]  # each [B, H, T, hd]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Softmax attention of q over k/v (mask True = may attend), heads merged, output projection."""
        if self.training and self.attn_drop.p == 0.0:
            # Training without attention dropout: the fused kernel (same math; ~3x faster backward on CPU).
            # Inference keeps the explicit graph below, which export and the kernels mirror op for op.
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            scores = (q * self.scale) @ k.transpose(-2, -1)
            if mask is not None:  # True = may attend
                scores = scores.masked_fill(~mask, float("-inf"))
            attn = self.attn_drop(scores.softmax(dim=-1))
            out = attn @ v  # [B, H, Tq, hd]
        b, _, t, _ = out.shape
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.project_qkv(x)
        return self.attend(q, k, v, mask)

    def forward_step(
        self, x: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor, write: CacheWrite, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One new token: `write(cache, new)` stores its K/V (in place, or as a new value for export graphs),
        then it attends over the slots `mask` allows -> (out [B, 1, D], cache_k, cache_v)."""
        q, k, v = self.project_qkv(x)  # [B, H, 1, hd]
        cache_k, cache_v = write(cache_k, k), write(cache_v, v)
        return self.attend(q, cache_k, cache_v, mask), cache_k, cache_v

    def forward_cached(
        self, x: torch.Tensor, pos: int, cache_k: torch.Tensor, cache_v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """One new token at position `pos` of static cache buffers (written in place), attending over slots <= pos."""
        return self.forward_step(x, cache_k, cache_v, write_in_place(pos), mask)[0]


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 attn_dropout: float | None = None):  # fmt: skip
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout, attn_dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))

    def forward_step(
        self, x: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor, write: CacheWrite, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One new token through the block with a KV cache (see `Attention.forward_step`)."""
        a, cache_k, cache_v = self.attn.forward_step(self.norm1(x), cache_k, cache_v, write, mask)
        x = x + a
        return x + self.mlp(self.norm2(x)), cache_k, cache_v

    def forward_cached(
        self, x: torch.Tensor, pos: int, cache_k: torch.Tensor, cache_v: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Cached single-token step on static buffers (see `Attention.forward_cached`)."""
        return self.forward_step(x, cache_k, cache_v, write_in_place(pos), mask)[0]


def joint_projection(x: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
    """Apply a Linear along the joint axis of [B, J, C] (J_in -> J_out)."""
    return proj(x.transpose(1, 2)).transpose(1, 2)
