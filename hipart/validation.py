"""Input checks for the public entry points: clear ValueErrors instead of deep tracebacks."""

from __future__ import annotations

import torch


def check_points(x: object, num_points: int, name: str = "x", dims: int = 2) -> torch.Tensor:
    """Require a finite floating tensor of shape [B, num_points, dims]; return it unchanged."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [B, {num_points}, {dims}], got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (float32/float16/bfloat16), got dtype {x.dtype}")
    if x.dim() != 3 or x.shape[1] != num_points or x.shape[2] != dims:
        raise ValueError(f"{name} must have shape [B, {num_points}, {dims}], got {list(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has an empty batch (B = 0)")
    bad = ~torch.isfinite(x)
    if bad.any():
        rows = bad.flatten(1).any(1).nonzero().flatten()[:8].tolist()
        raise ValueError(f"{name} contains NaN or inf values (batch rows {rows}); mask or drop those poses first")
    return x


def check_tokens(q: object, length: int, vocab: int, name: str) -> torch.Tensor:
    """Require an integer tensor [B, length] with ids in [0, vocab)."""
    if not isinstance(q, torch.Tensor) or q.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be an int64/int32 tensor of shape [B, {length}]")
    if q.dim() != 2 or q.shape[1] != length:
        raise ValueError(f"{name} must have shape [B, {length}], got {list(q.shape)}")
    if q.numel() and (int(q.min()) < 0 or int(q.max()) >= vocab):
        raise ValueError(f"{name} has ids outside [0, {vocab}): min {int(q.min())}, max {int(q.max())}")
    return q


def check_sequence(x: object, frames: int, num_points: int, name: str = "x") -> torch.Tensor:
    """Require a finite floating tensor of shape [B, frames, num_points, 2] (a window of 2D poses)."""
    want = f"[B, {frames}, {num_points}, 2]"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {want}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != 4 or x.shape[2] != num_points or x.shape[3] != 2:
        raise ValueError(f"{name} must have shape {want}, got {list(x.shape)}")
    if x.shape[1] != frames:
        raise ValueError(f"{name} has {x.shape[1]} frames but the model was built for T = {frames}: {want}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has an empty batch (B = 0)")
    bad = ~torch.isfinite(x)
    if bad.any():
        rows = bad.flatten(1).any(1).nonzero().flatten()[:8].tolist()
        raise ValueError(f"{name} contains NaN or inf values (batch rows {rows}); fill or drop those frames first")
    return x
