"""Every hyper-parameter of HiPART as a field of one dataclass per stage (paper defaults, App. C)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hipart import skeleton

GENERATION_ORDERS = ("center_to_periphery", "next_token")
GENERATOR_MODES = ("autoregressive", "classification")
LIFTER_INPUTS = ("hierarchy", "dense", "sparse")
LIFTER_KINDS = ("transformer", "mlp")
# Points the lifter sees for each input choice: 17 + 48 + 96, 17 + 48 (paper Table 5's "+dense"), 17.
LIFTER_POINTS = {"hierarchy": skeleton.NUM_HIERARCHY_POINTS, "dense": skeleton.NUM_JOINTS + skeleton.NUM_DENSE,
                 "sparse": skeleton.NUM_JOINTS}


ARCHITECTURES = ("paper", "edge", "tiny")  # names for HiPARTConfig.named / --random-weights


@dataclass
class TokenizerConfig:
    """MSST: multi-scale skeletal tokenizer (paper §4.1)."""

    num_fine: int = skeleton.NUM_FINE
    num_dense: int = skeleton.NUM_DENSE
    num_sparse: int = skeleton.NUM_BONES
    enc_dim: int = 128
    enc_blocks: int = 4
    enc_token_hidden: int = 64  # hidden width of the token-mixing MLP (PCT-style mixer)
    enc_channel_hidden: int = 256
    dec_dim: int = 96
    dec_blocks: int = 1
    codebook_dim: int = 128
    sparse_codebook_size: int = 2048
    dense_codebook_size: int = 2048  # paper's best: 3072
    shared_codebook: bool = False  # ablation: one codebook for both levels (Table 3)
    ema_decay: float = 0.99
    ema_eps: float = 1e-5
    dead_code_threshold: float = 0.5  # EMA assignments per step below which a code is re-initialised
    beta: float = 0.25
    tau: float = 0.07
    lambda_local: float = 1.0
    lambda_global: float = 0.3
    num_actions: int = 16
    local_alignment: bool = True  # ablation switch (Table 3)
    global_alignment: bool = True  # ablation switch (Table 3)

    def __post_init__(self) -> None:
        if self.num_dense % self.num_sparse:
            raise ValueError("num_dense must be a multiple of num_sparse (r = J_d / J_s)")
        if self.shared_codebook and self.sparse_codebook_size != self.dense_codebook_size:
            raise ValueError("shared_codebook needs sparse_codebook_size == dense_codebook_size")

    @property
    def tokens_per_part(self) -> int:
        return self.num_dense // self.num_sparse


@dataclass
class GeneratorConfig:
    """HiARM: hierarchical autoregressive generator (paper §4.2, Algorithm 1)."""

    dim: int = 128
    heads: int = 8
    mlp_ratio: float = 4.0
    lsab_blocks: int = 1
    gcsab_blocks: int = 12
    head_blocks: int = 4
    dropout: float = 0.25
    order: str = "center_to_periphery"  # or "next_token" (ablation, Table 4)
    sparse_to_dense: bool = True  # False: the r dense tokens one after another (1 + r head passes)
    mode: str = "autoregressive"  # or "classification" (PCT-style, no autoregression)
    lambda_dense: float = 1.5

    def __post_init__(self) -> None:
        if self.order not in GENERATION_ORDERS:
            raise ValueError(f"order must be one of {GENERATION_ORDERS}, got {self.order!r}")
        if self.mode not in GENERATOR_MODES:
            raise ValueError(f"mode must be one of {GENERATOR_MODES}, got {self.mode!r}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")


@dataclass
class LifterConfig:
    """Lifter of N 2D points to 17 3D joints: the paper's vanilla spatial transformer (Fig. 11) or a residual MLP."""

    num_points: int = skeleton.NUM_HIERARCHY_POINTS  # 161, or 17 for the sparse-only baseline
    num_joints: int = skeleton.NUM_JOINTS
    kind: str = "transformer"  # or "mlp": residual MLP over pelvis-centred, scale-normalised points (edge)
    dim: int = 96  # transformer width; for "mlp", the per-joint feature width before the head
    width: int = 1024  # "mlp" only: hidden width of the residual blocks
    blocks: int = 12
    heads: int = 6
    mlp_ratio: float = 2.0
    dropout: float = 0.1  # on embeddings, attention output and MLP
    attn_dropout: float = 0.0  # on attention weights; 0 lets training use the fused attention kernel (CPU budget)

    def __post_init__(self) -> None:
        if self.kind not in LIFTER_KINDS:
            raise ValueError(f"lifter kind must be one of {LIFTER_KINDS}, got {self.kind!r}")
        if self.kind == "transformer" and self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")


@dataclass
class HiPARTConfig:
    """The whole model: tokenizer + generator + lifter."""

    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    lifter: LifterConfig = field(default_factory=LifterConfig)
    lifter_input: str = "hierarchy"  # or "dense" (17 + 48 points) or "sparse" (baseline over the 17 joints only)

    def __post_init__(self) -> None:
        if self.lifter_input not in LIFTER_INPUTS:
            raise ValueError(f"lifter_input must be one of {LIFTER_INPUTS}, got {self.lifter_input!r}")
        want = LIFTER_POINTS[self.lifter_input]
        if self.lifter.num_points != want:
            raise ValueError(
                f"lifter_input={self.lifter_input!r} needs lifter.num_points={want}, got {self.lifter.num_points}"
            )
        if self.generator.dim <= 0 or self.tokenizer.codebook_dim <= 0:
            raise ValueError("dimensions must be positive")

    @classmethod
    def paper(cls) -> HiPARTConfig:
        """The paper's defaults."""
        return cls()

    @classmethod
    def edge(cls, lifter_input: str = "hierarchy") -> HiPARTConfig:
        """The bundled default: the paper's tokenizer and generator, a residual-MLP lifter (docs/MODEL.md)."""
        n = LIFTER_POINTS[lifter_input]
        return cls(lifter=LifterConfig(num_points=n, kind="mlp", dim=32, width=512, blocks=2, dropout=0.1),
                   lifter_input=lifter_input)

    @classmethod
    def tiny(cls, lifter_input: str = "hierarchy") -> HiPARTConfig:
        """A small model with the same structure, for tests and quick experiments."""
        n = LIFTER_POINTS[lifter_input]
        return cls(
            tokenizer=TokenizerConfig(
                enc_dim=32, enc_blocks=1, enc_token_hidden=16, enc_channel_hidden=64, dec_dim=24,
                codebook_dim=32, sparse_codebook_size=64, dense_codebook_size=96, num_actions=4,
            ),
            generator=GeneratorConfig(dim=32, heads=4, gcsab_blocks=2, head_blocks=1, dropout=0.0),
            lifter=LifterConfig(num_points=n, dim=24, blocks=2, heads=4, dropout=0.0),
            lifter_input=lifter_input,
        )

    @classmethod
    def named(cls, name: str) -> HiPARTConfig:
        """An architecture by the name every command's --random-weights takes: paper, edge or tiny."""
        factories = {"paper": cls.paper, "edge": cls.edge, "tiny": cls.tiny}
        if name not in factories:
            raise ValueError(f"unknown model architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
        return factories[name]()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored inside checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HiPARTConfig:
        """Inverse of `to_dict`; unknown keys are an error, missing keys take defaults."""
        return cls(
            tokenizer=_build(TokenizerConfig, d.get("tokenizer", {})),
            generator=_build(GeneratorConfig, d.get("generator", {})),
            lifter=_build(LifterConfig, d.get("lifter", {})),
            lifter_input=d.get("lifter_input", "hierarchy"),
        )


def _build(kind: type, d: dict[str, Any]) -> Any:
    names = {f.name for f in fields(kind)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {kind.__name__} fields: {unknown}")
    return kind(**d)
