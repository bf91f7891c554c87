"""H2OT Token Pruning Module: pick r representative frame tokens out of n (TPC, TPA, TPMo, TPS).

Every strategy returns frame indices [B, r] sorted in time, so the kept tokens stay in temporal order
(TRI needs it; the temporal blocks see an ordered, shorter sequence). Scores are computed without
gradients: the selection is a hard top-k, as in the paper.
"""

from __future__ import annotations

import torch

from hipart.models.blocks import Attention

PRUNING_STRATEGIES = ("none", "tpc", "tpa", "tpmo", "tps")


def uniform_indices(n: int, r: int) -> torch.Tensor:
    """TPS: r evenly spaced indices in [0, n) including both ends, round(i * (n-1) / (r-1)) (static)."""
    if not 1 <= r <= n:
        raise ValueError(f"cannot keep r = {r} of n = {n} tokens (need 1 <= r <= n)")
    if r == 1:
        return torch.tensor([(n - 1) // 2])
    i = torch.arange(r)
    # integer arithmetic: exact, platform independent (no float rounding ties)
    return (2 * i * (n - 1) + (r - 1)) // (2 * (r - 1))


def top_r_sorted(scores: torch.Tensor, r: int) -> torch.Tensor:
    """Indices [B, r] of the r highest scores of [B, n], sorted in time (ties: earlier frame first)."""
    n = scores.shape[1]
    if not 1 <= r <= n:
        raise ValueError(f"cannot keep r = {r} of n = {n} tokens (need 1 <= r <= n)")
    idx = torch.topk(scores, r, dim=1, sorted=False).indices
    return idx.sort(dim=1).values


def density_peaks_scores(feats: torch.Tensor, k: int = 2) -> torch.Tensor:
    """TPC cluster-centre score rho * delta per token of [B, n, C] (DPC-kNN, paper Eq. 1-2).

    rho_i = exp(-mean of squared distances to the k nearest other tokens); delta_i = distance to the nearest
    token of higher density (the densest token: its largest distance). Distances are divided by sqrt(C) so the
    density does not saturate with the width. Equal densities are ordered by index (deterministic, no noise).
    """
    b, n, c = feats.shape
    if n < 2:
        return feats.new_ones(b, n)
    k = max(1, min(k, n - 1))
    with torch.no_grad():
        x = feats.float()
        dist = torch.cdist(x, x) / c**0.5  # [B, n, n]
        # k + 1 smallest include the token itself (distance 0, or a duplicate at 0: the same sum)
        knn = torch.topk(dist, k + 1, dim=-1, largest=False).values[..., 1:]
        rho = torch.exp(-(knn**2).mean(-1))  # [B, n]
        idx = torch.arange(n, device=feats.device)
        # higher[b, i, j]: token j is denser than token i (ties broken towards the earlier index)
        higher = (rho[:, None, :] > rho[:, :, None]) | (
            (rho[:, None, :] == rho[:, :, None]) & (idx[None, None, :] < idx[None, :, None])
        )
        dist_max = dist.amax(dim=(1, 2), keepdim=True)
        delta = torch.where(higher, dist, dist_max).amin(-1)
        densest = ~higher.any(-1)
        delta = torch.where(densest, dist.amax(-1), delta)
        return rho * delta


def motion_scores(poses: torch.Tensor) -> torch.Tensor:
    """TPMo criterion of 2D poses [B, n, P, 2]: sum over points of |p_t - p_{t-1}| (first frame: 0), [B, n]."""
    step = (poses[:, 1:] - poses[:, :-1]).norm(dim=-1).sum(-1)
    return torch.cat([step.new_zeros(poses.shape[0], 1), step], 1)


def attention_received(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """TPA criterion: attention each token receives, sum over queries, mean over heads: [B', n] from [B', n, C]."""
    with torch.no_grad():
        q, k, _ = attn.project_qkv(x)
        probs = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # [B', H, n, n]
        return probs.sum(dim=2).mean(dim=1)


def gather_frames(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Frames idx [B, r] of x [B, n, ...] -> [B, r, ...] (per-sample indices)."""
    view = idx[(...,) + (None,) * (x.dim() - 2)].expand((-1, -1) + tuple(x.shape[2:]))
    return x.gather(1, view)
