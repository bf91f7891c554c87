"""Temporal lifter: MixSTE-style spatio-temporal transformer over T hierarchical 2D frames, with H2OT pruning.

Input [B, T, N, 2] (N = 161 hierarchical points or 17 sparse joints, screen-normalised) -> root-relative
3D joints in metres: [B, T, 17, 3] (seq2seq) or [B, 17, 3] for one frame (seq2frame: centre or last).

Per block: a spatial transformer over the points of each frame, then a temporal transformer over the frames
of each point (MixSTE). Optional spatial reduction 161 -> 17 tokens after an early spatial block keeps the
161-point input affordable. Token pruning (hipart.models.token_pruning) keeps r_m frame tokens after block b_m;
token recovery (hipart.models.token_recovery) restores all T frames at the end (TRA) or interpolates the
regressed poses (TRI, with the ordered sampler TPS only).

reduction="lifter" builds the video lifter on the trained single-frame HiPART lifter: its (frozen) blocks reduce
each frame to 17 joint features, and the temporal blocks regress a correction added to its own per-frame 3D pose
(the regression head starts at zero, so an untrained model *is* the single-frame lifter).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from hipart import skeleton
from hipart.models.blocks import TransformerBlock, joint_projection
from hipart.models.config import LifterConfig
from hipart.models.lifter import FrozenLifterStage, build_lifter
from hipart.models.token_pruning import (
    PRUNING_STRATEGIES,
    attention_received,
    density_peaks_scores,
    gather_frames,
    motion_scores,
    top_r_sorted,
    uniform_indices,
)
from hipart.models.token_recovery import (
    RECOVERY_STRATEGIES,
    TokenRecoveryAttention,
    interpolate_frames,
    interpolate_kept,
    interpolation_table,
)
from hipart.validation import check_sequence

REDUCTIONS = ("none", "linear", "sparse", "lifter")
PIPELINES = ("seq2seq", "seq2frame")
OUTPUT_FRAMES = ("centre", "last")


def default_schedule(frames: int, blocks: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """H2OT's two-stage schedule scaled to T: r = [ceil(T/2), ceil(T/3)] after blocks b = [0, blocks/2 - 1]."""
    r = tuple(dict.fromkeys(v for v in ((frames + 1) // 2, (frames + 2) // 3) if 1 <= v < frames))
    b = (0, max(1, blocks // 2 - 1)) if blocks >= 3 else (0,)
    n = min(len(r), len(b))
    return r[:n], b[:n]


@dataclass
class TemporalConfig:
    """Every hyper-parameter of the temporal lifter (paper-like MixSTE defaults scaled for the edge)."""

    frames: int = 243  # T, the window length (27, 81, 243 ...)
    num_points: int = skeleton.NUM_HIERARCHY_POINTS  # 161, or 17 for the sparse-only baseline
    num_joints: int = skeleton.NUM_JOINTS
    dim: int = 128
    blocks: int = 8  # spatial + temporal block pairs
    heads: int = 8
    mlp_ratio: float = 2.0  # MixSTE's FFN expansion
    dropout: float = 0.0
    # none | linear (learned 161 -> 17 along the point axis) | sparse (keep the 17 joints) | lifter (the frozen
    # single-frame HiPART lifter's 17 joint features per frame; the output is its pose + a temporal correction)
    reduction: str = "linear"
    reduce_after: int = 0  # spatial block after which the point tokens are reduced to the joints
    prune: str = "tps"  # none | tpc | tpa | tpmo | tps
    recover: str = "tri"  # tra | tri (TRI needs TPS)
    schedule_r: tuple[int, ...] = (122, 81)  # frame tokens kept at each pruning stage
    schedule_b: tuple[int, ...] = (0, 3)  # pruning stage m runs on the output of block b_m
    pipeline: str = "seq2seq"  # seq2seq: all T frames out; seq2frame: one frame out
    output_frame: str = "centre"  # seq2frame output: centre (T // 2) or last (T - 1, causal)
    tpc_k: int = 2  # neighbours of the DPC-kNN density (TPC)
    lifter: dict[str, Any] | None = None  # LifterConfig of the single-frame lifter (reduction="lifter" only)

    def __post_init__(self) -> None:
        self.schedule_r = tuple(int(v) for v in self.schedule_r)  # JSON gives lists
        self.schedule_b = tuple(int(v) for v in self.schedule_b)
        choices = {"reduction": REDUCTIONS, "prune": PRUNING_STRATEGIES, "recover": RECOVERY_STRATEGIES,
                   "pipeline": PIPELINES, "output_frame": OUTPUT_FRAMES}  # fmt: skip
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.frames < 1 or self.dim < 1 or self.blocks < 1:
            raise ValueError("frames, dim and blocks must be positive")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.num_points not in (skeleton.NUM_HIERARCHY_POINTS, skeleton.NUM_JOINTS):
            raise ValueError(f"num_points must be {skeleton.NUM_HIERARCHY_POINTS} or {skeleton.NUM_JOINTS}")
        if self.reduction == "lifter":
            self.lifter = asdict(LifterConfig(num_points=self.num_points, num_joints=self.num_joints)) | dict(
                self.lifter or {})  # fmt: skip
            if (self.lifter["num_points"], self.lifter["num_joints"]) != (self.num_points, self.num_joints):
                raise ValueError(f"the single-frame lifter takes {self.lifter['num_points']} points to "
                                 f"{self.lifter['num_joints']} joints, the temporal model {self.num_points} to "
                                 f"{self.num_joints}")  # fmt: skip
            if self.reduce_after != 0:
                raise ValueError("reduction='lifter' reduces each frame before the first block: reduce_after must be 0")
        elif self.lifter is not None:
            raise ValueError("a lifter config belongs only to reduction='lifter'")
        elif self.num_points == self.num_joints and self.reduction != "none":
            raise ValueError("spatial reduction needs more points than joints; use reduction='none' for 17 points")
        if not 0 <= self.reduce_after < self.blocks:
            raise ValueError(f"reduce_after must be a block index in [0, {self.blocks}), got {self.reduce_after}")
        if self.prune == "none":
            return
        r, b = self.schedule_r, self.schedule_b
        if not r or len(r) != len(b):
            raise ValueError(f"pruning needs schedule_r and schedule_b of equal, non-zero length, got {r} and {b}")
        if any(x <= y for x, y in zip((self.frames,) + r, r, strict=False)) or r[-1] < 1:
            raise ValueError(f"schedule_r must decrease strictly and stay below T = {self.frames}, got {r}")
        if any(x >= y for x, y in zip(b, b[1:], strict=False)) or not -1 <= b[0] or b[-1] >= self.blocks:
            raise ValueError(f"schedule_b must increase strictly within [-1, {self.blocks}), got {b}")
        if b[0] == -1 and (self.prune != "tps" or self.reduction != "lifter"):
            raise ValueError("schedule_b = -1 (prune the input frames, before the per-frame stage) needs prune='tps' "
                             "and reduction='lifter'")  # fmt: skip
        if self.recover == "tri" and self.prune != "tps":
            raise ValueError(
                f"TRI interpolates over time and needs ordered, static kept frames: use prune='tps' "
                f"(got prune={self.prune!r}) or recover='tra'"
            )

    @property
    def output_index(self) -> int:
        """The frame a seq2frame model outputs: T // 2 (centre) or T - 1 (last)."""
        return self.frames // 2 if self.output_frame == "centre" else self.frames - 1

    @classmethod
    def edge(cls, frames: int = 243, num_points: int = skeleton.NUM_HIERARCHY_POINTS, **kw: Any) -> TemporalConfig:
        """Paper-like edge model: dim 128, 8 blocks, 161 -> 17 reduction after block 0, TPS + TRI."""
        return cls._preset(frames, num_points, dict(dim=128, blocks=8, heads=8), kw)

    @classmethod
    def small(cls, frames: int = 27, num_points: int = skeleton.NUM_HIERARCHY_POINTS, **kw: Any) -> TemporalConfig:
        """CPU-trainable preset: dim 32, 4 blocks, same structure."""
        return cls._preset(frames, num_points, dict(dim=32, blocks=4, heads=4), kw)

    @classmethod
    def _preset(cls, frames: int, num_points: int, size: dict, kw: dict) -> TemporalConfig:
        r, b = default_schedule(frames, size["blocks"])
        base = dict(frames=frames, num_points=num_points, schedule_r=r, schedule_b=b, **size)
        if num_points == skeleton.NUM_JOINTS:
            base["reduction"] = "none"
        if kw.get("prune", "tps") == "none":
            base.update(schedule_r=(), schedule_b=())
        base.update(kw)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored inside checkpoints)."""
        d = asdict(self)
        d["schedule_r"], d["schedule_b"] = list(self.schedule_r), list(self.schedule_b)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TemporalConfig:
        """Inverse of `to_dict`; unknown keys are an error."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown TemporalConfig fields: {unknown}")
        return cls(**d)


class TemporalLifter(FrozenLifterStage):
    """Spatio-temporal transformer lifter with hierarchical token pruning and recovery (H2OT on MixSTE)."""

    def __init__(self, cfg: TemporalConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or TemporalConfig()
        self.lifter = self.lift_proj = self.embed = self.point_pos = None
        if cfg.reduction == "lifter":  # frozen single-frame lifter -> 17 joint features + its pose, per frame
            self.lifter = build_lifter(LifterConfig(**cfg.lifter)).requires_grad_(False).eval()
            self.lift_proj = nn.Linear(self.lifter.config.dim, cfg.dim)
        else:
            self.embed = nn.Linear(2, cfg.dim)
            self.point_pos = nn.Parameter(torch.randn(cfg.num_points, cfg.dim) * 0.02)
        self.frame_pos = nn.Parameter(torch.randn(cfg.frames, cfg.dim) * 0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.spatial = nn.ModuleList(
            TransformerBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.blocks)
        )
        self.temporal = nn.ModuleList(
            TransformerBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.blocks)
        )
        self.reduce_proj = self.joint_pos = self.joint_proj = None
        if cfg.reduction in ("linear", "lifter"):
            self.joint_pos = nn.Parameter(torch.randn(cfg.num_joints, cfg.dim) * 0.02)
        if cfg.reduction == "linear":
            self.reduce_proj = nn.Linear(cfg.num_points, cfg.num_joints)
        elif cfg.reduction == "none" and cfg.num_points != cfg.num_joints:
            self.joint_proj = nn.Linear(cfg.num_points, cfg.num_joints)  # at the end, like the single-frame Lifter
        self.norm = nn.LayerNorm(cfg.dim)
        self.recovery = None
        if cfg.prune != "none" and cfg.recover == "tra":
            self.recovery = TokenRecoveryAttention(cfg.frames, cfg.dim, cfg.heads, cfg.dropout)
        self.head = nn.Sequential(nn.LayerNorm(cfg.dim), nn.Linear(cfg.dim, 3))
        if self.lifter is not None:  # the correction starts at zero: untrained, the model is the single-frame lifter
            nn.init.zeros_(self.head[1].weight)
            nn.init.zeros_(self.head[1].bias)
        # TPS is static: its kept frames (per stage and in the original time axis) and TRI's table are constants
        stage_idx, kept = [], torch.arange(cfg.frames)
        if cfg.prune == "tps":
            for r in cfg.schedule_r:
                idx = uniform_indices(len(kept), r)
                stage_idx.append(idx)
                kept = kept[idx]
        for m, idx in enumerate(stage_idx):
            self.register_buffer(f"tps_stage{m}", idx, persistent=False)
        # schedule_b[0] = -1: only the stage-0 frames run the per-frame stage; their single-frame poses are spread
        # back to T slots by a static table (only kept slots are ever read)
        self.pre_prune = cfg.prune == "tps" and cfg.schedule_b[0] == -1
        if self.pre_prune:
            table = interpolation_table(stage_idx[0], torch.arange(cfg.frames))
            for name, t in zip(("pre_left", "pre_right", "pre_weight"), table, strict=True):
                self.register_buffer(name, t, persistent=False)
        self.register_buffer("tps_kept", kept, persistent=False)
        left, right, w = interpolation_table(kept, torch.arange(cfg.frames))
        self.register_buffer("tri_left", left, persistent=False)
        self.register_buffer("tri_right", right, persistent=False)
        self.register_buffer("tri_weight", w, persistent=False)

    # -- backbone ------------------------------------------------------------------------------------------
    def frame_tokens(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame stage, independent of the frame's place in the window: embedding, spatial block 0 and (when
        reduce_after == 0) the 161 -> 17 reduction: x [B, t, N, 2] -> [B, t, n, C]. Streaming caches it per frame.

        With reduction="lifter" the tokens come from the single-frame lifter (`features` = precomputed
        `lifter_features(x)`, else computed here) and carry that lifter's 3D pose in 3 extra channels [.., C + 3].
        """
        b, t, n, _ = x.shape
        c = self.config.dim  # explicit sizes (no -1) keep every ONNX shape inferable with a symbolic batch
        if self.lifter is not None:
            f = self.lifter_features(x) if features is None else features
            j, d = self.config.num_joints, self.lifter.config.dim
            h = self.drop(self.lift_proj(f[..., :d]) + self.joint_pos)
            h = self.spatial[0](h.reshape(b * t, j, c)).view(b, t, j, c)
            return torch.cat([h, f[..., d:]], -1)
        h = self.drop(self.embed(x) + self.point_pos)
        h = self.spatial[0](h.reshape(b * t, n, c)).view(b, t, n, c)
        if self.config.reduction != "none" and self.config.reduce_after == 0:
            h = self._reduce(h)
        return h

    def encode(self, x: torch.Tensor, tokens: torch.Tensor | None = None, features: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:  # fmt: skip
        """Blocks with pruning: x [B, T, N, 2] -> (normed joint tokens [B, r, 17, C], kept frames [B, r] or None,
        the single-frame lifter's poses [B, T, 17, 3] or None).

        `tokens` are `frame_tokens(x)` computed earlier (streaming cache), `features` precomputed
        `lifter_features(x)`. kept is None when no frame was pruned or the pruning is static (TPS: see `tps_kept`).
        """
        cfg = self.config
        frame_pos, stage = self.frame_pos, 0
        if self.pre_prune:  # TPS on the input frames: the per-frame stage runs on the kept frames only
            idx, stage = self.tps_stage0, 1
            frame_pos = frame_pos.index_select(0, idx)
            if tokens is not None:
                tokens = tokens.index_select(1, idx)
            else:
                x = x.index_select(1, idx)
                features = None if features is None else features.index_select(1, idx)
        h = self.frame_tokens(x, features) if tokens is None else tokens
        b, c = h.shape[0], cfg.dim
        base = None
        if self.lifter is not None:  # the per-frame single-frame poses ride in the tokens' last 3 channels
            h, base = h[..., :c], h[..., c:]
            if self.pre_prune:
                base = interpolate_frames(base, self.pre_left, self.pre_right, self.pre_weight)
        h = h + frame_pos[:, None]  # temporal positions enter before the first temporal block (MixSTE)
        kept = None  # original frame index of each token, for dynamic strategies
        for i in range(cfg.blocks):
            t, n = h.shape[1], h.shape[2]
            if i > 0:
                h = self.spatial[i](h.reshape(b * t, n, c)).view(b, t, n, c)
                if cfg.reduction != "none" and i == cfg.reduce_after:
                    h = self._reduce(h)
                    n = h.shape[2]
            ht = h.transpose(1, 2).reshape(b * n, t, c)
            prune_here = cfg.prune != "none" and stage < len(cfg.schedule_b) and cfg.schedule_b[stage] == i
            scores = None
            if prune_here and cfg.prune == "tpa":  # attention received in this block's temporal attention
                blk = self.temporal[i]
                scores = attention_received(blk.attn, blk.norm1(ht)).view(b, n, t).mean(1)
            h = self.temporal[i](ht).view(b, n, t, c).transpose(1, 2)
            if prune_here:
                h, kept = self._prune(stage, h, x, kept, scores)
                stage += 1
        h = self.norm(h)
        if self.joint_proj is not None:
            t, n = h.shape[1], h.shape[2]
            h = joint_projection(h.reshape(b * t, n, c), self.joint_proj).view(b, t, cfg.num_joints, c)
        return h, kept, base

    def _reduce(self, h: torch.Tensor) -> torch.Tensor:
        b, t, n, c = h.shape
        if self.config.reduction == "sparse":  # keep-k key points: the 17 sparse joint tokens
            return h[:, :, : self.config.num_joints]
        out = joint_projection(h.reshape(b * t, n, c), self.reduce_proj) + self.joint_pos
        return out.view(b, t, self.config.num_joints, c)

    def _prune(self, stage: int, h: torch.Tensor, x: torch.Tensor, kept: torch.Tensor | None,
               scores: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        cfg = self.config
        r = cfg.schedule_r[stage]
        if cfg.prune == "tps":
            return h.index_select(1, getattr(self, f"tps_stage{stage}")), None
        b, t = h.shape[:2]
        if kept is None:
            kept = torch.arange(t, device=h.device).expand(b, t)
        if cfg.prune == "tpc":
            scores = density_peaks_scores(h.mean(2), cfg.tpc_k)  # spatial average pooling, then DPC-kNN
        elif cfg.prune == "tpmo":
            scores = motion_scores(gather_frames(x, kept))
        idx = top_r_sorted(scores, r)
        return gather_frames(h, idx), kept.gather(1, idx)

    # -- outputs -------------------------------------------------------------------------------------------
    @staticmethod
    def _root_relative(p: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        if base is not None:  # reduction="lifter": the temporal correction is added to the single-frame pose
            p = p + base
        return p - p[..., skeleton.ROOT : skeleton.ROOT + 1, :]  # root-relative by construction

    def _kept_poses(self, h: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
        """TRI: the full poses of the kept frames [B, r_M, 17, 3] (with a lifter stage, its poses there + the
        correction), which TRI then interpolates: dropped frames get no per-frame term of their own."""
        p = self.head(h)
        return p if base is None else p + base.index_select(1, self.tps_kept)

    def _anchor_base(self, base: torch.Tensor | None, kept: torch.Tensor | None, targets: torch.Tensor
                     ) -> torch.Tensor | None:  # fmt: skip
        """TRA with a lifter stage: the single-frame poses of the kept frames interpolated to `targets` [m] ->
        [B, m, 17, 3] (as TRI: a dropped frame gets no per-frame term of its own; TRA adds the recovered correction)."""
        if base is None:
            return None
        if kept is None:  # TPS: static kept frames
            kept = self.tps_kept.expand(base.shape[0], -1)
        return interpolate_kept(gather_frames(base, kept), kept, targets)

    def _recover_tokens(self, h: torch.Tensor, frames: torch.Tensor | None) -> torch.Tensor:
        b, r, j, c = h.shape
        kv = h.transpose(1, 2).reshape(b * j, r, c)
        out = self.recovery(kv, self.frame_pos, frames)  # [B*J, m, C]
        return out.view(b, j, out.shape[1], c).transpose(1, 2)

    def _check(self, x: torch.Tensor) -> None:
        if not torch.jit.is_tracing():
            check_sequence(x, self.config.frames, self.config.num_points)

    def forward_sequence(self, x: torch.Tensor, tokens: torch.Tensor | None = None,
                         features: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """seq2seq: x [B, T, N, 2] -> root-relative 3D joints of every frame [B, T, 17, 3]."""
        self._check(x)
        h, kept, base = self.encode(x, tokens, features)
        cfg = self.config
        if cfg.prune == "none":
            return self._root_relative(self.head(h), base)
        if cfg.recover == "tra":
            frames = torch.arange(cfg.frames, device=h.device)
            return self._root_relative(self.head(self._recover_tokens(h, None)), self._anchor_base(base, kept, frames))
        p = interpolate_frames(self._kept_poses(h, base), self.tri_left, self.tri_right, self.tri_weight)
        return self._root_relative(p)

    def forward_frame(self, x: torch.Tensor, frame: int | None = None, tokens: torch.Tensor | None = None,
                      features: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """seq2frame: 3D joints [B, 17, 3] of one frame of the window (default: the config's output frame)."""
        self._check(x)
        cfg = self.config
        f = cfg.output_index if frame is None else int(frame)
        if not 0 <= f < cfg.frames:
            raise ValueError(f"frame {f} is outside the window [0, {cfg.frames})")
        h, kept, base = self.encode(x, tokens, features)
        if cfg.prune != "none" and cfg.recover == "tri":  # TRI at one frame: the kept frame itself (weight 0) or
            sl = slice(f, f + 1)  # its two kept neighbours
            p = interpolate_frames(self._kept_poses(h, base), self.tri_left[sl], self.tri_right[sl],
                                   self.tri_weight[sl])  # fmt: skip
            return self._root_relative(p[:, 0])
        if cfg.prune == "none":
            return self._root_relative(self.head(h[:, f]), None if base is None else base[:, f])
        sel = torch.tensor([f], device=h.device)  # TRA: recover only the wanted frame, one query
        anchor = self._anchor_base(base, kept, sel)
        pose = self.head(self._recover_tokens(h, sel))[:, 0]
        return self._root_relative(pose, None if anchor is None else anchor[:, 0])

    def forward(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """The configured pipeline: [B, T, 17, 3] (seq2seq) or [B, 17, 3] at the output frame (seq2frame)."""
        if self.config.pipeline == "seq2seq":
            return self.forward_sequence(x, features=features)
        return self.forward_frame(x, features=features)

    def kept_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Original frame indices [B, r_M] of the tokens that reach the last block (all T when not pruned)."""
        self._check(x)
        with torch.no_grad():
            _, kept, _ = self.encode(x)
        if kept is not None:
            return kept
        frames = self.tps_kept if self.config.prune == "tps" else torch.arange(self.config.frames)
        return frames.to(x.device).expand(x.shape[0], -1)
