"""The artifact contract: `<out>/manifest.json` lists every file hipart-export wrote; runtimes find files through it.

One entry per artifact file, keyed by name (`hipart.fp32`, `lift.int8`, `hipart.fp16.engine.<gpu>.sm<cc>.trt<ver>`):
the file (relative to the folder), kind (onnx | engine), precision, model hash, opset, size and sha256, the
calibration set hash for INT8, and for engines the engine key (GPU name, compute capability, TensorRT version).
Written atomically and merged with the manifest already in the folder. Imports only the standard library and
hipart (no onnx, no torch), so `edge` can read it cheaply.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hipart.atomic_write import write_bytes_atomic

MANIFEST_NAME = "manifest.json"
FORMAT = "hipart-edge/artifacts"
FORMAT_VERSION = 1
DEFAULT_DIR = "exported"  # hipart-export's default --out; every runtime's default folder
ENV_VAR = "HIPART_ARTIFACTS"
KINDS = ("onnx", "engine")
PRECISIONS = ("fp32", "fp16", "int8")


class ManifestError(ValueError):
    """The manifest is unreadable, or does not list a usable file for what was asked."""


class ManifestMissing(ManifestError):
    """The folder has no manifest.json (nothing exported there, or an export older than the manifest)."""


class ModelMismatch(ManifestError):
    """The manifest's artifacts were exported from another model than the one asked for."""


class ArtifactFileMissing(ManifestError):
    """The manifest lists a file that is not (or no longer) in the folder, or that changed since export."""


def default_dir() -> Path:
    """The one default artifacts folder: $HIPART_ARTIFACTS, else ./exported (hipart-export's default --out)."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)


@dataclass(frozen=True)
class ExpectedModel:
    """The model the user asked for (checkpoint or bundled), to check artifacts against."""

    model_hash: str
    label: str = "the model in use"  # e.g. "the bundled model", "checkpoint runs/a.pt"


@dataclass
class Entry:
    """One artifact file of the manifest."""

    artifact: str  # hipart | densify | decode_step | lift
    file: str  # relative to the manifest's folder, '/'-separated
    kind: str  # onnx | engine
    precision: str  # fp32 | fp16 | int8
    model_hash: str
    opset: int | None = None
    bytes: int | None = None
    sha256: str | None = None
    calibration_hash: str | None = None  # INT8 only: hash of the calibration poses
    engine: dict[str, str] | None = None  # engines only: gpu_name, compute_capability, trt_version
    source: str | None = None  # engines only: the ONNX file the engine was built from
    status: str = "ok"  # or the export's flag, e.g. "DRIFT > target"

    @property
    def name(self) -> str:
        """The entry's key in the manifest."""
        return entry_name(self.artifact, self.precision, self.kind, self.engine)

    def describe(self) -> str:
        """'hipart fp32 onnx' / 'hipart int8 engine (NVIDIA Orin, sm 8.7, TensorRT 10.3.0)'."""
        text = f"{self.artifact} {self.precision} {self.kind}"
        if self.engine:
            e = self.engine
            text += f" ({e.get('gpu_name')}, sm {e.get('compute_capability')}, TensorRT {e.get('trt_version')})"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict without empty optional fields."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Entry:
        """Parse one manifest entry; ManifestError naming the missing or unknown fields."""
        if not isinstance(d, dict):
            raise ManifestError(f"manifest entry is not a JSON object: {_short(d)}")
        required = ("artifact", "file", "kind", "precision", "model_hash")
        missing = [k for k in required if not d.get(k)]
        if missing:
            raise ManifestError(f"manifest entry lacks {missing}: {_short(d)}")
        known = set(Entry.__dataclass_fields__)
        e = Entry(**{k: v for k, v in d.items() if k in known})
        for name, types in _FIELD_TYPES.items():
            v = getattr(e, name)
            if not isinstance(v, types) or isinstance(v, bool):
                raise ManifestError(f"manifest entry {_short(d.get('file'))}: {name} {_short(v)} has the wrong type")
        if e.engine is not None and not all(isinstance(v, str) for v in e.engine.values()):
            raise ManifestError(f"manifest entry {e.file}: engine key values must be strings")
        parts = e.file.split("/")
        if e.file.startswith("/") or "\\" in e.file or ".." in parts or "\0" in e.file:
            raise ManifestError(f"manifest entry {e.file!r}: the file must be a relative path inside the folder")
        if e.kind not in KINDS or e.precision not in PRECISIONS:
            raise ManifestError(f"manifest entry {e.file}: kind {e.kind!r} / precision {e.precision!r} unknown")
        if e.kind == "engine" and not e.engine:
            raise ManifestError(f"manifest entry {e.file}: an engine entry needs its engine key")
        return e


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "artifact": str, "file": str, "kind": str, "precision": str, "model_hash": str, "opset": (int, type(None)),
    "bytes": (int, type(None)), "sha256": (str, type(None)), "calibration_hash": (str, type(None)),
    "engine": (dict, type(None)), "source": (str, type(None)), "status": str,
}  # fmt: skip


def _short(v: Any) -> str:
    """repr of a value from the manifest, cut to one short line for a message."""
    text = repr(v)
    return text if len(text) <= 120 else text[:117] + "..."


def entry_name(artifact: str, precision: str, kind: str = "onnx", engine: dict[str, str] | None = None) -> str:
    """Key of an entry: '<artifact>.<precision>' for ONNX, '<artifact>.<precision>.engine.<gpu>.sm<cc>.trt<v>'."""
    if kind == "onnx":
        return f"{artifact}.{precision}"
    e = engine or {}
    gpu = "".join(c if c.isalnum() else "-" for c in str(e.get("gpu_name", "gpu"))).strip("-").lower() or "gpu"
    cc = str(e.get("compute_capability", "")).replace(".", "")
    return f"{artifact}.{precision}.engine.{gpu}.sm{cc}.trt{e.get('trt_version', '')}"


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def array_hash(*arrays: Any) -> str:
    """Short content hash (16 hex) of numpy arrays: dtype, shape and bytes (the calibration set hash)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(f"{a.dtype.str}{tuple(a.shape)}".encode())
        h.update(a.tobytes(order="C"))
    return h.hexdigest()[:16]


@dataclass
class Manifest:
    """The entries of one artifacts folder plus what the latest hipart-export run recorded."""

    root: Path
    entries: dict[str, Entry] = field(default_factory=dict)
    model_hash: str | None = None  # model of the latest hipart-export run into this folder
    model_source: str | None = None
    calibration: dict[str, Any] | None = None  # hash, source, poses of the latest INT8 calibration
    updated: str | None = None

    @property
    def path(self) -> Path:
        """The manifest file."""
        return self.root / MANIFEST_NAME

    def add(self, entry: Entry) -> Entry:
        """Add or replace the entry of the same name."""
        self.entries[entry.name] = entry
        return entry

    def add_file(self, path: str | Path, **fields: Any) -> Entry:
        """Add an entry for a file in (or under) this folder; size and sha256 are measured here."""
        p = Path(path)
        rel = p.resolve().relative_to(self.root.resolve()).as_posix()
        return self.add(Entry(file=rel, bytes=p.stat().st_size, sha256=file_sha256(p), **fields))

    def select(self, artifact: str | None = None, precision: str | None = None, kind: str | None = None) -> list[Entry]:
        """Entries matching every given field, in name order."""
        return [
            e for _, e in sorted(self.entries.items())
            if (artifact is None or e.artifact == artifact) and (precision is None or e.precision == precision)
            and (kind is None or e.kind == kind)
        ]  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "updated": self.updated,
            "model_hash": self.model_hash,
            "model_source": self.model_source,
            "calibration": self.calibration,
            "artifacts": {name: e.to_dict() for name, e in sorted(self.entries.items())},
        }

    def write(self) -> Path:
        """Merge with the manifest on disk (this one wins per entry), drop entries whose file is gone; atomic."""
        try:
            old = load_manifest(self.root)
        except ManifestError:
            old = None  # unreadable or absent: this run's entries replace it
        merged = dict(old.entries) if old else {}
        merged.update(self.entries)
        self.entries = {k: e for k, e in merged.items() if (self.root / e.file).is_file()}
        if old is not None:
            self.model_hash = self.model_hash or old.model_hash
            self.model_source = self.model_source or old.model_source
            self.calibration = self.calibration or old.calibration
        self.updated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        return write_bytes_atomic(self.path, text.encode())

    def summary(self) -> str:
        """'exported/manifest.json (N artifacts: hipart.fp32, ...)'."""
        return f"{self.path} ({len(self.entries)} artifacts: {', '.join(sorted(self.entries))})"


def load_manifest(folder: str | Path) -> Manifest:
    """Read `<folder>/manifest.json`; ManifestMissing if absent, ManifestError if unreadable or of another format."""
    root = Path(folder)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ManifestMissing(f"no {MANIFEST_NAME} in {root}: run `hipart-export --out {root}` (it writes one)")
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # ValueError: not UTF-8 or not JSON; RecursionError: nesting
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ManifestError(f"{path} is unreadable ({why}); re-run `hipart-export --out {root}`") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ManifestError(f"{path} is not a hipart-export manifest (format {FORMAT!r} expected)")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ManifestError(
            f"{path} has format version {doc.get('format_version')}, this build reads {FORMAT_VERSION}; "
            f"re-run `hipart-export --out {root}`"
        )
    artifacts = doc.get("artifacts") or {}
    if not isinstance(artifacts, dict):
        raise ManifestError(f"{path}: 'artifacts' must be a JSON object; re-run `hipart-export --out {root}`")
    for key, types in (("model_hash", str), ("model_source", str), ("updated", str), ("calibration", dict)):
        if doc.get(key) is not None and not isinstance(doc[key], types):
            raise ManifestError(f"{path}: {key!r} has the wrong type ({_short(doc[key])}); re-run `hipart-export`")
    entries = {}
    for name, d in artifacts.items():
        e = Entry.from_dict(d)
        entries[name] = e
    return Manifest(root, entries, doc.get("model_hash"), doc.get("model_source"), doc.get("calibration"),
                    doc.get("updated"))  # fmt: skip


def check_model(man: Manifest, entries: Iterable[Entry], expected: ExpectedModel | None) -> None:
    """ModelMismatch naming both hashes when an entry was exported from another model than `expected`."""
    if expected is None or expected.model_hash in ("", "unknown"):
        return
    for e in entries:
        if e.model_hash != expected.model_hash:
            raise ModelMismatch(
                f"{man.path} was made for model {e.model_hash} ({e.file}); {expected.label} is "
                f"{expected.model_hash}: re-run `hipart-export --out {man.root}` for it (or pass the checkpoint "
                "those artifacts were exported from)"
            )


def check_file(man: Manifest, entry: Entry, verify_hash: bool = True) -> Path:
    """The entry's file, after checking it exists (and its sha256 when recorded); ArtifactFileMissing otherwise."""
    path = man.root / entry.file
    if not path.is_file():
        raise ArtifactFileMissing(
            f"{man.path} lists {path} ({entry.describe()}), but the file is missing: "
            f"re-run `hipart-export --out {man.root}`"
        )
    if verify_hash and entry.sha256 and file_sha256(path) != entry.sha256:
        raise ArtifactFileMissing(
            f"{path} changed since {man.path} was written (sha256 {entry.sha256[:16]}... expected): "
            f"re-run `hipart-export --out {man.root}`"
        )
    return path


def resolve(
    folder: str | Path,
    artifact: str,
    precision: str = "fp32",
    kind: str = "onnx",
    expected: ExpectedModel | None = None,
    man: Manifest | None = None,
) -> tuple[Path, Entry]:
    """The file of one ONNX artifact by name, model hash and file checked; ManifestError subclasses otherwise."""
    man = man or load_manifest(folder)
    found = man.select(artifact, precision, kind)
    if not found:
        have = ", ".join(e.describe() for e in man.select()) or "nothing"
        flag = {"fp16": " --fp16", "int8": " --int8"}.get(precision, "")
        raise ManifestError(
            f"{man.path} lists no {artifact} {precision} {kind} (it lists: {have}); "
            f"run `hipart-export{flag} --out {man.root}`"
        )
    entry = found[0]
    check_model(man, [entry], expected)
    return check_file(man, entry), entry


ENGINE_PREFERENCE = ("fp16", "int8", "fp32")  # precision=None: the first of these with an engine for this GPU


def same_device(engine: dict[str, str] | None, gpu_name: str, compute_capability: str, trt_version: str) -> bool:
    """True when an entry's engine key names this GPU, compute capability and TensorRT version."""
    e = engine or {}
    return (
        str(e.get("gpu_name")) == gpu_name
        and str(e.get("compute_capability", "")).replace(".", "") == str(compute_capability).replace(".", "")
        and str(e.get("trt_version")) == trt_version
    )


def resolve_engine(
    folder: str | Path,
    artifact: str,
    precision: str | None,
    device: tuple[str, str, str],
    expected: ExpectedModel | None = None,
    man: Manifest | None = None,
) -> tuple[Path, Entry]:
    """The engine of `artifact` built for `device` = (GPU name, compute capability, TensorRT version), by name."""
    man = man or load_manifest(folder)
    precisions = [precision] if precision else list(ENGINE_PREFERENCE)
    engines = [e for p in precisions for e in man.select(artifact, p, "engine")]
    what = f"{artifact} {precision + ' ' if precision else ''}engine"
    flag = {"fp16": " --fp16", "int8": " --int8", "fp32": ""}.get(precision or "", " --fp16")
    if not engines:
        have = ", ".join(e.describe() for e in man.select()) or "nothing"
        raise ManifestError(
            f"{man.path} lists no {what} (it lists: {have}); build one on this GPU with "
            f"`hipart-export{flag} --out {man.root}`"
        )
    gpu, cc, trt = device
    here = [e for e in engines if same_device(e.engine, gpu, cc, trt)]
    if not here:
        raise ManifestError(
            f"{man.path} has no {what} for this GPU ({gpu}, sm {cc}, TensorRT {trt}); it has: "
            + "; ".join(e.describe() for e in engines)
            + f". Engines are not portable: rebuild here with `hipart-export{flag} --out {man.root}`"
        )
    if expected is not None and expected.model_hash not in ("", "unknown"):
        mine = [e for e in here if e.model_hash == expected.model_hash]
        check_model(man, mine or here[:1], expected)
        here = mine
    entry = here[0]
    return check_file(man, entry), entry
