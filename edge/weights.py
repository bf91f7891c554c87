"""Which HiPART weights a run uses: a checkpoint, the bundled one, or (loudly) random weights.

`load_model` builds the PyTorch module (imports torch). `bundled_reference` only says which model the bundled
checkpoint is (its hash, read from the JSON sidecar `hipart/assets/hipart_default.json`), without torch: what the
onnxruntime / TensorRT backends check exported artifacts against when no checkpoint is given.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hipart

UNTRAINED_BANNER = "UNTRAINED weights — output is not meaningful (random weights: no checkpoint in use)"
BUNDLED_CHECKPOINT = Path(hipart.__file__).parent / "assets" / "hipart_default.pt"  # = checkpoint.bundled_checkpoint()
BUNDLED_SIDECAR = BUNDLED_CHECKPOINT.with_suffix(".json")  # written with it by bundle_model.py: "model_hash", ...


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


def load_model(
    checkpoint: str | os.PathLike | None = None,
    config: str = "paper",
    seed: int = 0,
    random_weights: str | None = None,
) -> LoadedModel:
    """`random_weights` (an architecture: paper | edge | tiny) if given; else the checkpoint, else the bundled one,
    else random weights of architecture `config` (what --config meant before --random-weights)."""
    from hipart.checkpoint import bundled_checkpoint, load_checkpoint, model_hash, random_model

    if random_weights is not None:
        model, _ = random_model(random_weights, seed)
        return LoadedModel(model, model_hash(model), f"random (--random-weights {random_weights}, seed={seed})", False)
    path = Path(checkpoint) if checkpoint else bundled_checkpoint()
    if path is not None:
        model, meta = load_checkpoint(path)  # raises CheckpointError with a clear message
        return LoadedModel(model, meta.get("model_hash") or model_hash(model), str(path), True, meta)
    model, _ = random_model(config, seed)
    return LoadedModel(model, model_hash(model), f"random (config={config}, seed={seed})", False)


def bundled_reference() -> LoadedModel | None:
    """The bundled model's identity without loading it (no torch): model None, its hash from the JSON sidecar.

    None when this build bundles no model or the sidecar is unreadable / has no "model_hash". For backends that run
    exported artifacts (onnxruntime, TensorRT): they need the hash to check the artifacts, never the weights.
    """
    try:
        meta = json.loads(BUNDLED_SIDECAR.read_text())
    except (OSError, ValueError):
        return None
    mhash = meta.get("model_hash") if isinstance(meta, dict) else None
    if not isinstance(mhash, str) or not mhash:
        return None
    return LoadedModel(None, mhash, str(BUNDLED_CHECKPOINT), True, meta)


def is_bundled(loaded: LoadedModel) -> bool:
    """The weights in use are the bundled checkpoint (loaded, or only referenced by `bundled_reference`)."""
    try:
        return Path(loaded.source).resolve() == BUNDLED_CHECKPOINT.resolve()
    except (OSError, ValueError):
        return False
