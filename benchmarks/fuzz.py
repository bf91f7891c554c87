"""Coverage-guided fuzzing (atheris / libFuzzer) of the file readers users reach; a benchmark, never run in CI.

    pip install atheris==3.0.0
    python benchmarks/fuzz.py --make-seeds                        # build/fuzz/<target>/seeds, from the tests' fixtures
    OMP_NUM_THREADS=1 python benchmarks/fuzz.py --target bvh       # 1M executions -> benchmarks/results/fuzz-bvh.json

Each target writes the fuzzer's bytes where the real path reads a file and calls the public reader. The reader's
documented exception (BVHError, SourceError, CheckpointError, ManifestError, EngineMismatchError, BackendError,
onnx's DecodeError) is the expected outcome; any other exception is a crash: recorded (type, message, where), its
input saved under build/fuzz/<target>/crashes/, and fuzzing goes on. Hangs (-timeout), memory blow-ups
(-rss_limit_mb) and native crashes stop libFuzzer; the parent process reports them from the worker's output.
Only our packages (hipart, edge, export, calib) are instrumented. See docs/FUZZING.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "fuzz"
RESULTS = ROOT / "benchmarks" / "results"
OUR_PACKAGES = ("hipart", "edge", "export", "calib")
MAX_LEN = 64 * 1024  # bytes per input: bounded per-input work
TIMEOUT_S = 10  # libFuzzer -timeout: one input running longer is a hang
RSS_LIMIT_MB = 2048  # libFuzzer -rss_limit_mb: a small input needing more is a memory blow-up
STATS_EVERY_S = 2.0

# What the manifest / sidecar targets find next to the fuzzed file (the seeds list exactly these bytes).
ONNX_BYTES = b"fuzz: stands for hipart.onnx"
ENGINE_BYTES = b"fuzz: stands for a serialized engine"
DEVICE = ("NVIDIA Jetson AGX Orin", "8.7", "10.3.0")  # (GPU name, compute capability, TensorRT version)
MODEL_HASH = "0123456789abcdef"


def _engine_key() -> Any:
    """The engine key the sidecar targets check against (the seeds' sidecars match it)."""
    from export.engine_cache import EngineKey

    return EngineKey(MODEL_HASH, DEVICE[0], DEVICE[1], DEVICE[2], "fp16")


def _step(fn: Callable[..., Any], expected: type[BaseException] | tuple[type[BaseException], ...], *args: Any,
          **kwargs: Any) -> Any:  # fmt: skip
    """fn(*args, **kwargs), or None when it raises one of the reader's documented `expected` exceptions."""
    try:
        return fn(*args, **kwargs)
    except expected:
        return None


# ---------------------------------------------------------------------------------------------------- targets
# Each setup imports the reader (under instrumentation) and returns run(bytes) feeding it as the real path does.


def _setup_bvh(work: Path) -> Callable[[bytes], None]:
    """hipart.data.bvh.load_bvh (read, parse, FK, unit detection): BVHError."""
    from hipart.data.bvh import BVHError, load_bvh

    path = work / "input.bvh"

    def run(data: bytes) -> None:
        path.write_bytes(data)
        _step(load_bvh, BVHError, path)

    return run


def _setup_keypoints(suffix: str) -> Callable[[Path], Callable[[bytes], None]]:
    """edge.sources.KeypointSource on a .npz / .json file, then every frame read: SourceError."""

    def setup(work: Path) -> Callable[[bytes], None]:
        from edge.sources import KeypointSource, SourceError

        path = work / f"input{suffix}"

        def run(data: bytes) -> None:
            path.write_bytes(data)
            src = _step(KeypointSource, SourceError, path)
            if src is not None:
                for _ in src:
                    pass

        return run

    return setup


def _setup_checkpoint(work: Path) -> Callable[[bytes], None]:
    """hipart.checkpoint.load_checkpoint (hipart-run --checkpoint, edge.weights), any kind: CheckpointError."""
    import torch

    torch.set_num_threads(1)
    from hipart.checkpoint import CheckpointError, load_checkpoint

    path = work / "input.pt"

    def run(data: bytes) -> None:
        path.write_bytes(data)
        _step(load_checkpoint, CheckpointError, path, None)

    return run


def _setup_manifest(work: Path) -> Callable[[bytes], None]:
    """export.manifest.load_manifest + resolve/resolve_engine and the backends' lookups: ManifestError, BackendError."""
    from edge.backends.base import BackendError
    from edge.backends.onnxruntime_backend import find_artifacts
    from edge.backends.tensorrt_backend import select_engine
    from export.manifest import ExpectedModel, ManifestError, load_manifest, resolve, resolve_engine

    root = work / "artifacts"
    _artifact_folder(root)
    path = root / "manifest.json"
    expected = ExpectedModel(MODEL_HASH, "the fuzz model")

    def run(data: bytes) -> None:
        path.write_bytes(data)
        man = _step(load_manifest, ManifestError, root)
        if man is not None:
            man.summary()
            for e in man.select():
                e.describe()
            for exp in (None, expected):
                _step(resolve, ManifestError, root, "hipart", "fp32", "onnx", exp, man)
                _step(resolve_engine, ManifestError, root, "hipart", None, DEVICE, exp, man)
        _step(find_artifacts, BackendError, root, expected)
        _step(select_engine, BackendError, root, None, DEVICE, expected)

    return run


def _artifact_folder(root: Path) -> tuple[Path, Path]:
    """An artifacts folder with the files the seed manifest lists: hipart.onnx and an fp16 engine + its sidecar."""
    from export.engine_cache import EngineCache

    root.mkdir(parents=True, exist_ok=True)
    onnx_path = root / "hipart.onnx"
    onnx_path.write_bytes(ONNX_BYTES)
    engine = EngineCache(root).store("hipart", _engine_key(), ENGINE_BYTES)
    return onnx_path, engine


def _setup_sidecar(work: Path) -> Callable[[bytes], None]:
    """export.engine_cache.verify_sidecar / EngineCache.lookup and tensorrt select_engine on an explicit .engine."""
    from edge.backends.base import BackendError
    from edge.backends.tensorrt_backend import select_engine
    from export.engine_cache import EngineCache, EngineMismatchError, verify_sidecar
    from export.manifest import ExpectedModel

    key = _engine_key()
    cache = EngineCache(work / "engines")
    engine, sidecar = cache.paths("hipart", key)
    engine.parent.mkdir(parents=True, exist_ok=True)
    engine.write_bytes(ENGINE_BYTES)
    expected = ExpectedModel(MODEL_HASH, "the fuzz model")

    def run(data: bytes) -> None:
        sidecar.write_bytes(data)
        _step(verify_sidecar, EngineMismatchError, sidecar, key)
        _step(cache.lookup, EngineMismatchError, "hipart", key)
        _step(select_engine, BackendError, engine, None, DEVICE)
        _step(select_engine, BackendError, engine, "fp16", DEVICE, expected)

    return run


def _setup_onnx(work: Path) -> Callable[[bytes], None]:
    """onnx.load + calib.onnx_metadata.read (export's read-back), and the onnxruntime backend on the file."""
    import onnx
    import onnxruntime  # noqa: F401  (imported before instrumentation: not ours)
    from google.protobuf.message import DecodeError

    from calib import onnx_metadata as md
    from edge.backends.base import BackendError
    from edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    path = work / "input.onnx"

    def run(data: bytes) -> None:
        path.write_bytes(data)
        model = _step(onnx.load, DecodeError, str(path), load_external_data=False)
        if model is not None:
            _step(md.read, KeyError, model)  # KeyError: documented "no (usable) hipart metadata"
        _step(OnnxRuntimeBackend, BackendError, path, threads=1)

    return run


NPZ_KEYS = ("keypoints", "kpts2d", "kpts", "positions_2d", "conf", "scores", "width", "height", "fps", "format")


def mutate_npz(data: bytes, max_size: int, seed: int) -> bytes:
    """Mutate one member of an npz and re-zip it with valid CRCs, so mutations reach the .npy reader and our checks.

    Plain byte mutations of a zip almost always fail its CRC check; a fifth of the time (or when `data` is no zip)
    the bytes are mutated as they are. Members are also renamed to the keys the reader looks for, or dropped.
    """
    import io
    import random
    import zipfile

    import atheris

    rng = random.Random(seed)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            members = [(i, z.read(i)) for i in z.infolist()]
    except Exception:  # not a (readable) zip: plain mutation
        members = []
    if not members or rng.random() < 0.2:
        return atheris.Mutate(data, max_size)
    k = rng.randrange(len(members))
    info, payload = members[k]
    op = rng.random()
    if op < 0.1 and len(members) > 1:
        del members[k]
    elif op < 0.2:
        info.filename = rng.choice(NPZ_KEYS) + ".npy"
    else:
        members[k] = (info, atheris.Mutate(payload, max(2 * len(payload), 256)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, payload in members:
            z.writestr(i, payload)
    return buf.getvalue()[:max_size]


@dataclass(frozen=True)
class Target:
    """One fuzz target: its setup, third-party packages to import before instrumenting ours, a custom mutator."""

    setup: Callable[[Path], Callable[[bytes], None]]
    preload: tuple[str, ...] = ("numpy",)
    mutator: Callable[[bytes, int, int], bytes] | None = None


TARGETS: dict[str, Target] = {
    "bvh": Target(_setup_bvh),
    "keypoints-npz": Target(_setup_keypoints(".npz"), mutator=mutate_npz),
    "keypoints-json": Target(_setup_keypoints(".json")),
    "checkpoint": Target(_setup_checkpoint, ("numpy", "torch")),
    "manifest": Target(_setup_manifest),
    "sidecar": Target(_setup_sidecar),
    "onnx": Target(_setup_onnx, ("numpy", "onnx", "onnxruntime", "google.protobuf.message")),
}


# ------------------------------------------------------------------------------------------------------ seeds


def make_seeds(targets: list[str]) -> dict[str, int]:
    """Small valid files per target, built with the tests' own fixtures, into build/fuzz/<target>/seeds."""
    sys.path.insert(0, str(ROOT))  # the tests' helpers (tests/ is not a package)
    makers = {
        "bvh": _seeds_bvh,
        "keypoints-npz": _seeds_npz,
        "keypoints-json": _seeds_json,
        "checkpoint": _seeds_checkpoint,
        "manifest": _seeds_manifest,
        "sidecar": _seeds_sidecar,
        "onnx": _seeds_onnx,
    }
    counts = {}
    for name in targets:
        out = BUILD / name / "seeds"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        with tempfile.TemporaryDirectory() as tmp:
            seeds = makers[name](Path(tmp))
        kept = {k: v for k, v in seeds.items() if len(v) <= MAX_LEN}
        for k, v in kept.items():
            (out / k).write_bytes(v)
        skipped = sorted(set(seeds) - set(kept))
        counts[name] = len(kept)
        note = f" (skipped, over {MAX_LEN} bytes: {', '.join(skipped)})" if skipped else ""
        print(f"{name}: {len(kept)} seeds in {out}{note}")
    return counts


def _seeds_bvh(tmp: Path) -> dict[str, bytes]:
    """The 3-joint chain of tests/data/test_bvh.py and 2-frame humanoids of every skeleton family."""
    import numpy as np

    from tests.data.conftest import FAMILY_NAMES, ROOT6, ROT_ZXY, ROT_ZYX, bvh_text, humanoid

    chain = [("root", -1, (0.0, 0.0, 0.0), ROOT6), ("mid", 0, (0.0, 2.0, 0.0), ROT_ZXY),
             ("tip", 1, (0.0, 1.0, 0.0), ROT_ZYX)]  # fmt: skip
    frames = np.array([[1, 2, 3, 90, 0, 90, 0, 90, 0, 0, 0, 0]], float)
    seeds = {"chain.bvh": bvh_text(chain, {2: (0.0, 0.0, 1.0)}, frames).encode()}
    for family in sorted(FAMILY_NAMES):
        j, e, m = humanoid(family, scale=1.0, frames=2)
        seeds[f"{family}.bvh"] = bvh_text(j, e, m).encode()
    return seeds


def _walk_px(frames: int) -> Any:
    """[T,17,2] pixel keypoints of the synthetic walk (the edge tests' `walk_px` fixture)."""
    from edge.sample import project, walk_3d

    return project(walk_3d(24))[:frames]


def _seeds_npz(tmp: Path) -> dict[str, bytes]:
    """The npz files of tests/edge/test_sources_detectors.py: h36m17 with metadata, NaN-padded persons, COCO + conf."""
    import numpy as np

    walk = _walk_px(5)
    kp = np.full((2, 3, 17, 2), np.nan, np.float32)
    kp[0, 0] = walk[0]
    files = {
        "h36m.npz": dict(keypoints=walk, width=640, height=480, fps=25.0, format="h36m17"),
        "pad.npz": dict(keypoints=kp, format="h36m17"),
        "coco_conf.npz": dict(kpts2d=walk[:2].astype(np.float32), conf=np.ones((2, 17), np.float32), format="coco17"),
    }
    seeds = {}
    for name, arrays in files.items():
        np.savez(tmp / name, **arrays)
        seeds[name] = (tmp / name).read_bytes()
    np.savez_compressed(tmp / "compressed.npz", keypoints=walk[:2], format="coco17")
    seeds["compressed.npz"] = (tmp / "compressed.npz").read_bytes()
    return seeds


def _seeds_json(tmp: Path) -> dict[str, bytes]:
    """The COCO-17 JSON document of the edge tests (two persons, then none) and a bare list of frames."""
    import numpy as np

    from edge.detectors.coco import h36m_to_coco

    walk = _walk_px(2)
    coco, cconf = h36m_to_coco(walk[:1], np.ones((1, 17), np.float32))
    person = np.round(np.concatenate([coco[0], cconf[0][:, None]], 1), 2).tolist()
    doc = {"width": 640, "height": 480, "format": "coco17", "frames": [{"keypoints": [person, person]},
                                                                         {"keypoints": []}]}  # fmt: skip
    xy = np.round(walk, 2).tolist()
    return {
        "coco.json": json.dumps(doc).encode(),
        "h36m_conf.json": json.dumps(
            {"fps": 25, "format": "h36m17", "frames": [{"keypoints": [xy[0]], "conf": [[1.0] * 17]}]}
        ).encode(),  # fmt: skip
        "list.json": json.dumps([[xy[1]]]).encode(),
    }


def _seeds_checkpoint(tmp: Path) -> dict[str, bytes]:
    """hipart.checkpoint.save_checkpoint of the tiny config (and its stages), and the tests' small lifter."""
    import torch

    from hipart.checkpoint import save_checkpoint
    from hipart.models.config import HiPARTConfig, LifterConfig
    from hipart.models.hipart import HiPART
    from hipart.models.lifter import Lifter, build_lifter
    from hipart.models.temporal import TemporalConfig, TemporalLifter

    torch.manual_seed(0)
    tiny = HiPARTConfig.tiny()
    models = {
        "hipart_tiny.pt": (HiPART(tiny), False),
        "hipart_tiny_half.pt": (HiPART(tiny), True),
        "lifter_tiny.pt": (build_lifter(tiny.lifter), False),
        "lifter_test.pt": (Lifter(LifterConfig(num_points=17, dim=12, blocks=1, heads=2)), False),
        "lifter_test_half.pt": (Lifter(LifterConfig(num_points=17, dim=12, blocks=1, heads=2)), True),
        "lifter_mlp.pt": (build_lifter(LifterConfig(num_points=17, kind="mlp", dim=4, width=8, blocks=1)), False),
        "temporal.pt": (
            TemporalLifter(
                TemporalConfig(frames=5, dim=8, blocks=1, heads=2, num_points=17, reduction="none", prune="none")
            ),
            False,
        ),
    }
    seeds = {}
    for name, (model, half) in models.items():
        save_checkpoint(tmp / name, model, data_version="fuzz-seed", extra={"epoch": 1}, half=half)
        seeds[name] = (tmp / name).read_bytes()
    return seeds


def _seeds_manifest(tmp: Path) -> dict[str, bytes]:
    """export.manifest.Manifest written over the fuzz artifacts folder: fp32 + int8 ONNX, an engine; a split one."""
    from export.manifest import Manifest

    root = tmp / "artifacts"
    onnx_path, engine = _artifact_folder(root)
    man = Manifest(root, model_hash=MODEL_HASH, model_source="fuzz seed", calibration={"hash": "c0ffee", "poses": 8})
    man.add_file(onnx_path, artifact="hipart", kind="onnx", precision="fp32", model_hash=MODEL_HASH, opset=17)
    man.add_file(onnx_path, artifact="hipart", kind="onnx", precision="int8", model_hash=MODEL_HASH, opset=17,
                 calibration_hash="c0ffee", status="DRIFT > target")  # fmt: skip
    key = _engine_key()
    man.add_file(engine, artifact="hipart", kind="engine", precision="fp16", model_hash=MODEL_HASH,
                 engine={"gpu_name": key.gpu_name, "compute_capability": key.compute_capability,
                         "trt_version": key.trt_version}, source="hipart.onnx")  # fmt: skip
    seeds = {"full.json": man.write().read_bytes()}
    split = Manifest(root, model_hash=MODEL_HASH)
    for name in ("densify", "lift"):
        split.add_file(onnx_path, artifact=name, kind="onnx", precision="fp32", model_hash=MODEL_HASH, opset=17)
    (root / "manifest.json").unlink()
    seeds["split.json"] = split.write().read_bytes()
    return seeds


def _seeds_sidecar(tmp: Path) -> dict[str, bytes]:
    """export.engine_cache.EngineCache.store's sidecar for the fuzz key (plain, with extras, for another GPU)."""
    from dataclasses import replace

    from export.engine_cache import EngineCache

    cache = EngineCache(tmp)
    key = _engine_key()
    seeds = {}
    for name, k, extra in (
        ("match.json", key, None),
        ("extra.json", key, {"source": "hipart.onnx", "bytes": 3}),
        ("other_gpu.json", replace(key, gpu_name="RTX 4090", compute_capability="8.9"), None),
    ):
        cache.store("hipart", k, ENGINE_BYTES, extra)
        seeds[name] = cache.paths("hipart", k)[1].read_bytes()
    return seeds


def _seeds_onnx(tmp: Path) -> dict[str, bytes]:
    """Tiny ONNX models shaped like the hipart artifact (x_s -> pose3d), with and without hipart.* metadata."""
    import onnx
    from onnx import TensorProto, helper

    from calib import onnx_metadata as md

    def model(with_meta: bool) -> bytes:
        x = helper.make_tensor_value_info("x_s", TensorProto.FLOAT, [1, 17, 2])
        y = helper.make_tensor_value_info("pose3d", TensorProto.FLOAT, [1, 17, 3])
        pad = helper.make_tensor("pads", TensorProto.INT64, [6], [0, 0, 0, 0, 0, 1])
        graph = helper.make_graph([helper.make_node("Pad", ["x_s", "pads"], ["pose3d"])], "hipart", [x], [y], [pad])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        if with_meta:
            md.attach(m, md.ExportMetadata("hipart", MODEL_HASH, 17, {"x_s": "2D joints"}, {"pose3d": "3D joints"}))
        onnx.checker.check_model(m)
        return m.SerializeToString()

    return {"meta.onnx": model(True), "plain.onnx": model(False)}


# ----------------------------------------------------------------------------------------------------- worker


class Recorder:
    """Counts executions, records unexpected exceptions (deduplicated by type and raising line), writes stats."""

    def __init__(self, target: str, run: Callable[[bytes], None], crash_dir: Path, stats: Path, runs: int,
                 max_seconds: float | None):  # fmt: skip
        self.target, self.run, self.crash_dir, self.stats_path = target, run, crash_dir, stats
        self.runs, self.max_seconds = runs, max_seconds
        self.executions = 0
        self.crashes: dict[str, dict[str, Any]] = {}
        self.slowest = (0.0, "")
        self.t0 = time.monotonic()
        self._last_stats = self.t0

    def __call__(self, data: bytes) -> None:
        t = time.perf_counter()
        try:
            self.run(data)
        except Exception as e:  # anything the reader does not document is a finding
            self._record(e, data)
        dt = time.perf_counter() - t
        if dt > self.slowest[0]:
            self.slowest = (dt, hashlib.sha1(data).hexdigest()[:12])
        self.executions += 1
        now = time.monotonic()
        done = self.executions >= self.runs or (self.max_seconds is not None and now - self.t0 >= self.max_seconds)
        if done or now - self._last_stats >= STATS_EVERY_S:
            self._last_stats = now
            self.write_stats(done)
        if done:
            sys.stdout.flush()
            os._exit(0)  # libFuzzer would otherwise keep going past our own limits

    def _record(self, e: Exception, data: bytes) -> None:
        frames = traceback.extract_tb(e.__traceback__)
        ours = [f for f in frames if f.filename.startswith(str(ROOT)) and "benchmarks" not in f.filename]
        where = ours[-1] if ours else frames[-1]
        loc = f"{Path(where.filename).resolve().relative_to(ROOT) if ours else where.filename}:{where.lineno}"
        key = f"{type(e).__name__} at {loc}"
        c = self.crashes.get(key)
        if c is None:
            msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            c = self.crashes[key] = {"type": type(e).__qualname__, "message": msg, "where": loc, "count": 0,
                                     "reproducer": None, "reproducer_bytes": None}  # fmt: skip
            print(f"CRASH {key}: {msg}", flush=True)
        c["count"] += 1
        if c["reproducer_bytes"] is None or len(data) < c["reproducer_bytes"]:  # keep the smallest input
            self.crash_dir.mkdir(parents=True, exist_ok=True)
            name = f"{type(e).__name__}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
            p = self.crash_dir / name
            p.write_bytes(data)
            c["reproducer"], c["reproducer_bytes"] = str(p.relative_to(ROOT)), len(data)

    def write_stats(self, done: bool) -> None:
        """The worker's running totals (read by the parent; final when `done`)."""
        doc = {"executions": self.executions, "seconds": round(time.monotonic() - self.t0, 2), "done": done,
               "crashes": list(self.crashes.values()),
               "slowest_input_s": round(self.slowest[0], 4), "slowest_input_sha1": self.slowest[1]}  # fmt: skip
        tmp = self.stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.stats_path)


def worker(args: argparse.Namespace) -> None:
    """Run libFuzzer in this process on one target (started by the parent, `main`)."""
    import importlib
    import logging

    import atheris

    target = TARGETS[args.target]
    warnings.simplefilter("ignore")  # numpy overflow warnings etc. are not findings and slow the loop
    logging.getLogger("hipart").setLevel(logging.ERROR)  # KeypointSource logs an "assuming COCO-17" event
    for mod in target.preload:  # third-party code: imported first, so never instrumented
        importlib.import_module(mod)
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{args.target}-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK)
                                 else None))  # fmt: skip
    with atheris.instrument_imports(include=list(OUR_PACKAGES)):
        run = target.setup(work)
    base = BUILD / args.target
    rec = Recorder(args.target, run, base / "crashes", Path(args.stats), args.runs, args.max_seconds)
    corpus = Path(args.corpus)
    corpus.mkdir(parents=True, exist_ok=True)
    dirs = [str(corpus)] + [str(base / "seeds")] * (base / "seeds").is_dir()
    lf_args = [sys.argv[0], *dirs, f"-max_len={MAX_LEN}", f"-timeout={TIMEOUT_S}", f"-rss_limit_mb={RSS_LIMIT_MB}",
               f"-runs={args.runs + 1000}", f"-artifact_prefix={base / 'crashes'}/", "-print_final_stats=1",
               "-print_pcs=0", "-close_fd_mask=0"]  # fmt: skip
    if args.max_seconds:
        lf_args.append(f"-max_total_time={int(args.max_seconds) + 30}")
    (base / "crashes").mkdir(parents=True, exist_ok=True)
    atheris.Setup(lf_args, rec, **({"custom_mutator": target.mutator} if target.mutator else {}))
    atheris.Fuzz()


# ----------------------------------------------------------------------------------------------------- parent


def _machine() -> str:
    """CPU model, cores, OS and Python, for the results file."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}"


def _libfuzzer_findings(log_text: str, rc: int) -> list[dict[str, Any]]:
    """Hangs, memory blow-ups and native crashes that stopped libFuzzer, from its output."""
    found = []
    kinds = (("ALARM: working on the last Unit for", "timeout"), ("ERROR: libFuzzer: out-of-memory", "out-of-memory"),
             ("ERROR: libFuzzer: deadly signal", "deadly signal"), ("ERROR: libFuzzer: fuzz target exited", "exit"),
             ("=== Uncaught Python exception", "uncaught exception"))  # fmt: skip
    for marker, kind in kinds:
        if marker in log_text:
            arts = re.findall(r"Test unit written to (\S+)", log_text)
            line = next(ln for ln in log_text.splitlines() if marker in ln)
            found.append({"type": kind, "message": line.strip()[:300], "where": "libFuzzer", "count": 1,
                          "reproducer": arts[-1] if arts else None})  # fmt: skip
    if rc not in (0,) and not found:
        found.append({"type": "worker exit", "message": f"worker exited with status {rc}", "where": "libFuzzer",
                      "count": 1, "reproducer": None})  # fmt: skip
    return found


def fuzz(args: argparse.Namespace) -> dict[str, Any]:
    """Run the worker for one target, then assemble and write the results JSON."""
    base = BUILD / args.target
    corpus = Path(args.corpus) if args.corpus else base / "corpus"
    if not (base / "seeds").is_dir():
        make_seeds([args.target])
    stats = Path(tempfile.mkdtemp(prefix="fuzz-stats-")) / "stats.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--target", args.target, "--runs",
           str(args.runs), "--corpus", str(corpus), "--stats", str(stats)]  # fmt: skip
    if args.max_seconds:
        cmd += ["--max-seconds", str(args.max_seconds)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    log_path = base / "libfuzzer.log"
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    wall = time.monotonic() - t0
    log_text = log_path.read_text(errors="replace")
    st = json.loads(stats.read_text()) if stats.is_file() else {"executions": 0, "seconds": wall, "crashes": []}
    crashes = [{k: v for k, v in c.items() if k != "reproducer_bytes"} for c in st["crashes"]]
    if not st.get("done"):
        crashes += _libfuzzer_findings(log_text, proc.returncode)
    secs = st["seconds"] or wall
    cov = re.findall(r"cov: (\d+) ft: (\d+)", log_text)
    doc = {
        "target": args.target,
        "executions": st["executions"],
        "seconds": round(secs, 1),
        "exec_per_s": round(st["executions"] / secs, 1) if secs else None,
        "runs_requested": args.runs,
        "completed": bool(st.get("done")),
        "crashes": crashes,
        "unhandled_exceptions": len(crashes),
        "corpus_size": sum(1 for p in corpus.iterdir() if p.is_file()) if corpus.is_dir() else 0,
        "seeds": sum(1 for p in (base / "seeds").iterdir()) if (base / "seeds").is_dir() else 0,
        "coverage_edges": int(cov[-1][0]) if cov else None,
        "slowest_input_s": st.get("slowest_input_s"),
        "max_len": MAX_LEN,
        "timeout_s": TIMEOUT_S,
        "rss_limit_mb": RSS_LIMIT_MB,
        "machine": _machine(),
        "atheris": _atheris_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "command": " ".join(["python", "benchmarks/fuzz.py", *sys.argv[1:]]),
        "log": str(log_path.relative_to(ROOT)),
    }
    out = Path(args.out) if args.out else RESULTS / f"fuzz-{args.target}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{args.target}: {doc['executions']} executions in {doc['seconds']} s ({doc['exec_per_s']}/s), "
          f"{len(crashes)} unhandled, corpus {doc['corpus_size']} -> {out}")  # fmt: skip
    for c in crashes:
        print(f"  {c['type']} at {c['where']}: {c['message']} (reproducer: {c['reproducer']})")
    shutil.rmtree(stats.parent, ignore_errors=True)
    return doc


def _atheris_version() -> str | None:
    """The installed atheris version."""
    from importlib import metadata

    try:
        return metadata.version("atheris")
    except metadata.PackageNotFoundError:
        return None


def results_table() -> str:
    """The docs/FUZZING.md summary table from benchmarks/results/fuzz-<target>.json (targets not run yet: '-')."""
    rows = ["| target | executions | seconds | exec/s | unhandled exceptions | corpus | coverage edges |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    machine = None
    for name in TARGETS:
        f = RESULTS / f"fuzz-{name}.json"
        if not f.is_file():
            rows.append(f"| `{name}` | - | - | - | - | - | - |")
            continue
        d = json.loads(f.read_text())
        machine = machine or d["machine"]
        crashes = ", ".join(f"{c['type']} at {c['where']}" for c in d["crashes"]) or "0"
        rows.append(f"| `{name}` | {d['executions']:,} | {d['seconds']:.0f} | {d['exec_per_s']:,.0f} | {crashes} | "
                    f"{d['corpus_size']} | {d['coverage_edges']} |")  # fmt: skip
    return "\n".join(rows) + (f"\n\nMachine: {machine}." if machine else "")


def main(argv: list[str] | None = None) -> int:
    """CLI: --make-seeds, or fuzz one --target (the parent starts a worker process that runs libFuzzer)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=sorted(TARGETS), help="which reader to fuzz")
    ap.add_argument("--runs", type=int, default=1_000_000, help="executions to run (default 1,000,000)")
    ap.add_argument("--max-seconds", type=float, default=None, help="stop after this many seconds")
    ap.add_argument("--corpus", default=None, help="corpus folder (default build/fuzz/<target>/corpus)")
    ap.add_argument("--out", default=None, help="results JSON (default benchmarks/results/fuzz-<target>.json)")
    ap.add_argument("--make-seeds", action="store_true", help="write build/fuzz/<target>/seeds (default: every target)")
    ap.add_argument("--table", action="store_true", help="print the results table of docs/FUZZING.md")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--stats", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.table:
        print(results_table())
        return 0
    if args.make_seeds:
        make_seeds([args.target] if args.target else list(TARGETS))
        return 0
    if not args.target:
        ap.error("--target is required (or --make-seeds)")
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("benchmarks/fuzz.py needs atheris (not part of requirements-ci.txt): pip install atheris==3.0.0",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.worker:
        worker(args)
        return 0
    doc = fuzz(args)
    return 0 if doc["unhandled_exceptions"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
