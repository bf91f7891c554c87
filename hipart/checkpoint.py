"""One-file checkpoints: weights + JSON config + data version, loaded with torch.load(weights_only=True)."""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hipart import __version__
from hipart.atomic_write import atomic_path
from hipart.models.config import GeneratorConfig, HiPARTConfig, LifterConfig, TokenizerConfig, _build
from hipart.models.generator import HiARM
from hipart.models.hipart import HiPART
from hipart.models.htp import HTPConfig, HTPDenoiser
from hipart.models.lifter import Lifter, MLPLifter, build_lifter
from hipart.models.temporal import TemporalConfig, TemporalLifter
from hipart.models.tokenizer import MSSTokenizer

FORMAT = "hipart-edge/checkpoint"
FORMAT_VERSION = 1
KINDS = ("hipart", "tokenizer", "generator", "lifter", "temporal", "htp")


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or does not match the expected model."""


def _kind_of(model: nn.Module) -> str:
    for kind, cls in (("hipart", HiPART), ("tokenizer", MSSTokenizer), ("generator", HiARM),
                      ("lifter", Lifter | MLPLifter), ("temporal", TemporalLifter), ("htp", HTPDenoiser)):
        if isinstance(model, cls):
            return kind
    raise TypeError(
        f"cannot checkpoint a {type(model).__name__}; expected HiPART, MSSTokenizer, HiARM, Lifter, TemporalLifter "
        "or HTPDenoiser"
    )


def _config_dict(model: nn.Module, kind: str) -> dict[str, Any]:
    from dataclasses import asdict

    if kind in ("hipart", "temporal", "htp"):
        return model.config.to_dict()
    if kind == "generator":
        return {"generator": asdict(model.config), "tokenizer": asdict(model.tok_config)}
    return asdict(model.config)


def model_hash(model: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) over parameter/buffer names, shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    data_version: str | None = None,
    extra: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write model weights + config + data version atomically (temp file, then rename).

    half=True stores floating tensors as float16 (half the file; loading casts back to float32). The stored
    model hash is of the weights as stored, so measure a half checkpoint after loading it.
    """
    path = Path(path)
    kind = _kind_of(model)
    if half:
        model = copy.deepcopy(model).half().float()
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "hipart_version": __version__,
        "config": _config_dict(model, kind),
        "data_version": data_version,
        "model_hash": model_hash(model),
        "extra": extra or {},
        "weights_dtype": "float16" if half else "float32",
        "state_dict": {
            k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
            for k, v in model.state_dict().items()
        },
    }
    atomic_torch_save(payload, path)
    return path


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, then rename (never a half-written file)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _build_model(kind: str, cfg: dict[str, Any]) -> nn.Module:
    if kind == "hipart":
        return HiPART(HiPARTConfig.from_dict(cfg))
    if kind == "tokenizer":
        return MSSTokenizer(_build(TokenizerConfig, cfg))
    if kind == "generator":
        return HiARM(_build(GeneratorConfig, cfg["generator"]), _build(TokenizerConfig, cfg["tokenizer"]))
    if kind == "temporal":
        return TemporalLifter(TemporalConfig.from_dict(cfg))
    if kind == "htp":
        return HTPDenoiser(HTPConfig.from_dict(cfg))
    return build_lifter(_build(LifterConfig, cfg))


def _first_line(e: BaseException) -> str:
    """The first sentence of an exception's message (torch appends paragraphs of advice)."""
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return line.split(". ")[0]


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint payload, validated for format; raises CheckpointError with the reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated/garbage files
        what = re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) (\S+)", str(e))
        if isinstance(e, pickle.UnpicklingError) and what:  # weights_only refused a global: it would run code
            raise CheckpointError(
                f"{path} was refused: it is not a plain-weights checkpoint and loading it could run code (it names "
                f"{what.group(1)}). Do not bypass this check unless you made the file yourself; "
                "hipart-edge checkpoints hold tensors and plain data only"
            ) from None
        why = _first_line(e)
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated?): {why}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a hipart-edge checkpoint (missing format tag {FORMAT!r})")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {payload.get('format_version')}, this build reads {FORMAT_VERSION}"
        )
    if payload.get("kind") not in KINDS:
        raise CheckpointError(f"{path} holds an unknown model kind {payload.get('kind')!r}")
    return payload


def random_model(arch: str, seed: int = 0) -> tuple[HiPART, str]:
    """An untrained HiPART of architecture `arch` (paper | edge | tiny), seeded, in eval mode, and its description."""
    torch.manual_seed(seed)
    return HiPART(HiPARTConfig.named(arch)).eval(), f"{arch} architecture, RANDOM weights (seed {seed})"


def load_checkpoint(
    path: str | os.PathLike, expect_kind: str | None = "hipart", map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from its stored config and load its weights -> (model in eval mode, metadata)."""
    payload = read_checkpoint(path)
    kind = payload["kind"]
    if expect_kind is not None and kind != expect_kind:
        raise CheckpointError(f"{path} holds a {kind!r} checkpoint, expected {expect_kind!r}")
    cfg, state = payload.get("config"), payload.get("state_dict")
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: stored config is missing or not a mapping")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):  # fmt: skip
        raise CheckpointError(f"{path}: stored weights are missing or not a mapping of names to tensors")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} weight tensors hold NaN or inf (e.g. {bad[0]}); the training run diverged or the "
            "file is damaged"
        )
    try:
        model = _build_model(kind, cfg)
    except Exception as e:  # a stored config fails in many ways: ValueError, TypeError, ZeroDivisionError, ...
        raise CheckpointError(f"{path}: stored config is invalid for this version: {_first_line(e)}") from None
    try:  # float16-stored weights are cast back into the float32 parameters by copy_
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        msg = str(e).splitlines()[0:3]
        raise CheckpointError(f"{path}: weights do not match the stored config: {' '.join(msg)}") from None
    if kind == "hipart":
        model.sync_codebooks()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model.to(map_location).eval(), meta


def _bundled(name: str) -> Path | None:
    p = Path(__file__).parent / "assets" / name
    return p if p.is_file() else None


def bundled_checkpoint() -> Path | None:
    """The default trained model shipped in hipart/assets (None if this build has none)."""
    return _bundled("hipart_default.pt")


def bundled_temporal_checkpoint() -> Path | None:
    """The default trained temporal lifter (causal, for `hipart-run --temporal default`), or None if not bundled."""
    return _bundled("temporal_default.pt")
