"""HiARM: hierarchical autoregressive generator of sparse/dense tokens (paper §4.2, Eq. 7-12, Algorithm 1).

Sequence: position 0 is the SOS token g^0 = P_c(x_s); position k (1..16) is g^k = LSAB(pair k), the mean of
one bidirectional block over the part's sparse embedding and its r dense embeddings. GCSAB (causal) gives h^k,
and the prediction head PH turns h^k into pair k+1: the sparse token first, then the r dense tokens in parallel
conditioned on that sparse token (sparse-to-dense). Pairs are generated center-to-periphery.

Algorithm 1 iterates i = 0..J_s over 17 sequence positions; its last iteration would predict a 17th pair that
does not exist, so decoding runs the 16 steps that produce pairs 1..16. The KV cache keeps all 17 slots.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hipart import skeleton
from hipart.models.blocks import CacheWrite, TransformerBlock, write_in_place
from hipart.models.config import GeneratorConfig, TokenizerConfig


class KVCache(nn.Module):
    """Static key/value buffers [layers, B, heads, max_len, head_dim] plus per-step attention masks."""

    def __init__(self, layers: int, batch: int, heads: int, max_len: int, head_dim: int, device=None, dtype=None):
        super().__init__()
        shape = (layers, batch, heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        steps = torch.arange(max_len, device=device)
        # step_mask[i] = slots 0..i may be attended, shaped to broadcast over [B, H, 1, max_len].
        self.register_buffer("step_mask", (steps[None, :] <= steps[:, None])[:, None, None, None, :], persistent=False)

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    def reset(self) -> None:
        """Zero the buffers so stale entries of an earlier call can never leak (they are masked anyway)."""
        self.k.zero_()
        self.v.zero_()


class HiARM(nn.Module):
    """Pose-conditioned generator of hierarchical tokens (LSAB -> GCSAB -> PH)."""

    def __init__(self, cfg: GeneratorConfig | None = None, tok_cfg: TokenizerConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or GeneratorConfig()
        self.tok_config = tc = tok_cfg or TokenizerConfig()
        self.num_parts, self.r = tc.num_sparse, tc.tokens_per_part
        self.max_len = self.num_parts + 1  # SOS + one position per part
        d, cd = cfg.dim, tc.codebook_dim
        order = skeleton.generation_order(cfg.order) if self.num_parts == skeleton.NUM_BONES else None
        if order is None:
            order = tuple(range(self.num_parts))
        self.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)
        self.register_buffer("inv_order", torch.argsort(self.order), persistent=False)
        # Frozen codebooks of the tokenizer (copied in by HiPART / the stage-2 trainer).
        self.register_buffer("codebook_s", torch.zeros(tc.sparse_codebook_size, cd))
        self.register_buffer("codebook_d", torch.zeros(tc.dense_codebook_size, cd))

        self.sos = nn.Linear(skeleton.NUM_JOINTS * 2, d)  # P_c: projection of the sparse 2D pose
        self.embed_s = nn.Linear(cd, d)
        self.embed_d = nn.Linear(cd, d)
        self.part_emb = nn.Parameter(torch.randn(self.num_parts, d) * 0.02)
        self.level_emb = nn.Parameter(torch.randn(1 + self.r, d) * 0.02)
        self.pos_emb = nn.Parameter(torch.randn(self.max_len, d) * 0.02)
        self.query_emb = nn.Parameter(torch.randn(self.max_len, d) * 0.02)  # classification mode only
        self.slot_emb = nn.Parameter(torch.randn(1 + self.r, d) * 0.02)
        self.drop = nn.Dropout(cfg.dropout)

        def blocks(n: int) -> nn.ModuleList:
            return nn.ModuleList(TransformerBlock(d, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(n))

        self.lsab = blocks(cfg.lsab_blocks)
        self.gcsab = blocks(cfg.gcsab_blocks)
        self.gcsab_norm = nn.LayerNorm(d)
        self.ph = blocks(cfg.head_blocks)
        self.ph_norm = nn.LayerNorm(d)
        self.head_s = nn.Linear(d, tc.sparse_codebook_size)
        self.head_d = nn.Linear(d, tc.dense_codebook_size)

        n = self.max_len
        self.register_buffer("causal_mask", torch.ones(n, n, dtype=torch.bool).tril(), persistent=False)
        m = torch.ones(1 + self.r, 1 + self.r, dtype=torch.bool)
        if cfg.mode == "classification":
            head_mask = m  # no token is known: every slot may see every slot
        elif cfg.sparse_to_dense:
            head_mask = m.clone()
            head_mask[0, 1:] = False  # the sparse slot sees only h; dense slots see h and each other
        else:
            head_mask = m.tril()  # sparse, then dense 1..r one after another
        self.register_buffer("head_mask", head_mask, persistent=False)
        self.cache: KVCache | None = None

    # -- pieces ----------------------------------------------------------------------------------------------
    def set_codebooks(self, codebook_s: torch.Tensor, codebook_d: torch.Tensor) -> None:
        """Copy the tokenizer's (frozen) codebooks in."""
        self.codebook_s.copy_(codebook_s)
        self.codebook_d.copy_(codebook_d)

    def embed_sos(self, x_s: torch.Tensor) -> torch.Tensor:
        """g^0 = P_c(x_s): [B, 17, 2] -> [B, D]."""
        return self.sos(x_s.reshape(x_s.shape[0], -1))

    def embed_pairs(self, q_s: torch.Tensor, q_d: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        """LSAB over pairs: q_s [B, n], q_d [B, n, r], part ids [n] -> g [B, n, D] (mean of the refined 1+r)."""
        b, n = q_s.shape
        es = self.embed_s(F.embedding(q_s, self.codebook_s))[:, :, None]  # [B, n, 1, D]
        ed = self.embed_d(F.embedding(q_d, self.codebook_d))  # [B, n, r, D]
        x = torch.cat([es, ed], 2) + self.level_emb + self.part_emb[parts][None, :, None]
        x = x.reshape(b * n, 1 + self.r, x.shape[-1])
        for blk in self.lsab:
            x = blk(x)
        return x.mean(1).reshape(b, n, x.shape[-1])

    def run_gcsab(self, seq: torch.Tensor, causal: bool = True) -> torch.Tensor:
        """GCSAB over a whole sequence [B, T, D] (positional embeddings already added) -> h [B, T, D]."""
        t = seq.shape[1]
        mask = self.causal_mask[:t, :t] if causal else None
        x = self.drop(seq)
        for blk in self.gcsab:
            x = blk(x, mask)
        return self.gcsab_norm(x)

    def run_head(
        self, h: torch.Tensor, parts: torch.Tensor, q_s: torch.Tensor | None, q_d: torch.Tensor | None, length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """PH over h [B, n, D] predicting pairs of `parts` [n]; slots 1..length-1 conditioned on q_s / q_d.

        Returns (sparse logits [B, n, Ks], dense logits [B, n, length - 1, Kd]).
        """
        b, n, d = h.shape
        tp = self.part_emb[parts][None, :, None]  # which part is being predicted
        slots = [h[:, :, None]]
        if length > 1:
            if self.config.mode == "classification":
                slots.append(h.new_zeros(b, n, length - 1, d))
            else:
                slots.append(self.embed_s(F.embedding(q_s, self.codebook_s))[:, :, None].expand(b, n, 1, d))
                if self.config.sparse_to_dense:
                    slots[-1] = slots[-1].expand(b, n, length - 1, d)
                elif length > 2:
                    slots.append(self.embed_d(F.embedding(q_d[:, :, : length - 2], self.codebook_d)))
        x = (torch.cat(slots, 2) + tp + self.slot_emb[:length]).reshape(b * n, length, d)
        mask = self.head_mask[:length, :length]
        for blk in self.ph:
            x = blk(x, mask)
        x = self.ph_norm(x).reshape(b, n, length, d)
        return self.head_s(x[:, :, 0]), self.head_d(x[:, :, 1:])

    # -- training ------------------------------------------------------------------------------------------
    def forward(self, x_s: torch.Tensor, q_s: torch.Tensor, q_d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits in canonical part order: (logits_s [B, 16, Ks], logits_d [B, 48, Kd])."""
        b, p, r = x_s.shape[0], self.num_parts, self.r
        order = self.order
        qs_o, qd_o = q_s[:, order], q_d.reshape(b, p, r)[:, order]
        g0 = self.embed_sos(x_s)[:, None]
        if self.config.mode == "classification":
            seq = torch.cat([g0, self.query_emb[1:p][None].expand(b, -1, -1)], 1) + self.pos_emb[:p]
            h = self.run_gcsab(seq, causal=False)
        else:
            g = self.embed_pairs(qs_o[:, : p - 1], qd_o[:, : p - 1], order[: p - 1])
            h = self.run_gcsab(torch.cat([g0, g], 1) + self.pos_emb[:p])
        ls, ld = self.run_head(h, order, qs_o, qd_o, 1 + r)
        ls, ld = ls[:, self.inv_order], ld[:, self.inv_order]
        return ls, ld.reshape(b, p * r, -1)

    def loss(
        self, logits_s: torch.Tensor, logits_d: torch.Tensor, q_s: torch.Tensor, q_d: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Eq. 12: CE(sparse) + lambda_d * CE(dense), with token accuracies."""
        ce_s = F.cross_entropy(logits_s.flatten(0, 1), q_s.flatten())
        ce_d = F.cross_entropy(logits_d.flatten(0, 1), q_d.flatten())
        return {
            "loss": ce_s + self.config.lambda_dense * ce_d,
            "ce_sparse": ce_s,
            "ce_dense": ce_d,
            "acc_sparse": (logits_s.argmax(-1) == q_s).float().mean(),
            "acc_dense": (logits_d.argmax(-1) == q_d).float().mean(),
        }

    # -- inference (Algorithm 1) ---------------------------------------------------------------------------
    def setup_cache(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> KVCache:
        """Allocate (once per batch size/device/dtype) the static KV cache for GCSAB."""
        device = device or self.pos_emb.device
        dtype = dtype or self.pos_emb.dtype
        c = self.cache
        if c is None or c.batch != batch or c.k.device != device or c.k.dtype != dtype:
            cfg = self.config
            self.cache = c = KVCache(
                cfg.gcsab_blocks, batch, cfg.heads, self.max_len, cfg.dim // cfg.heads, device, dtype
            )
        return c

    def decode_step(
        self,
        x: torch.Tensor,
        part: torch.Tensor,
        caches_k: Sequence[torch.Tensor],
        caches_v: Sequence[torch.Tensor],
        write: CacheWrite,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """THE decode step (Algorithm 1, lines 3-9), shared by `generate` and every export graph.

        x [B, 1, D]: this position's input (`sos_input` or `pair_input`); caches_k/v: per GCSAB layer [B, H, T, hd];
        `write(cache, new)` stores the new K/V (in place for eager decode, as a new value in export graphs);
        mask: slots this position may attend. -> (q_s [B], q_d [B, r], logits_s, logits_d, caches_k, caches_v).
        """
        ks, vs = [], []
        for layer, blk in enumerate(self.gcsab):
            x, k, v = blk.forward_step(x, caches_k[layer], caches_v[layer], write, mask)
            ks.append(k)
            vs.append(v)
        q_s, q_d, ls, ld = self.predict_pair(self.gcsab_norm(x)[:, 0], part)
        return q_s, q_d, ls, ld, ks, vs

    def sos_input(self, x_s: torch.Tensor) -> torch.Tensor:
        """Input of position 0: the SOS embedding of x_s [B, 17, 2] -> [B, 1, D]."""
        return (self.embed_sos(x_s) + self.pos_emb[0])[:, None]

    def pair_input(
        self, q_s: torch.Tensor, q_d: torch.Tensor, part: torch.Tensor, pos: torch.Tensor | int
    ) -> torch.Tensor:
        """Input of position `pos`: the pair (q_s [B], q_d [B, r]) of `part` decoded at pos - 1 -> [B, 1, D]."""
        return self.embed_pairs(q_s[:, None], q_d[:, None], part.reshape(1)) + self.pos_emb[pos]

    def decode_tokens(
        self, x_s: torch.Tensor, caches_k: Sequence[torch.Tensor], caches_v: Sequence[torch.Tensor],
        write_at: Callable[[int], CacheWrite], mask_at: Callable[[int], torch.Tensor], return_logits: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """The greedy loop over `decode_step`: (q_s [B, 16], q_d [B, 48]) in canonical part order [+ logits].

        `write_at(i)` / `mask_at(i)` give the cache write and mask of position i, so one loop serves the eager
        decode (static buffers written in place) and the unrolled export graph (caches as values)."""
        b, p, r = x_s.shape[0], self.num_parts, self.r
        x = self.sos_input(x_s)
        qs, qd, ls_o, ld_o = [], [], [], []
        ks, vs = list(caches_k), list(caches_v)
        for i in range(p):
            part = self.order[i]
            q_s, q_d, ls, ld, ks, vs = self.decode_step(x, part, ks, vs, write_at(i), mask_at(i))
            qs.append(q_s)
            qd.append(q_d)
            if return_logits:
                ls_o.append(ls)
                ld_o.append(ld)
            if i + 1 < p:
                x = self.pair_input(q_s, q_d, part, i + 1)
        q_s = torch.stack(qs, 1)[:, self.inv_order]
        q_d = torch.stack(qd, 1)[:, self.inv_order].reshape(b, p * r)
        if not return_logits:
            return q_s, q_d
        logits_s = torch.stack(ls_o, 1)[:, self.inv_order]
        logits_d = torch.stack(ld_o, 1)[:, self.inv_order].reshape(b, p * r, -1)
        return q_s, q_d, logits_s, logits_d

    def predict_pair(self, h: torch.Tensor, part: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Greedy pair from h [B, D]: (q_s [B], q_d [B, r], logits_s [B, Ks], logits_d [B, r, Kd])."""
        h = h[:, None]
        parts = part.reshape(1)
        ls, _ = self.run_head(h, parts, None, None, 1)
        q_s = ls.argmax(-1)  # [B, 1]
        if self.config.sparse_to_dense:
            _, ld = self.run_head(h, parts, q_s, None, 1 + self.r)
            q_d = ld.argmax(-1)
        else:  # 1 + r head passes: each dense token conditioned on the sparse one and the dense ones before it
            q_d = q_s.new_zeros(q_s.shape[0], 1, self.r)
            for j in range(1, self.r + 1):
                _, ld = self.run_head(h, parts, q_s, q_d, 1 + j)
                q_d[:, :, j - 1] = ld[:, :, j - 1].argmax(-1)
        return q_s[:, 0], q_d[:, 0], ls[:, 0], ld[:, 0]

    @torch.no_grad()
    def generate(
        self, x_s: torch.Tensor, use_cache: bool = True, return_logits: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """Greedy decode (Algorithm 1): x_s [B, 17, 2] -> (q_s [B, 16], q_d [B, 48]) [+ logits if asked]."""
        b, p, r = x_s.shape[0], self.num_parts, self.r
        if self.config.mode == "classification":
            z = torch.zeros(b, p, dtype=torch.long, device=x_s.device)
            ls, ld = self.forward(x_s, z, z.repeat(1, r))  # one parallel pass; no token is fed back
            out = (ls.argmax(-1), ld.argmax(-1))
            return out + (ls, ld) if return_logits else out
        if use_cache:
            cache = self.setup_cache(b, x_s.device, x_s.dtype)
            cache.reset()
            return self.decode_tokens(
                x_s, cache.k, cache.v, write_in_place, lambda i: cache.step_mask[i], return_logits
            )
        # reference: rebuild the whole prefix (embeddings + GCSAB) every step, no cache
        qs_o = torch.zeros(b, p, dtype=torch.long, device=x_s.device)
        qd_o = torch.zeros(b, p, r, dtype=torch.long, device=x_s.device)
        ls_o, ld_o = [], []
        g0 = self.embed_sos(x_s)
        for i in range(p):
            g = self.embed_pairs(qs_o[:, :i], qd_o[:, :i], self.order[:i])
            h = self.run_gcsab(torch.cat([g0[:, None], g], 1) + self.pos_emb[: i + 1])[:, -1]
            q_s, q_d, ls, ld = self.predict_pair(h, self.order[i])
            qs_o[:, i], qd_o[:, i] = q_s, q_d
            ls_o.append(ls)
            ld_o.append(ld)
        q_s, q_d = qs_o[:, self.inv_order], qd_o[:, self.inv_order].reshape(b, p * r)
        if not return_logits:
            return q_s, q_d
        logits_s = torch.stack(ls_o, 1)[:, self.inv_order]
        logits_d = torch.stack(ld_o, 1)[:, self.inv_order].reshape(b, p * r, -1)
        return q_s, q_d, logits_s, logits_d
