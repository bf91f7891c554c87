"""The 17-position HiARM decode (Algorithm 1) on the fused kernels, with static buffers and one CUDA graph.

Same shape as gpt-fast's generate.py: a static KV cache allocated once, `decode_one_step` (one sequence
position: 12 GCSAB blocks with the fused cached-attention kernel, then the prediction head with the fused
argmax + gather kernel, then the LSAB embedding of the new pair), and `decode` (the loop). On CUDA the whole
loop -- 16 steps x (12 blocks + head + embedding) -- is captured once into a CUDA graph and replayed, so a
batch-1 decode is one graph launch instead of ~1,000 kernel launches.

What runs where, per step i (position i, predicting the pair of part order[i]):
  GCSAB block l:  LN1 + qkv Linear (torch)  ->  decode_attention kernel (writes k/v into slot i of the static
                  cache, attends over slots 0..i for all heads, output projection + residual)  ->  LN2 + MLP
  PH, sparse:     PH blocks over [h] (torch)  ->  head_argmax kernel (head_s logits -> argmax -> codebook_s row)
  PH, dense:      PH blocks over [h, e_s x r] (torch)  ->  head_argmax kernel on the r slots (codebook_d rows)
  next input:     LSAB over the new pair's 1 + r embeddings, mean, + pos_emb[i + 1] (torch)
The weights are the HiARM module's own (no copies, so a reloaded checkpoint is picked up on the next call
that rebuilds the graph). Tokens equal HiARM.generate(x_s, use_cache=True) exactly: the kernels differ from
PyTorch only in floating-point summation order, which changes an argmax only at an exact-to-rounding tie of
two logits (tests/kernels/test_decode_driver.py checks token equality over many seeds).

Supported: the paper's inference path (mode="autoregressive", sparse_to_dense=True), eval mode (no dropout),
float32. Other configurations raise NotImplementedError; use HiARM.generate for them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.decode_attention import decode_attention
from kernels.head_argmax import head_argmax
from kernels.triton_support import raise_on_invalid


class TritonDecoder:
    """Greedy cached HiARM decode on the Triton kernels; `decoder(x_s) -> (q_s [B, 16], q_d [B, 48])`."""

    def __init__(self, model, batch: int, *, use_graph: bool | None = None):
        cfg = model.config
        if cfg.mode != "autoregressive" or not cfg.sparse_to_dense:
            raise NotImplementedError(
                "TritonDecoder implements mode='autoregressive' with sparse_to_dense=True; "
                f"got mode={cfg.mode!r}, sparse_to_dense={cfg.sparse_to_dense}"
            )
        if model.training:
            raise ValueError("TritonDecoder decodes for inference: call model.eval() first (dropout must be off)")
        self.model = model
        self.batch = batch
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        if self.dtype != torch.float32:
            raise NotImplementedError(f"TritonDecoder runs float32 weights, got {self.dtype}")
        self.use_graph = (self.device.type == "cuda") if use_graph is None else use_graph
        if self.use_graph and self.device.type != "cuda":
            raise ValueError("CUDA-graph capture needs the model on a CUDA device")
        self.num_parts, self.r = model.num_parts, model.r
        self.heads, self.head_dim = cfg.heads, cfg.dim // cfg.heads
        self.graph: torch.cuda.CUDAGraph | None = None
        self.setup_buffers()

    # -- static state ---------------------------------------------------------------------------------------
    def setup_buffers(self) -> None:
        """Allocate every buffer the decode touches once (static addresses for the CUDA graph)."""
        m, b, dev = self.model, self.batch, self.device
        layers = len(m.gcsab)
        shape = (layers, b, self.heads, m.max_len, self.head_dim)  # documented cache layout (docs/KERNELS.md)
        self.cache_k = torch.zeros(shape, device=dev, dtype=self.dtype)
        self.cache_v = torch.zeros(shape, device=dev, dtype=self.dtype)
        self.x_s = torch.zeros(b, m.sos.in_features // 2, 2, device=dev, dtype=self.dtype)
        self.q_s = torch.zeros(b, self.num_parts, dtype=torch.long, device=dev)  # generation order
        self.q_d = torch.zeros(b, self.num_parts, self.r, dtype=torch.long, device=dev)
        self.order = [int(o) for o in m.order.tolist()]
        self.inv_order = m.inv_order.clone()

    # -- one sequence position (Algorithm 1, lines 3-9) -----------------------------------------------------
    def gcsab_step(self, x: torch.Tensor, pos: int) -> torch.Tensor:
        """x [B, D] at position `pos` through the causal blocks with the fused cached-attention kernel."""
        for layer, blk in enumerate(self.model.gcsab):
            a = blk.attn
            qkv = F.linear(blk.norm1(x), a.qkv.weight, a.qkv.bias)
            x = decode_attention(
                qkv,
                self.cache_k[layer],
                self.cache_v[layer],
                pos,
                a.proj.weight,
                a.proj.bias,
                residual=x,
                scale=a.scale,
            )
            x = x + blk.mlp(blk.norm2(x))
        return self.model.gcsab_norm(x)

    def predict_pair(self, h: torch.Tensor, part: int) -> tuple[torch.Tensor, ...]:
        """PH: sparse token, then the r dense tokens conditioned on it; returns ids and their codebook rows."""
        m, b, r = self.model, h.shape[0], self.r
        tp = m.part_emb[part]
        x = (h + tp + m.slot_emb[0])[:, None]  # [B, 1, D]: the sparse slot alone
        for blk in m.ph:
            x = blk(x, m.head_mask[:1, :1])
        q_s, code_s = head_argmax(m.ph_norm(x[:, 0]), m.head_s.weight, m.head_s.bias, m.codebook_s, on_nan="mark")
        e_s = m.embed_s(code_s)  # [B, D]
        x = torch.cat([h[:, None], e_s[:, None].expand(b, r, -1)], 1) + tp + m.slot_emb[: 1 + r]
        for blk in m.ph:
            x = blk(x, m.head_mask[: 1 + r, : 1 + r])
        hd = m.ph_norm(x[:, 1:]).reshape(b * r, -1)
        q_d, code_d = head_argmax(hd, m.head_d.weight, m.head_d.bias, m.codebook_d, on_nan="mark")
        return q_s, q_d.view(b, r), e_s, code_d.view(b, r, -1)

    def embed_pair(self, e_s: torch.Tensor, code_d: torch.Tensor, part: int, next_pos: int) -> torch.Tensor:
        """LSAB over the pair just generated -> the next GCSAB input [B, D] (HiARM.embed_pairs, one pair)."""
        m = self.model
        x = torch.cat([e_s[:, None], m.embed_d(code_d)], 1) + m.level_emb + m.part_emb[part]
        for blk in m.lsab:
            x = blk(x)
        return x.mean(1) + m.pos_emb[next_pos]

    def decode_one_step(self, x: torch.Tensor, i: int) -> torch.Tensor | None:
        part = self.order[i]
        h = self.gcsab_step(x, i)
        q_s, q_d, e_s, code_d = self.predict_pair(h, part)
        self.q_s[:, i].copy_(q_s)
        self.q_d[:, i].copy_(q_d)
        if i + 1 < self.num_parts:
            return self.embed_pair(e_s, code_d, part, i + 1)
        return None

    def decode(self) -> None:
        """All positions from the static x_s buffer into the static token buffers (what the graph captures)."""
        m = self.model
        x = m.embed_sos(self.x_s) + m.pos_emb[0]
        for i in range(self.num_parts):
            x = self.decode_one_step(x, i)

    # -- CUDA graph -----------------------------------------------------------------------------------------
    def capture(self) -> None:
        """Warm up (Triton JIT, cuBLAS handles) on a side stream, then capture `decode` as one CUDA graph."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.no_grad(), torch.cuda.stream(stream):
            for _ in range(2):
                self.decode()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            self.decode()
        self.graph = graph

    @torch.no_grad()
    def __call__(self, x_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x_s [B, 17, 2] -> (q_s [B, 16], q_d [B, 48]) in canonical part order, like HiARM.generate."""
        if x_s.shape != self.x_s.shape:
            raise ValueError(f"decoder was built for x_s {tuple(self.x_s.shape)}, got {tuple(x_s.shape)}")
        self.x_s.copy_(x_s)
        if self.use_graph:
            if self.graph is None:
                self.capture()
            self.graph.replay()
        else:
            self.decode()
        tokens = torch.cat([self.q_s, self.q_d.flatten(1)], 1)
        raise_on_invalid("TritonDecoder (non-finite head input)", tokens.flatten())
        q_s = self.q_s[:, self.inv_order]
        q_d = self.q_d[:, self.inv_order].reshape(self.batch, self.num_parts * self.r)
        return q_s, q_d


def reference_decode(model, x_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The PyTorch cached decode the driver must reproduce token for token (HiARM.generate)."""
    return model.generate(x_s, use_cache=True)
