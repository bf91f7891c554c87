"""Learning-rate schedules of the paper (App. C): warm-up + cosine (MSST), step decay (lifter)."""

from __future__ import annotations

import math

import torch


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to 0 at `total_steps` (stepped per iteration).

    The warm-up is `warmup_steps` (paper: 500) but never more than a tenth of a short run, so a CPU-budget run
    still reaches its peak learning rate and decays.
    """
    warmup_steps = max(0, min(warmup_steps, total_steps // 10))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def step_decay(optimizer: torch.optim.Optimizer, steps_per_epoch: int, gamma: float = 0.96, every_epochs: int = 4):
    """Multiply the learning rate by `gamma` every `every_epochs` epochs (stepped per iteration)."""
    period = max(1, steps_per_epoch * every_epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: gamma ** (step // period))


def constant(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """No schedule (generator: the paper states none)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
