"""Export metadata carried in every artifact's ONNX `metadata_props` (model hash, opset, I/O meanings, conventions)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import onnx

# One source of truth for the 2D convention is hipart/camera.py; this string names it for consumers.
NORMALISATION = "x_norm = x_px / w * 2 - [1, h / w] (hipart.camera.normalize_screen_coordinates)"
PREFIX = "hipart."


@dataclass
class ExportMetadata:
    """What a consumer of an exported artifact needs to know without the Python package."""

    artifact: str
    model_hash: str
    opset: int
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    normalisation: str = NORMALISATION
    precision: str = "fp32"
    extra: dict[str, str] = field(default_factory=dict)


def attach(model: onnx.ModelProto, meta: ExportMetadata) -> onnx.ModelProto:
    """Write `meta` into model.metadata_props (replacing earlier hipart.* entries)."""
    # onnxsim records its own bookkeeping (removed node lists...) in metadata_props: not ours to ship.
    props = {k: v for k, v in read_raw(model).items() if not k.startswith((PREFIX, "onnxsim."))}
    for key, value in asdict(meta).items():
        props[PREFIX + key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    onnx.helper.set_model_props(model, props)
    model.producer_name = "hipart-export"
    return model


def read_raw(model: onnx.ModelProto) -> dict[str, str]:
    """All metadata_props as a plain dict."""
    return {p.key: p.value for p in model.metadata_props}


def read(model: onnx.ModelProto) -> ExportMetadata:
    """Parse the hipart.* metadata_props back into ExportMetadata; KeyError if the model has none."""
    raw = {k[len(PREFIX) :]: v for k, v in read_raw(model).items() if k.startswith(PREFIX)}
    if "artifact" not in raw:
        raise KeyError("model carries no hipart export metadata")
    parsed: dict[str, object] = {}
    for key, value in raw.items():
        if key in ("inputs", "outputs", "extra", "opset"):
            parsed[key] = json.loads(value)
        else:
            parsed[key] = value
    return ExportMetadata(**parsed)  # type: ignore[arg-type]


def with_precision(meta: ExportMetadata, precision: str, **extra: str) -> ExportMetadata:
    """A copy of `meta` for a derived artifact (fp16 / int8) of the same model."""
    return ExportMetadata(**{**asdict(meta), "precision": precision, "extra": {**meta.extra, **extra}})
