"""HiPART assembled: HiARM decode -> MSST decoders -> lifter over the 161 hierarchical points."""

from __future__ import annotations

import torch
from torch import nn

from hipart import skeleton
from hipart.models.config import HiPARTConfig
from hipart.models.generator import HiARM
from hipart.models.lifter import build_lifter
from hipart.models.tokenizer import MSSTokenizer
from hipart.validation import check_points, check_tokens


class HiPART(nn.Module):
    """x_s [B, 17, 2] (screen-normalised) -> dense, fine 2D poses, 3D pose and the tokens."""

    def __init__(self, cfg: HiPARTConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or HiPARTConfig()
        self.tokenizer = MSSTokenizer(cfg.tokenizer)
        self.generator = HiARM(cfg.generator, cfg.tokenizer)
        self.lifter = build_lifter(cfg.lifter)
        self.sync_codebooks()

    def sync_codebooks(self) -> None:
        """Copy the tokenizer's codebooks into the generator (call after training or loading the tokenizer)."""
        with torch.no_grad():
            self.generator.set_codebooks(
                self.tokenizer.sparse_quantizer.codebook, self.tokenizer.dense_quantizer.codebook
            )

    def lift(self, x_s: torch.Tensor, x_d: torch.Tensor, x_f: torch.Tensor) -> torch.Tensor:
        """3D pose [B, 17, 3] from the 2D levels the lifter takes (all three, x_s + dense, or x_s alone)."""
        if self.config.lifter_input == "sparse":
            return self.lifter(x_s)
        if self.config.lifter_input == "dense":
            return self.lifter(torch.cat([x_s, x_d], 1))
        return self.lifter(torch.cat([x_s, x_d, x_f], 1))

    def densify(self, x_s: torch.Tensor, use_cache: bool = True) -> dict[str, torch.Tensor]:
        """Tokens and dense/fine 2D poses for x_s (no lifting)."""
        check_points(x_s, skeleton.NUM_JOINTS, "x_s")
        q_s, q_d = self.generator.generate(x_s, use_cache=use_cache)
        x_d, x_f = self.tokenizer.decode(q_s, q_d)
        return {"q_s": q_s, "q_d": q_d, "dense": x_d, "fine": x_f}

    def decode_tokens(self, q_s: torch.Tensor, q_d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked MSST decode of token ids -> (dense [B, 48, 2], fine [B, 96, 2])."""
        tc = self.config.tokenizer
        check_tokens(q_s, tc.num_sparse, tc.sparse_codebook_size, "q_s")
        check_tokens(q_d, tc.num_dense, tc.dense_codebook_size, "q_d")
        return self.tokenizer.decode(q_s, q_d)

    @torch.no_grad()
    def forward(self, x_s: torch.Tensor, use_cache: bool = True) -> dict[str, torch.Tensor]:
        """Full inference: {dense [B,48,2], fine [B,96,2], pose3d [B,17,3], q_s [B,16], q_d [B,48]}."""
        out = self.densify(x_s, use_cache)
        out["pose3d"] = self.lift(x_s, out["dense"], out["fine"])
        return out
