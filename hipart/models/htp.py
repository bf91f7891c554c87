"""HTP: a D3DP-style diffusion denoiser over T frames x 17 joints with Hierarchical Temporal Pruning (Bi et al.).

Layout (paper Fig. 2, MixSTE-like), for noisy 3D y_t [B, T, 17, 3] (diffusion space), the 2D condition x_s
[B, T, 17, 2] (screen-normalised) and, with condition="lifter", the frozen single-frame HiPART lifter's per-frame
joint features and pose p_1:

  Linear([y_t, cond]) + joint pos -> spatial block 0 -> TCEP (mask M) -> + timestep emb + frame pos
  -> sft_layers x [temporal block (SFT-MHSA under M) + spatial block] -> MGPTP (T -> n frames)
  -> (blocks - sft_layers) x [temporal + spatial] on n frames -> LayerNorm -> TRA restore (n -> T)
  -> LayerNorm + Linear(C, 3) (+ p_1 with `residual`) -> minus the pelvis  => clean pose x0 [B, T, 17, 3]

Every module is switchable (`tcep`, `sft`, `mgptp`) for the paper's Table XI; all off is the unpruned D3DP-style
baseline. Selections (TCEP's top-k, MGPTP's top-n) are hard, gradient-free, deterministic (ties by index) and use
only static shapes (sort + scatter / gather, no nonzero). `HTPDenoiser.lift` maps one window + given noise to the
JPMA-aggregated pose (the function export and streaming need).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hipart import skeleton
from hipart.models.blocks import TransformerBlock
from hipart.models.complexity import count_flops, count_params
from hipart.models.config import LifterConfig
from hipart.models.diffusion import GaussianDiffusion, jpma, sample
from hipart.models.lifter import FrozenLifterStage, build_lifter
from hipart.models.token_pruning import gather_frames
from hipart.models.token_recovery import TokenRecoveryAttention, interpolate_kept

CONDITIONS = ("2d", "lifter")
MASK_NEG = -1e4  # "large finite negative" of the masked softmaxes: exp underflows to 0 in fp32 and fits fp16
MGPTP_EPS = 1e-6  # masked pairs are pushed past the largest distance by this much (strictly farther)


def default_keep(frames: int) -> int:
    """MGPTP's n: the paper's 54 of 243 frames scaled to T (T = 27 -> 6), at least 2."""
    return max(2, round(frames * 54 / 243))


def default_tcep_k(frames: int) -> int:
    """TCEP's top-k neighbours: a third of T (T = 27 -> 9); the paper's H3.6M value is 162 of 243 (`paper`)."""
    return max(1, min(frames - 1, round(frames / 3)))


@dataclass
class HTPConfig:
    """Every hyper-parameter of the HTP denoiser (presets `small`, `edge`, `paper`)."""

    frames: int = 27  # T
    num_points: int = skeleton.NUM_JOINTS  # input points per frame (161 only to feed a 161-point frozen lifter)
    num_joints: int = skeleton.NUM_JOINTS
    dim: int = 32
    blocks: int = 4  # temporal + spatial block pairs after spatial block 0
    heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    sft_layers: int = 2  # pairs before MGPTP (paper: 3); the SFT-MHSA ones when `sft`
    tcep: bool = True
    sft: bool = True  # needs tcep's mask
    mgptp: bool = True
    keep: int | None = None  # MGPTP's n (None: default_keep(T))
    tcep_k: int | None = None  # None: default_tcep_k(T)
    mgptp_k: int = 3  # kNN of the mask-guided density
    condition: str = "2d"  # 2d | lifter (+ the frozen single-frame lifter's features and pose p_1)
    residual: bool = True  # condition="lifter": x0 = p_1 + a learned correction (head starts at zero)
    restore_query: str = "learned"  # MGPTP's restore: T "learned" queries (+ positions, as H2OT's TRA) or "skip":
    # + each frame's own tokens from before the pruning (a skip connection, so a dropped frame keeps its detail)
    restore_base: str = "interpolated"  # with MGPTP + residual: a dropped frame's p_1 is "interpolated" from the
    # kept frames' (as H2OT) or its "own" (keeps the per-frame detail that aggressive pruning would smooth away)
    pose_scale: float = 1.0  # diffusion space = metres x pose_scale
    timesteps: int = 1000
    lifter: dict[str, Any] | None = None  # LifterConfig of the frozen single-frame lifter (condition="lifter")

    def __post_init__(self) -> None:
        t = self.frames
        self.keep = default_keep(t) if self.keep is None else int(self.keep)
        self.tcep_k = default_tcep_k(t) if self.tcep_k is None else int(self.tcep_k)
        if self.restore_query not in ("learned", "skip"):
            raise ValueError(f"restore_query must be 'learned' or 'skip', got {self.restore_query!r}")
        if self.restore_base not in ("interpolated", "own"):
            raise ValueError(f"restore_base must be 'interpolated' or 'own', got {self.restore_base!r}")
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if t < 2 or self.dim < 2 or self.blocks < 1:
            raise ValueError("frames must be >= 2, dim >= 2 and blocks >= 1")
        if self.dim % self.heads or self.dim % 2:
            raise ValueError(f"dim {self.dim} must be even and divisible by heads {self.heads}")
        if not 0 <= self.sft_layers <= self.blocks:
            raise ValueError(f"sft_layers must be in [0, {self.blocks}], got {self.sft_layers}")
        if self.sft and not self.tcep:
            raise ValueError("sft needs TCEP's mask: turn tcep on or sft off")
        if self.tcep and not 1 <= self.tcep_k <= t - 1:
            raise ValueError(f"tcep_k must be in [1, T - 1 = {t - 1}], got {self.tcep_k}")
        if self.mgptp:
            if not 2 <= self.keep < t:
                raise ValueError(f"MGPTP keeps n frames with 2 <= n < T = {t}, got keep={self.keep}")
            if not 1 <= self.mgptp_k <= t - 1:
                raise ValueError(f"mgptp_k must be in [1, T - 1 = {t - 1}], got {self.mgptp_k}")
            if not 1 <= self.sft_layers < self.blocks:
                raise ValueError(f"MGPTP runs after sft_layers blocks and before at least one more: need 1 <= "
                                 f"sft_layers < blocks = {self.blocks}, got {self.sft_layers}")  # fmt: skip
        if self.pose_scale <= 0 or self.timesteps < 1:
            raise ValueError("pose_scale and timesteps must be positive")
        if self.num_points not in (skeleton.NUM_JOINTS, skeleton.NUM_HIERARCHY_POINTS):
            raise ValueError(f"num_points must be {skeleton.NUM_JOINTS} or {skeleton.NUM_HIERARCHY_POINTS}")
        if self.condition == "lifter":
            self.lifter = asdict(LifterConfig(num_points=self.num_points, num_joints=self.num_joints, kind="mlp",
                                              dim=32)) | dict(self.lifter or {})  # fmt: skip
            if (self.lifter["num_points"], self.lifter["num_joints"]) != (self.num_points, self.num_joints):
                raise ValueError(f"the single-frame lifter takes {self.lifter['num_points']} points, the HTP model "
                                 f"{self.num_points}")  # fmt: skip
        else:
            if self.lifter is not None:
                raise ValueError("a lifter config belongs only to condition='lifter'")
            if self.num_points != self.num_joints:
                raise ValueError("condition='2d' takes the 17 sparse joints (num_points = 17)")

    @classmethod
    def small(cls, frames: int = 27, **kw: Any) -> HTPConfig:
        """CPU-trainable preset: dim 32, 4 pairs, 4 heads, MGPTP after 2."""
        return cls(**{**dict(frames=frames, dim=32, blocks=4, heads=4, sft_layers=2), **kw})

    @classmethod
    def edge(cls, frames: int = 27, **kw: Any) -> HTPConfig:
        """Edge preset: dim 128, 8 pairs, 8 heads, MGPTP after 3 (the paper's placement)."""
        return cls(**{**dict(frames=frames, dim=128, blocks=8, heads=8, sft_layers=3), **kw})

    @classmethod
    def paper(cls, frames: int = 243, **kw: Any) -> HTPConfig:
        """The paper's H3.6M model (D3DP width): dim 512, 8 pairs, 8 heads, sft 3, n 54, k_T 162 at T = 243."""
        base = dict(frames=frames, dim=512, blocks=8, heads=8, sft_layers=3,
                    tcep_k=max(1, min(frames - 1, round(frames * 2 / 3))))  # fmt: skip
        return cls(**{**base, **kw})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored inside checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HTPConfig:
        """Inverse of `to_dict`; unknown keys are an error."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown HTPConfig fields: {unknown}")
        return cls(**d)


def top_k_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k largest entries along the last axis, ties to the lower index, best first.

    Eager: a stable descending sort. ONNX export: TopK, whose spec breaks ties the same way (the TorchScript exporter
    cannot export a stable sort), so the exported graph selects what PyTorch selects, ties included.
    """
    if torch.onnx.is_in_onnx_export():
        return torch.topk(scores, k, dim=-1).indices
    return scores.sort(dim=-1, descending=True, stable=True).indices[..., :k]


def _eye(n: int, device: torch.device) -> torch.Tensor:
    """Boolean identity [n, n] from index comparisons (onnxruntime has no boolean EyeLike)."""
    idx = torch.arange(n, device=device)
    return idx[:, None] == idx[None]


# -- TCEP: Temporal Correlation-Enhanced Pruning (paper §IV-B) ---------------------------------------------------------
def chain_adjacency(frames: int) -> torch.Tensor:
    """A0: the temporal chain (t - 1, t, t + 1) with self-loops, symmetrically normalised D^-1/2 A D^-1/2, [T, T]."""
    a = torch.eye(frames) + torch.diag(torch.ones(frames - 1), 1) + torch.diag(torch.ones(frames - 1), -1)
    d = a.sum(-1).rsqrt()
    return d[:, None] * a * d[None]


def tcep_mask(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """From similarities [..., T, T]: (mask M, selected), both bool. `selected` holds each row's top-k off-diagonal
    entries (exactly k per row; ties to the lower index); M = selected | self-loops, made symmetric (M | M^T)."""
    eye = _eye(scores.shape[-1], scores.device)
    order = top_k_indices(scores.detach().masked_fill(eye, float("-inf")), k)
    selected = torch.zeros_like(scores, dtype=torch.float).scatter(-1, order, 1.0) > 0
    m = selected | eye
    return m | m.transpose(-1, -2), selected


class TCEP(nn.Module):
    """X_j' = X_j + GELU(W (softmax(S masked to M) ⊙ A) X_j) per joint, A = A0 + P + P^T; returns (X', M)."""

    def __init__(self, frames: int, dim: int, k: int):
        super().__init__()
        self.k = k
        self.register_buffer("a0", chain_adjacency(frames), persistent=False)
        # P starts at zero: A is the chain graph at first, and P learns the long-range links the top-k selects
        self.p = nn.Parameter(torch.zeros(frames, frames))
        self.proj = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h [B, T, J, C] -> (refined h [B, T, J, C], binary mask M [B, J, T, T] bool)."""
        x = h.transpose(1, 2)  # [B, J, T, C]
        s = x @ x.transpose(-1, -2) / math.sqrt(x.shape[-1])
        mask, _ = tcep_mask(s, self.k)
        att = torch.where(mask, s, torch.full_like(s, MASK_NEG)).softmax(-1) * (self.a0 + self.p + self.p.t())
        x = x + F.gelu(self.proj(att @ x))
        return x.transpose(1, 2), mask


# -- SFT-MHSA: Sparse-Focused Temporal MHSA (paper §IV-C) --------------------------------------------------------------
def sft_bias(mask: torch.Tensor) -> torch.Tensor:
    """Additive attention mask from M [B, J, T, T]: 0 where M = 1, MASK_NEG where M = 0 -> [B * J, 1, T, T]."""
    b, j, t, _ = mask.shape
    zero = torch.zeros((), dtype=torch.float, device=mask.device)
    return torch.where(mask, zero, zero + MASK_NEG).reshape(b * j, 1, t, t)


def sft_block(block: TransformerBlock, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A TransformerBlock's forward on x [B', T, C] with an additive attention bias [B', 1, T, T] (its weights)."""
    a = block.attn
    q, k, v = a.project_qkv(block.norm1(x))
    if a.training and a.attn_drop.p == 0.0:  # fused kernel in training, the explicit graph otherwise (as Attention)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
    else:
        out = a.attn_drop(((q * a.scale) @ k.transpose(-2, -1) + bias).softmax(-1)) @ v
    b, _, t, _ = out.shape
    x = x + a.proj_drop(a.proj(out.transpose(1, 2).reshape(b, t, a.heads * a.head_dim)))
    return x + block.mlp(block.norm2(x))


# -- MGPTP: Mask-Guided Pose Token Pruner (paper §IV-D) ----------------------------------------------------------------
def mgptp_scores(frames: torch.Tensor, mbar: torch.Tensor, k: int) -> torch.Tensor:
    """Cluster-centre score rho~ * delta [B, T] of frame tokens [B, T, C] under the joint-pooled mask mbar [B, T, T].

    d'_ij = |F_i - F_j| / sqrt(C), plus (max distance + eps) where mbar_ij = 0; rho_i = exp(-mean d'^2 over its k
    nearest other frames); mask support s_i = sum_j mbar_ij, stability transform log1p(s), rho~ = rho *
    softmax(log1p(s)) (= rho * (1 + s) / sum(1 + s)); delta_i = min d' to a frame of higher rho~ (equal rho~: the
    lower index counts as higher), the densest frame its largest d'.
    """
    b, t, c = frames.shape
    d = torch.cdist(frames, frames) / math.sqrt(c)
    far = d.amax(dim=(1, 2), keepdim=True) + MGPTP_EPS
    d = torch.where(mbar > 0, d, d + far)
    eye = _eye(t, frames.device)
    knn = torch.topk(d.masked_fill(eye, float("inf")), k, dim=-1, largest=False).values
    rho = torch.exp(-(knn**2).mean(-1)) * torch.log1p(mbar.sum(-1)).softmax(-1)
    idx = torch.arange(t, device=frames.device)
    higher = (rho[:, None, :] > rho[:, :, None]) | (
        (rho[:, None, :] == rho[:, :, None]) & (idx[None, None, :] < idx[None, :, None]))  # fmt: skip
    top = d.amax(-1)
    delta = torch.where(higher, d, top[..., None] + 2 * far).amin(-1)
    delta = torch.where(higher.any(-1), delta, top)
    return rho * delta


def top_n_sorted(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Indices [B, n] of the n highest scores of [B, T] (ties: lower index first), sorted in time."""
    return top_k_indices(scores, n).sort(-1).values


def mgptp_select(h: torch.Tensor, mask: torch.Tensor | None, n: int, k: int) -> torch.Tensor:
    """MGPTP's kept frames [B, n] (sorted) of tokens h [B, T, J, C] under TCEP's mask [B, J, T, T] (None: all ones)."""
    with torch.no_grad():
        f = h.mean(2).float()
        mbar = torch.ones_like(f[..., :1].expand(-1, -1, f.shape[1])) if mask is None else mask.float().mean(1)
        return top_n_sorted(mgptp_scores(f, mbar, k), n)


# -- the denoiser ------------------------------------------------------------------------------------------------------
class SinusoidalEmbedding(nn.Module):
    """Timestep t [B] -> [B, dim] (sin | cos of t times geometric frequencies, as D3DP / DDPM)."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000) * torch.arange(half) / max(1, half - 1)),
                             persistent=False)  # fmt: skip

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        e = t.float()[:, None] * self.freqs[None]
        return torch.cat([e.sin(), e.cos()], -1)


class HTPDenoiser(FrozenLifterStage):
    """D3DP-style x0 denoiser with TCEP, SFT-MHSA and MGPTP (+ TRA restore); see the module docstring."""

    def __init__(self, cfg: HTPConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or HTPConfig()
        c, j = cfg.dim, cfg.num_joints
        self.diffusion = GaussianDiffusion(cfg.timesteps, cfg.pose_scale)
        self.lifter = None
        cond = 2
        if cfg.condition == "lifter":  # frozen: its features and pose are inputs, cached per frame in training
            self.lifter = build_lifter(LifterConfig(**cfg.lifter)).requires_grad_(False).eval()
            cond += self.lifter_channels
        self.embed = nn.Linear(3 + cond, c)
        self.joint_pos = nn.Parameter(torch.randn(j, c) * 0.02)
        self.frame_pos = nn.Parameter(torch.randn(cfg.frames, c) * 0.02)
        self.time_mlp = nn.Sequential(SinusoidalEmbedding(c), nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))
        self.drop = nn.Dropout(cfg.dropout)
        self.spatial = nn.ModuleList(
            TransformerBlock(c, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.blocks + 1))
        self.temporal = nn.ModuleList(
            TransformerBlock(c, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.blocks))
        self.tcep = TCEP(cfg.frames, c, cfg.tcep_k) if cfg.tcep else None
        self.restore = TokenRecoveryAttention(cfg.frames, c, cfg.heads, cfg.dropout) if cfg.mgptp else None
        self.norm = nn.LayerNorm(c)
        self.head = nn.Sequential(nn.LayerNorm(c), nn.Linear(c, 3))
        if self.residual:  # an untrained residual model predicts the single-frame lifter's pose
            nn.init.zeros_(self.head[1].weight)
            nn.init.zeros_(self.head[1].bias)
        self.register_buffer("all_frames", torch.arange(cfg.frames), persistent=False)

    @property
    def residual(self) -> bool:
        """True when x0 = p_1 + correction (condition='lifter' with `residual`)."""
        return self.lifter is not None and self.config.residual

    # -- forward ----------------------------------------------------------------------------------------------------
    def encode(self, y_t: torch.Tensor, t: torch.Tensor, x: torch.Tensor, features: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:  # fmt: skip
        """Blocks up to the final LayerNorm -> (tokens [B, n, 17, C], MGPTP's kept frames [B, n] or None without
        MGPTP, the residual base p_1 [B, T, 17, 3] (diffusion space) or None, the tokens before MGPTP [B, T, 17, C]
        when the restore queries take them (restore_query="skip") or None)."""
        cfg = self.config
        b, frames, j = y_t.shape[:3]
        c = cfg.dim
        parts, base = [y_t, x[:, :, :j]], None
        if self.lifter is not None:
            f = self.lifter_features(x) if features is None else features
            pose1 = f[..., -3:] * cfg.pose_scale
            parts += [f[..., :-3], pose1]
            base = pose1 if cfg.residual else None
        h = self.drop(self.embed(torch.cat(parts, -1)) + self.joint_pos)
        h = self.spatial[0](h.reshape(b * frames, j, c)).view(b, frames, j, c)
        mask = None
        if self.tcep is not None:
            h, mask = self.tcep(h)
        h = h + self.time_mlp(t)[:, None, None] + self.frame_pos[:, None]
        bias = sft_bias(mask) if cfg.sft else None
        kept = skip = None
        for i in range(cfg.blocks):
            if self.restore is not None and i == cfg.sft_layers:
                kept = mgptp_select(h, mask, cfg.keep, cfg.mgptp_k)
                if cfg.restore_query == "skip":
                    skip = h
                h = gather_frames(h, kept)
            n = h.shape[1]
            ht = h.transpose(1, 2).reshape(b * j, n, c)
            if bias is not None and i < cfg.sft_layers:
                ht = sft_block(self.temporal[i], ht, bias)
            else:
                ht = self.temporal[i](ht)
            h = self.spatial[i + 1](ht.view(b, j, n, c).transpose(1, 2).reshape(b * n, j, c)).view(b, n, j, c)
        return self.norm(h), kept, base, skip

    def forward(self, y_t: torch.Tensor, t: torch.Tensor, x: torch.Tensor, features: torch.Tensor | None = None
                ) -> torch.Tensor:  # fmt: skip
        """Predicted clean pose x0 [B, T, 17, 3] (diffusion space, root-relative) from noisy y_t [B, T, 17, 3],
        timesteps t [B], the 2D input x [B, T, N, 2] (its first 17 points are x_s) and, for condition='lifter',
        `lifter_features(x)` (computed here when not given)."""
        h, kept, base, skip = self.encode(y_t, t, x, features)
        if kept is not None:  # TRA: T learnable queries + frame positions attend to the n kept tokens of each joint
            b, n, j, c = h.shape
            frames = self.config.frames
            pos = self.frame_pos
            if skip is not None:  # [B, T, 17, C] -> per joint sequence [B * 17, T, C]
                pos = pos + skip.transpose(1, 2).reshape(b * j, frames, c)
            h = self.restore(h.transpose(1, 2).reshape(b * j, n, c), pos).view(b, j, frames, c)
            h = h.transpose(1, 2)
            if base is not None and self.config.restore_base == "interpolated":  # the kept frames' p_1 (as H2OT)
                base = interpolate_kept(gather_frames(base, kept), kept, self.all_frames)
        p = self.head(h)
        if base is not None:
            p = p + base
        return p - p[..., skeleton.ROOT : skeleton.ROOT + 1, :]

    @torch.no_grad()
    def kept_frames(self, y_t: torch.Tensor, t: torch.Tensor, x: torch.Tensor,
                    features: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """MGPTP's kept frames [B, n] for these inputs (all T frames without MGPTP)."""
        kept = self.encode(y_t, t, x, features)[1]
        return self.all_frames.expand(y_t.shape[0], -1) if kept is None else kept

    # -- sampling -----------------------------------------------------------------------------------------------
    def sample_hypotheses(self, x: torch.Tensor, hypotheses: int = 1, steps: int = 1,
                          features: torch.Tensor | None = None, generator: torch.Generator | None = None,
                          noise: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """DDIM: H root-relative hypotheses [H, B, T, 17, 3] in metres (`noise` [H, B, T, 17, 3] or fresh)."""
        if self.lifter is not None and features is None:
            features = self.lifter_features(x)  # once, not per step and hypothesis
        cfg = self.config
        return sample(self, {"x": x, "features": features}, self.diffusion, hypotheses, steps, generator, noise,
                      (cfg.frames, cfg.num_joints, 3))  # fmt: skip

    def lift(self, x: torch.Tensor, noise: torch.Tensor, steps: int, features: torch.Tensor | None = None,
             intrinsics: torch.Tensor | None = None, visible: torch.Tensor | None = None) -> torch.Tensor:
        """One window's aggregated pose [B, T, 17, 3] (metres, root-relative) from x [B, T, N, 2] and the initial
        noise [H, B, T, 17, 3]: K DDIM steps, then JPMA with normalised intrinsics [B, 4] (diffusion.
        normalised_intrinsics), or the hypothesis mean without them. A fixed function of its inputs (export)."""
        hyps = self.sample_hypotheses(x, steps=steps, features=features, noise=noise)
        if intrinsics is None:
            return hyps.mean(0)
        return jpma(hyps, x[:, :, : self.config.num_joints], intrinsics, visible)


# -- cost ----------------------------------------------------------------------------------------------------------
@torch.no_grad()
def htp_cost(cfg: HTPConfig, hypotheses: int = 1, steps: int = 1) -> dict[str, Any]:
    """Parameters and MACs per frame (MACs = FLOPs / 2 as torch's FlopCounterMode counts them: matmuls, linears and
    attention; softmax, elementwise ops, distances and sorts are not counted, as THOP).

    Training: one denoiser forward per window (H = K = 1), forward only (backward not counted, as the paper), with
    the frozen lifter's features cached (its share is listed apart). Inference: K steps x H hypotheses of the
    denoiser, plus the frozen lifter once per frame. Per frame = per window / T (seq2seq).
    """
    torch.manual_seed(0)
    model = HTPDenoiser(cfg).eval()
    x = torch.randn(1, cfg.frames, cfg.num_points, 2) * 0.3
    y = torch.randn(1, cfg.frames, cfg.num_joints, 3)
    t = torch.tensor([cfg.timesteps - 1])
    feats = model.lifter_features(x) if model.lifter is not None else None
    denoise = count_flops(model, y, t, x, feats) / 2
    lifter = count_flops(model.lifter_features, x) / 2 if model.lifter is not None else 0.0
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "params": count_params(model),
        "params_trained": trained,
        "gmacs_window_denoiser": denoise / 1e9,
        "gmacs_window_lifter": lifter / 1e9,
        "train_gmacs_per_frame": denoise / cfg.frames / 1e9,
        "infer_gmacs_per_frame": (hypotheses * steps * denoise + lifter) / cfg.frames / 1e9,
        "hypotheses": hypotheses,
        "steps": steps,
    }
