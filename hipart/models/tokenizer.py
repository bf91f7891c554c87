"""MSST: multi-scale skeletal tokenizer (paper §4.1, Eq. 1-6).

x_f [B,96,2] --E_f--> z_d [B,48,D] --E_d--> z_s [B,16,D] --Q(C_s)--> q_s, ẑ_s
concat(D_s(ẑ_s), z_d) --Q(C_d)--> q_d, ẑ_d;   D_d(ẑ_s) -> x̂_d [B,48,2];   D_f(D_s(ẑ_s), ẑ_d) -> x̂_f [B,96,2]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hipart.models.blocks import MixerBlock, joint_projection
from hipart.models.config import TokenizerConfig
from hipart.models.quantizer import VectorQuantizer


class MixerEncoder(nn.Module):
    """Linear embedding, L MLP-Mixer blocks over J_in joints, then a projection along joints to J_out."""

    def __init__(self, j_in: int, j_out: int, in_dim: int, dim: int, out_dim: int, blocks: int, tok_h: int, ch_h: int):
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(MixerBlock(j_in, dim, tok_h, ch_h) for _ in range(blocks))
        self.norm = nn.LayerNorm(dim)
        self.joint_proj = nn.Linear(j_in, j_out)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for blk in self.blocks:
            h = blk(h)
        return self.out(joint_projection(self.norm(h), self.joint_proj))


class MixerDecoder(nn.Module):
    """Projection along joints J_in -> J_out, MLP-Mixer blocks, then a linear head to out_dim."""

    def __init__(self, j_in: int, j_out: int, in_dim: int, dim: int, out_dim: int, blocks: int, tok_h: int, ch_h: int):
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.joint_proj = nn.Linear(j_in, j_out)
        self.blocks = nn.ModuleList(MixerBlock(j_out, dim, tok_h, ch_h) for _ in range(blocks))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = joint_projection(self.embed(x), self.joint_proj)
        for blk in self.blocks:
            h = blk(h)
        return self.out(self.norm(h))


def sq_norm(x: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm of each sample's tensor [B, ...], averaged over the batch."""
    return x.pow(2).flatten(1).sum(1).mean()


def local_alignment_loss(zs: torch.Tensor, zd: torch.Tensor, tau: float) -> torch.Tensor:
    """Part-wise InfoNCE (Eq. 3): sparse token i vs the mean of its r dense tokens, other parts negative.

    zs [B, Js, D], zd [B, Jd, D] with dense tokens r*i .. r*i + r - 1 owned by part i. Embeddings are
    L2-normalised (cosine similarity), the usual reading of InfoNCE with tau = 0.07. Summed over parts
    as in Eq. 3, averaged over the batch.
    """
    b, js, d = zs.shape
    part_mean = zd.reshape(b, js, -1, d).mean(2)
    s = F.normalize(zs, dim=-1)
    p = F.normalize(part_mean, dim=-1)
    logits = s @ p.transpose(1, 2) / tau  # [B, Js, Js]
    target = torch.arange(js, device=zs.device).expand(b, js)
    return F.cross_entropy(logits.reshape(b * js, js), target.reshape(-1), reduction="sum") / b


class ActionProjector(nn.Module):
    """P_A (Eq. 4): two MLP-Mixer blocks over concat(ẑ_s, ẑ_d), mean-pooled, then action logits."""

    def __init__(self, num_tokens: int, dim: int, num_actions: int, tok_h: int, ch_h: int):
        super().__init__()
        self.blocks = nn.Sequential(*(MixerBlock(num_tokens, dim, tok_h, ch_h) for _ in range(2)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_actions)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(tokens)).mean(1))


class MSSTokenizer(nn.Module):
    """Hierarchical VQ tokenizer: fine 2D pose -> sparse tokens q_s [B,16] and dense tokens q_d [B,48]."""

    def __init__(self, cfg: TokenizerConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or TokenizerConfig()
        d, cd = cfg.enc_dim, cfg.codebook_dim
        th, ch = cfg.enc_token_hidden, cfg.enc_channel_hidden
        self.enc_fine = MixerEncoder(cfg.num_fine, cfg.num_dense, 2, d, cd, cfg.enc_blocks, th, ch)  # E_f
        self.enc_dense = MixerEncoder(cfg.num_dense, cfg.num_sparse, cd, d, cd, cfg.enc_blocks, th, ch)  # E_d
        self.sparse_quantizer = VectorQuantizer(
            cfg.sparse_codebook_size, cd, cfg.ema_decay, cfg.ema_eps, cfg.dead_code_threshold
        )
        self.dense_quantizer = (
            self.sparse_quantizer
            if cfg.shared_codebook
            else VectorQuantizer(cfg.dense_codebook_size, cd, cfg.ema_decay, cfg.ema_eps, cfg.dead_code_threshold)
        )
        # D_s: upsample quantised sparse embeddings to the dense level (one mixer block at codebook dim).
        self.up_sparse = MixerDecoder(cfg.num_sparse, cfg.num_dense, cd, cd, cd, 1, th, ch)
        self.dense_fuse = nn.Linear(2 * cd, cd)  # concat(D_s(ẑ_s), z_d) -> codebook dim
        dd = cfg.dec_dim
        self.dec_dense = MixerDecoder(cfg.num_sparse, cfg.num_dense, cd, dd, 2, cfg.dec_blocks, th, 2 * dd)  # D_d
        self.dec_fine = MixerDecoder(cfg.num_dense, cfg.num_fine, 2 * cd, dd, 2, cfg.dec_blocks, th, 2 * dd)  # D_f
        n_tok = cfg.num_sparse + cfg.num_dense
        self.action_proj = ActionProjector(n_tok, cd, cfg.num_actions, th, ch) if cfg.global_alignment else None

    # -- inference API -------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fine 2D pose [B, 96, 2] -> (q_s [B, 16], q_d [B, 48]) token ids."""
        z_d = self.enc_fine(x_f)
        q_s = self.sparse_quantizer.nearest(self.enc_dense(z_d))
        zq_s = self.sparse_quantizer.lookup(q_s)
        q_d = self.dense_quantizer.nearest(self.dense_fuse(torch.cat([self.up_sparse(zq_s), z_d], -1)))
        return q_s, q_d

    def decode(self, q_s: torch.Tensor, q_d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids -> (dense 2D pose [B, 48, 2], fine 2D pose [B, 96, 2])."""
        return self.decode_embeddings(self.sparse_quantizer.lookup(q_s), self.dense_quantizer.lookup(q_d))

    def decode_embeddings(self, zq_s: torch.Tensor, zq_d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantised embeddings ẑ_s [B,16,D], ẑ_d [B,48,D] -> (x̂_d, x̂_f)."""
        x_d = self.dec_dense(zq_s)
        x_f = self.dec_fine(torch.cat([self.up_sparse(zq_s), zq_d], -1))
        return x_d, x_f

    # -- training forward (Eq. 6) --------------------------------------------------------------------------
    def forward(
        self, x_f: torch.Tensor, x_d: torch.Tensor | None = None, action: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Tokenise and reconstruct; returns reconstructions, token ids, the total loss and its terms."""
        cfg = self.config
        z_d = self.enc_fine(x_f)
        z_s = self.enc_dense(z_d)
        zq_s, q_s, st_s = self.sparse_quantizer(z_s)
        z_d_fused = self.dense_fuse(torch.cat([self.up_sparse(zq_s), z_d], -1))
        zq_d, q_d, st_d = self.dense_quantizer(z_d_fused)
        x_d_hat, x_f_hat = self.decode_embeddings(zq_s, zq_d)

        out: dict[str, torch.Tensor] = {"x_d": x_d_hat, "x_f": x_f_hat, "q_s": q_s, "q_d": q_d}
        # Eq. 6 as written: squared L2 norms of whole poses / token sets, averaged over the batch.
        out["loss_rec_fine"] = sq_norm(x_f_hat - x_f)
        out["loss_rec_dense"] = sq_norm(x_d_hat - x_d) if x_d is not None else x_f.new_zeros(())
        out["loss_codebook"] = st_s["codebook"] + st_d["codebook"]  # EMA moves the codes; logged only
        out["loss_commit"] = cfg.beta * (st_s["commit"] + st_d["commit"])
        loss = out["loss_rec_fine"] + out["loss_rec_dense"] + out["loss_commit"]
        if cfg.local_alignment:
            out["loss_local"] = local_alignment_loss(zq_s, zq_d, cfg.tau)
            loss = loss + cfg.lambda_local * out["loss_local"]
        if self.action_proj is not None and action is not None:
            logits = self.action_proj(torch.cat([zq_s, zq_d], 1))
            out["loss_global"] = F.cross_entropy(logits, action)
            out["action_acc"] = (logits.argmax(-1) == action).float().mean()
            loss = loss + cfg.lambda_global * out["loss_global"]
        out["loss"] = loss
        out["perplexity_sparse"] = st_s["perplexity"]
        out["perplexity_dense"] = st_d["perplexity"]
        return out

    def codebook_report(self) -> dict[str, float]:
        """Codebook usage (fraction of live codes) for both levels."""
        return {"usage_sparse": self.sparse_quantizer.usage(), "usage_dense": self.dense_quantizer.usage()}
