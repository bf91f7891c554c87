"""Lifter: a vanilla spatial transformer from N 2D points (161 hierarchical or 17 sparse) to 17 3D joints."""

from __future__ import annotations

import torch
from torch import nn

from hipart.models.blocks import TransformerBlock, joint_projection
from hipart.models.config import LifterConfig


class Lifter(nn.Module):
    """Patch embedding + transformer encoder + regression head (paper Fig. 11)."""

    def __init__(self, cfg: LifterConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or LifterConfig()
        self.embed = nn.Linear(2, cfg.dim)
        self.pos_emb = nn.Parameter(torch.randn(cfg.num_points, cfg.dim) * 0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.attn_dropout)
            for _ in range(cfg.blocks)
        )
        self.norm = nn.LayerNorm(cfg.dim)
        self.joint_proj = nn.Linear(cfg.num_points, cfg.num_joints)  # N point embeddings -> 17 joints
        self.head = nn.Linear(cfg.dim, 3)

    def joint_features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, N, 2] normalised 2D points -> [B, 17, dim] joint features (what the head regresses from)."""
        h = self.drop(self.embed(x) + self.pos_emb)
        for blk in self.blocks:
            h = blk(h)
        return joint_projection(self.norm(h), self.joint_proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, N, 2] normalised 2D points -> [B, 17, 3] root-relative 3D joints (metres)."""
        return self.head(self.joint_features(x))
