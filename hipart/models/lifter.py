"""Lifters from N 2D points (161 hierarchical, 65 or 17 sparse) to 17 3D joints: the paper's spatial transformer
and the edge model's residual MLP over pose-normalised points."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hipart import skeleton
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


def pose_normalise(x: torch.Tensor, num_joints: int = skeleton.NUM_JOINTS) -> torch.Tensor:
    """[B, N, 2] -> [B, 2N + 3]: points relative to the pelvis over the pose scale (mean distance of the first
    `num_joints` points to the pelvis), then the pelvis position and the scale (what the division removed)."""
    root = x[:, :1]
    scale = (x[:, :num_joints] - root).norm(dim=-1).mean(1, keepdim=True).clamp_min(1e-3)  # [B, 1]
    rel = (x - root) / scale[:, :, None]
    return torch.cat([rel.flatten(1), root.flatten(1), scale], 1)


class ResidualBlock(nn.Module):
    """Pre-norm residual MLP block: x + W2 drop(gelu(W1 norm(x)))."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.fc2(self.drop(F.gelu(self.fc1(self.norm(x))))))


class MLPLifter(nn.Module):
    """Residual MLP over the pose-normalised points (Martinez et al. 2017 in shape): accuracy per FLOP on CPUs.

    Same interface as `Lifter`: `joint_features` gives [B, 17, dim] (the temporal stage's tokens) and `head`
    regresses each joint's 3D position from its feature.
    """

    def __init__(self, cfg: LifterConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or LifterConfig(kind="mlp")
        self.embed = nn.Linear(2 * cfg.num_points + 3, cfg.width)
        self.blocks = nn.ModuleList(ResidualBlock(cfg.width, cfg.dropout) for _ in range(cfg.blocks))
        self.norm = nn.LayerNorm(cfg.width)
        self.to_joints = nn.Linear(cfg.width, cfg.num_joints * cfg.dim)
        self.head = nn.Linear(cfg.dim, 3)

    def joint_features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, N, 2] normalised 2D points -> [B, 17, dim] joint features."""
        h = self.embed(pose_normalise(x))
        for blk in self.blocks:
            h = blk(h)
        return F.gelu(self.to_joints(self.norm(h))).view(x.shape[0], self.config.num_joints, self.config.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, N, 2] normalised 2D points -> [B, 17, 3] root-relative 3D joints (metres)."""
        return self.head(self.joint_features(x))


def build_lifter(cfg: LifterConfig) -> Lifter | MLPLifter:
    """The lifter `cfg.kind` names."""
    return MLPLifter(cfg) if cfg.kind == "mlp" else Lifter(cfg)


class FrozenLifterStage(nn.Module):
    """Base of the video lifters built on a frozen single-frame lifter (`self.lifter`, None without one)."""

    lifter: Lifter | MLPLifter | None

    def train(self, mode: bool = True) -> FrozenLifterStage:
        """nn.Module.train; the frozen single-frame lifter stays in eval mode (no dropout)."""
        super().train(mode)
        if self.lifter is not None:
            self.lifter.eval()
        return self

    def load_lifter(self, lifter: Lifter | MLPLifter) -> FrozenLifterStage:
        """Copy a trained single-frame lifter's weights into the frozen per-frame stage."""
        if self.lifter is None:
            raise ValueError(f"this {type(self).__name__} has no single-frame lifter stage")
        self.lifter.load_state_dict(lifter.state_dict())
        return self

    @property
    def lifter_channels(self) -> int:
        """Channels of `lifter_features`: the lifter's joint features + its 3D pose (0 without a lifter stage)."""
        return 0 if self.lifter is None else self.lifter.config.dim + 3

    def lifter_features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen single-frame lifter on every frame: x [B, t, N, 2] -> [B, t, 17, D + 3] (its 17 joint features
        and, in the last 3 channels, its own 3D pose). Training caches these per frame."""
        b, t, n, _ = x.shape
        f = self.lifter.joint_features(x.reshape(b * t, n, 2))
        return torch.cat([f, self.lifter.head(f)], -1).view(b, t, self.config.num_joints, self.lifter_channels)
