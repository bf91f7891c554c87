"""onnxruntime backend: session start, first frame and per-call latency, "step" mode vs "hipart" (unrolled) mode.

    python benchmarks/ort_start.py --artifacts /tmp/exp [--hipart exported] [--threads 2] [--calls 20]

--artifacts: a folder whose manifest lists decode_step + detokenize + lift (`hipart-export --onnx-only --only
decode_step,detokenize,lift --out DIR`); --hipart: a folder (or file) with hipart.onnx of the same model (default:
--artifacts when its manifest lists hipart, else exported/). Each mode runs in a fresh interpreter (no torch): the
start time is measured after `import edge`, as `hipart-run` sees it. Writes
benchmarks/results/cpu-2core-ort-step-vs-unrolled.json (--out) with the outputs of both modes compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "cpu-2core-ort-step-vs-unrolled.json"


def worker(args: argparse.Namespace) -> None:
    """One mode in this (fresh) process: start, first frame, latency; outputs saved to args.save."""
    import time

    t_import = time.perf_counter()
    import edge  # noqa: F401  (the deploy path's import, timed)
    from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
    from edge.bench import bench_inputs

    t0 = time.perf_counter()
    be = OnnxRuntimeBackend(args.worker_artifacts, device="cpu", threads=args.threads, mode=args.worker)
    t1 = time.perf_counter()
    x1, c1 = bench_inputs(1, seed=0)
    be.run(x1, c1)
    t2 = time.perf_counter()
    rec = {
        "mode": be.mode,
        "artifacts": be.info()["artifacts"],
        "artifact_model_hash": be.artifact_hash,
        "import_edge_s": round(t0 - t_import, 3),
        "session_start_s": round(t1 - t0, 3),
        "first_infer_s": round(t2 - t1, 4),
        "first_frame_after_imports_s": round(t2 - t0, 3),
        "latency_ms": {},
    }
    saved = {}
    for b in args.batches:
        x, c = bench_inputs(b, seed=b)
        for _ in range(2):
            res = be.run(x, c)
        times, stages = [], []
        for _ in range(args.calls):
            t = time.perf_counter()
            res = be.run(x, c)
            times.append((time.perf_counter() - t) * 1e3)
            stages.append(res.timings)
        keys = [k for k in stages[0] if k not in ("mask", "total")]
        rec["latency_ms"][str(b)] = {
            "median": round(float(np.median(times)), 3),
            "p90": round(float(np.percentile(times, 90)), 3),
            "min": round(float(np.min(times)), 3),
            "calls": args.calls,
            "stages_median": {k: round(float(np.median([s[k] for s in stages])), 3) for k in keys},
        }
        saved.update({f"{n}_{b}": getattr(res, n) for n in ("tokens", "dense", "fine", "pose3d")})
    np.savez(args.save, **saved)
    print(json.dumps(rec))


def _hipart_source(artifacts: Path, given: str | None) -> Path | None:
    if given:
        return Path(given)
    man = artifacts / "manifest.json"
    if man.is_file() and "hipart.fp32" in json.loads(man.read_text()).get("artifacts", {}):
        return artifacts
    return ROOT / "exported" if (ROOT / "exported" / "hipart.onnx").is_file() else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", type=Path, default=ROOT / "exported", help="folder with the step-mode artifacts")
    p.add_argument("--hipart", help="folder or file with hipart.onnx (default: see above); 'none' skips that mode")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: the backend's)")
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--batches", default="1,64")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-artifacts", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.batches = [int(b) for b in str(args.batches).split(",")]
    if args.worker:
        worker(args)
        return 0

    hip = None if args.hipart == "none" else _hipart_source(args.artifacts, args.hipart)
    runs = [("step", args.artifacts)] + ([("hipart", hip)] if hip is not None else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load_before = os.getloadavg()
    modes, outs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, src in runs:
            save = Path(tmp) / f"{mode}.npz"
            cmd = [sys.executable, __file__, "--worker", mode, "--worker-artifacts", str(src), "--save", str(save),
                   "--calls", str(args.calls), "--batches", ",".join(map(str, args.batches))]  # fmt: skip
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            print(f"[ort_start] {mode}: {src}", file=sys.stderr)
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if r.returncode:
                print(r.stdout + r.stderr, file=sys.stderr)
                return 1
            modes[mode] = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"[ort_start] {json.dumps(modes[mode])}", file=sys.stderr)
            with np.load(save) as z:
                outs[mode] = {k: z[k] for k in z.files}
    parity = {}
    if len(outs) == 2:
        a, b = outs["step"], outs["hipart"]
        for k in a:
            if k.startswith("tokens"):
                parity[k + "_equal"] = bool(np.array_equal(a[k], b[k]))
            else:
                parity[k + "_max_abs_diff"] = float(np.abs(a[k].astype(np.float64) - b[k]).max())
    import onnxruntime

    doc = {
        "what": "onnxruntime backend start and latency: 'step' (decode_step looped 16x + detokenize + lift) vs "
        "'hipart' (hipart.onnx, all decode steps unrolled); bundled model, CPU",
        "command": "python benchmarks/ort_start.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "onnxruntime": onnxruntime.__version__, "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                    "note": "2 shared cores; a fuzzer and a benchmark ran in the background during the measurement"},
        "threads": args.threads or os.cpu_count(),
        "modes": modes,
        "step_vs_hipart": parity,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
