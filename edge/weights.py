"""Which HiPART weights a run uses: a checkpoint, the bundled one, or (loudly) random weights."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UNTRAINED_BANNER = "UNTRAINED weights — output is not meaningful (no checkpoint given and none bundled)"


@dataclass
class LoadedModel:
    """A HiPART module with its provenance."""

    model: Any
    model_hash: str
    source: str  # checkpoint path, or "random (config=...)"
    trained: bool
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def banner(self) -> str | None:
        """The warning to show on every output when the weights are untrained."""
        return None if self.trained else UNTRAINED_BANNER


def load_model(checkpoint: str | os.PathLike | None = None, config: str = "paper", seed: int = 0) -> LoadedModel:
    """Checkpoint if given, else the bundled one, else random weights from `config` ('paper' or 'tiny')."""
    import torch

    from hipart.checkpoint import bundled_checkpoint, load_checkpoint, model_hash
    from hipart.models.config import HiPARTConfig
    from hipart.models.hipart import HiPART

    path = Path(checkpoint) if checkpoint else bundled_checkpoint()
    if path is not None:
        model, meta = load_checkpoint(path)  # raises CheckpointError with a clear message
        return LoadedModel(model, meta.get("model_hash") or model_hash(model), str(path), True, meta)
    factories = {"paper": HiPARTConfig.paper, "tiny": HiPARTConfig.tiny}
    if config not in factories:
        raise ValueError(f"unknown model config {config!r}; choose one of {sorted(factories)}")
    torch.manual_seed(seed)
    model = HiPART(factories[config]()).eval()
    return LoadedModel(model, model_hash(model), f"random (config={config}, seed={seed})", False)
