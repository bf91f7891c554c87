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


class MetadataError(KeyError):
    """The model carries no hipart export metadata, or metadata this version cannot parse (one-line message).

    A KeyError, so callers that treat "no metadata" as "skip" (export's read-back, fp16/int8 derivation) treat a
    malformed one the same way instead of crashing.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


_JSON_FIELDS = {"inputs": dict, "outputs": dict, "extra": dict, "opset": int}
_REQUIRED = ("artifact", "model_hash", "opset")


def read_raw(model: onnx.ModelProto) -> dict[str, str]:
    """All metadata_props as a plain dict (a key or value that is not valid UTF-8 is decoded with U+FFFD)."""
    return {_text(p.key): _text(p.value) for p in model.metadata_props}


def _text(v: str | bytes) -> str:
    """protobuf hands proto2 strings holding invalid UTF-8 back as bytes."""
    return v if isinstance(v, str) else v.decode("utf-8", "replace")


def read(model: onnx.ModelProto) -> ExportMetadata:
    """Parse the hipart.* metadata_props back into ExportMetadata; MetadataError (a KeyError) if none or malformed.

    Unknown hipart.* keys (written by a newer export) are ignored.
    """
    raw = {k[len(PREFIX) :]: v for k, v in read_raw(model).items() if k.startswith(PREFIX)}
    if "artifact" not in raw:
        raise MetadataError("model carries no hipart export metadata")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise MetadataError(f"hipart export metadata lacks {', '.join(PREFIX + k for k in missing)}")
    known = set(ExportMetadata.__dataclass_fields__)
    parsed: dict[str, object] = {}
    for key, value in raw.items():
        if key not in known:
            continue
        kind = _JSON_FIELDS.get(key)
        if kind is None:
            parsed[key] = value
            continue
        try:
            v = json.loads(value)
        except (ValueError, RecursionError):
            raise MetadataError(f"hipart export metadata {PREFIX}{key} is not valid JSON: {value[:80]!r}") from None
        ok = isinstance(v, kind) and not isinstance(v, bool)
        if ok and kind is dict:
            ok = all(isinstance(a, str) and isinstance(b, str) for a, b in v.items())
        if not ok:
            want = "an integer" if kind is int else "a JSON object of strings"
            raise MetadataError(f"hipart export metadata {PREFIX}{key} must be {want}, got {value[:80]!r}")
        parsed[key] = v
    return ExportMetadata(**parsed)  # type: ignore[arg-type]


def with_precision(meta: ExportMetadata, precision: str, **extra: str) -> ExportMetadata:
    """A copy of `meta` for a derived artifact (fp16 / int8) of the same model."""
    return ExportMetadata(**{**asdict(meta), "precision": precision, "extra": {**meta.extra, **extra}})
