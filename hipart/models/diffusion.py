"""Denoising diffusion for 3D pose sequences (D3DP conventions): cosine schedule, q_sample, DDIM sampler, JPMA.

The denoiser predicts the clean pose x0 (not the noise). Training draws one timestep per sample (H = K = 1); inference
starts H hypotheses from unit Gaussian noise and runs K deterministic DDIM steps (eta = 0) on timesteps evenly spaced
from `timesteps - 1` down (DiffusionDet's `linspace(-1, T - 1, K + 1)`, truncated to integers), so everything after
the initial noise is a fixed function: export feeds the noise as an input. JPMA (joint-wise reprojection-based
multi-hypothesis aggregation, D3DP) picks, per joint, the hypothesis that reprojects closest to the 2D input.

Poses enter the diffusion scaled by `scale` (diffusion space = metres x scale); `sample` returns metres.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from hipart.camera import normalize_screen_coordinates, root_translation_lsq

Denoiser = Callable[..., torch.Tensor]  # denoiser(y_t [N, ...], t [N], **cond) -> x0 [N, ...] (diffusion space)


def cosine_beta_schedule(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Improved-DDPM cosine schedule (as D3DP / DiffusionDet): betas [timesteps], float64, clipped to 0.999."""
    x = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
    ac = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    ac = ac / ac[0]
    return torch.clip(1 - (ac[1:] / ac[:-1]), 0, 0.999)


def ddim_timesteps(timesteps: int, steps: int) -> list[tuple[int, int]]:
    """(t, t_next) pairs of a K-step DDIM run: [(T-1, ...), ..., (..., -1)]; t_next = -1 means 'return x0'."""
    if not 1 <= steps <= timesteps:
        raise ValueError(f"steps must be in [1, {timesteps}], got {steps}")
    times = torch.linspace(-1, timesteps - 1, steps + 1).int().tolist()[::-1]
    return list(zip(times[:-1], times[1:], strict=True))


class GaussianDiffusion(nn.Module):
    """Forward process and DDIM step of a `timesteps`-step cosine schedule (buffers: not stored in checkpoints)."""

    def __init__(self, timesteps: int = 1000, scale: float = 1.0):
        super().__init__()
        self.timesteps, self.scale = timesteps, float(scale)
        ac = torch.cumprod(1.0 - cosine_beta_schedule(timesteps), 0)
        self.register_buffer("alphas_cumprod", ac.float(), persistent=False)

    def _ac(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.alphas_cumprod[t].view(-1, *(1,) * (like.dim() - 1)).to(like.dtype)

    def q_sample(self, y0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noisy y_t = sqrt(a_t) * y0 * scale + sqrt(1 - a_t) * noise, for clean poses y0 in metres [N, ...]."""
        ac = self._ac(t, y0)
        return ac.sqrt() * y0 * self.scale + (1 - ac).sqrt() * noise

    def ddim_step(self, y_t: torch.Tensor, x0: torch.Tensor, t: int, t_next: int) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) from y_t at t to t_next, given the predicted x0 (diffusion space)."""
        a, a_next = self.alphas_cumprod[t], self.alphas_cumprod[t_next]
        eps = (y_t - a.sqrt() * x0) / (1 - a).sqrt()
        return a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps

    def to_metres(self, x: torch.Tensor) -> torch.Tensor:
        """Diffusion space -> metres."""
        return x / self.scale


def sample(denoiser: Denoiser, cond: dict[str, torch.Tensor | None], diffusion: GaussianDiffusion,
           hypotheses: int = 1, steps: int = 1, generator: torch.Generator | None = None,
           noise: torch.Tensor | None = None, shape: tuple[int, ...] | None = None) -> torch.Tensor:  # fmt: skip
    """DDIM: H hypotheses [H, B, *shape] in metres from `noise` (given, [H, B, *shape]) or fresh unit noise.

    All H run as one batch of H * B (hypothesis-major: row h * B + b); each cond tensor [B, ...] is repeated H times.
    With steps = 1 this is exactly one denoiser call at t = timesteps - 1 on the initial noise.
    """
    batch = next(v for v in cond.values() if v is not None).shape[0]
    if noise is None:
        if shape is None:
            raise ValueError("sample needs the noise or the pose shape")
        ref = next(v for v in cond.values() if v is not None)
        noise = torch.randn((hypotheses, batch, *shape), generator=generator, device=ref.device, dtype=ref.dtype)
    h = noise.shape[0]
    rep = {k: None if v is None else v.repeat(h, *(1,) * (v.dim() - 1)) for k, v in cond.items()}
    y = noise.reshape(h * batch, *noise.shape[2:])
    for t, t_next in ddim_timesteps(diffusion.timesteps, steps):
        x0 = denoiser(y, torch.full((h * batch,), t, dtype=torch.long, device=y.device), **rep)
        y = x0 if t_next < 0 else diffusion.ddim_step(y, x0, t, t_next)
    return diffusion.to_metres(y).view(noise.shape)


def normalised_intrinsics(k_px: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """Pixel intrinsics [..., 4] (fx, fy, cx, cy) -> the same camera in `normalize_screen_coordinates` units."""
    c = normalize_screen_coordinates(k_px[..., 2:4], width, height)
    return torch.cat([k_px[..., 0:2] * (2.0 / width), c], -1)


def project(points: torch.Tensor, intrinsics: torch.Tensor, min_depth: float = 1e-3) -> torch.Tensor:
    """Pinhole projection of camera-space points [..., J, 3] with intrinsics [..., 4] (depth clamped to min_depth)."""
    uv = points[..., :2] / points[..., 2:3].clamp(min=min_depth)
    return uv * intrinsics[..., None, 0:2] + intrinsics[..., None, 2:4]


def jpma(hyps: torch.Tensor, x2d: torch.Tensor, intrinsics: torch.Tensor, visible: torch.Tensor | None = None
         ) -> torch.Tensor:  # fmt: skip
    """JPMA: hyps [H, B, T, J, 3] root-relative (metres) -> [B, T, J, 3], per joint the hypothesis whose projection
    is closest to x2d [B, T, J, 2].

    Each hypothesis gets its own least-squares root translation (`root_translation_lsq` over the visible joints)
    from intrinsics [B, 4] or [B, T, 4] in x2d's units (see `normalised_intrinsics`). Ties go to the lower
    hypothesis index; joints not `visible` ([B, T, J] bool) take the mean of the hypotheses.
    """
    intr = intrinsics if intrinsics.dim() == 3 else intrinsics[:, None].expand(-1, hyps.shape[2], -1)
    w = torch.ones_like(x2d[..., 0]) if visible is None else visible.to(x2d.dtype)
    root = root_translation_lsq(hyps, x2d[None], w[None], intr[None])  # [H, B, T, 3]
    err = (project(hyps + root[..., None, :], intr[None]) - x2d[None]).norm(dim=-1)  # [H, B, T, J]
    best = err.argmin(0)
    pick = hyps.gather(0, best[None, ..., None].expand(1, *best.shape, 3))[0]
    if visible is None:
        return pick
    return torch.where(visible[..., None], pick, hyps.mean(0))
