"""Vector quantiser with EMA codebook updates, dead-code re-initialisation and usage statistics."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

NearestFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z [N, D], codebook [K, D]) -> idx [N]
_fused: dict[str, NearestFn] = {}  # device type -> a fused nearest-code kernel (kernels.codebook_nn.install)


def set_nearest_kernel(device_type: str, fn: NearestFn | None) -> None:
    """Route nearest_code for tensors on `device_type` ('cuda') to `fn` (None: back to the torch math).

    The hook through which the fused Triton / AOT kernel of `kernels/` serves the model's quantisers (training,
    token accuracy) without hipart importing kernels: the layer above installs it (`kernels.codebook_nn.install`)."""
    if fn is None:
        _fused.pop(device_type, None)
    else:
        _fused[device_type] = fn


def nearest_code(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest code (squared L2) for each row of z [N, D]; ties go to the lowest index."""
    if torch.isnan(z).any():
        bad = torch.isnan(z).any(dim=1).nonzero().flatten()[:8].tolist()
        raise ValueError(f"NaN in quantiser input rows {bad} (of {z.shape[0]}); refusing to map them to a code")
    fused = _fused.get(z.device.type)
    if fused is not None and z.dtype == codebook.dtype:
        return fused(z, codebook)
    dist = (z * z).sum(1, keepdim=True) - 2 * z @ codebook.t() + (codebook * codebook).sum(1)[None, :]
    return dist.argmin(dim=1)


class VectorQuantizer(nn.Module):
    """Codebook [K, D] updated by exponential moving average (no gradient reaches the codebook)."""

    def __init__(self, num_codes: int, dim: int, decay: float = 0.99, eps: float = 1e-5, dead_threshold: float = 0.5):
        super().__init__()
        self.num_codes, self.dim = num_codes, dim
        self.decay, self.eps, self.dead_threshold = decay, eps, dead_threshold
        self.register_buffer("codebook", torch.randn(num_codes, dim) / dim**0.5)
        self.register_buffer("ema_count", torch.ones(num_codes))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Token ids [...] for embeddings z [..., D]."""
        return nearest_code(z.reshape(-1, self.dim), self.codebook).view(z.shape[:-1])

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Code vectors [..., D] for token ids [...]."""
        return F.embedding(idx, self.codebook)

    @torch.no_grad()
    def init_from(self, z: torch.Tensor) -> None:
        """Initialise the codebook from encoder outputs (random rows, jittered if fewer rows than codes)."""
        flat = z.reshape(-1, self.dim).float()
        reps = -(-self.num_codes // flat.shape[0])
        pool = flat.repeat(reps, 1)
        pool = pool[torch.randperm(pool.shape[0], device=pool.device)[: self.num_codes]]
        if reps > 1:
            pool = pool + 0.01 * pool.std() * torch.randn_like(pool)
        self.codebook.copy_(pool)
        self.ema_sum.copy_(pool)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def ema_update(self, z: torch.Tensor, idx: torch.Tensor) -> None:
        """EMA step: counts and sums of assigned vectors, Laplace-smoothed, then codebook = sum / count."""
        flat, idx = z.reshape(-1, self.dim).float(), idx.reshape(-1)
        counts = torch.bincount(idx, minlength=self.num_codes).type_as(flat)
        sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, flat)  # sum of the vectors assigned to each code
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n
        self.codebook.copy_(self.ema_sum / smoothed[:, None])

    @torch.no_grad()
    def reinit_dead_codes(self, z: torch.Tensor) -> int:
        """Replace codes whose EMA usage fell below the threshold by random current encoder outputs."""
        dead = (self.ema_count < self.dead_threshold).nonzero().flatten()
        if dead.numel() == 0:
            return 0
        flat = z.reshape(-1, self.dim).float()
        pick = flat[torch.randint(0, flat.shape[0], (dead.numel(),), device=flat.device)]
        self.codebook[dead] = pick
        self.ema_sum[dead] = pick
        self.ema_count[dead] = 1.0
        return int(dead.numel())

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Quantise z [B, J, D] -> (straight-through codes, ids [B, J], losses/statistics)."""
        if self.training and not bool(self.initialized):
            self.init_from(z.detach())
        idx = self.nearest(z.detach())
        zq = self.lookup(idx)
        stats: dict[str, torch.Tensor] = {
            # Eq. 6: ||sg(z) - z_q||^2 (moves codes; here done by EMA, logged) and beta * ||z - sg(z_q)||^2.
            "codebook": (zq - z.detach()).pow(2).flatten(1).sum(1).mean(),
            "commit": (z - zq.detach()).pow(2).flatten(1).sum(1).mean(),
            "perplexity": self.perplexity(idx),
        }
        if self.training:
            self.ema_update(z.detach(), idx)
            stats["reinit"] = torch.tensor(float(self.reinit_dead_codes(z.detach())))
        zq_st = z + (zq - z).detach()  # straight-through estimator
        return zq_st, idx, stats

    def perplexity(self, idx: torch.Tensor) -> torch.Tensor:
        """exp(entropy) of the code histogram of a batch: how many codes are effectively in use."""
        p = torch.bincount(idx.reshape(-1), minlength=self.num_codes).float()
        p = p / p.sum().clamp_min(1)
        return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())

    def usage(self) -> float:
        """Fraction of codes whose EMA usage is above the dead-code threshold."""
        return float((self.ema_count >= self.dead_threshold).float().mean())
