"""Screen-coordinate normalisation (the public lifting literature's convention, ARCHITECTURE.md §3)."""

from __future__ import annotations

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


def normalize_screen_coordinates(x_px: Array, w: float, h: float) -> Array:
    """Pixels -> normalised: x / w * 2 - [1, h / w] (x in [-1, 1], y scaled by the same factor)."""
    if x_px.shape[-1] != 2:
        raise ValueError(f"expected [..., 2] pixel coordinates, got shape {tuple(x_px.shape)}")
    offset = [1.0, h / w]
    if isinstance(x_px, torch.Tensor):
        return x_px / w * 2 - x_px.new_tensor(offset)
    return x_px / w * 2 - np.asarray(offset, dtype=x_px.dtype)


def image_coordinates(x_norm: Array, w: float, h: float) -> Array:
    """Normalised -> pixels (inverse of `normalize_screen_coordinates`)."""
    if x_norm.shape[-1] != 2:
        raise ValueError(f"expected [..., 2] normalised coordinates, got shape {tuple(x_norm.shape)}")
    offset = [1.0, h / w]
    if isinstance(x_norm, torch.Tensor):
        return (x_norm + x_norm.new_tensor(offset)) * w / 2
    return (x_norm + np.asarray(offset, dtype=x_norm.dtype)) * w / 2
