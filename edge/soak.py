"""Soak test: the full pipeline on a looped video for N minutes, sampling process memory.

`python -m edge.soak --seconds 600 [--source video] [--config paper] [--json out.json]`
Memory must stay flat and speed must not drift: the report gives RSS after warm-up, at the end, its maximum, the
slope of a least-squares line through the samples taken after warm-up (MiB per minute), the FPS of each sample
interval with the relative change from the first to the last third of the run, and whether every output (JSONL,
NPZ, video) is readable with as many frames as were written.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.bench import rss_mb


def soak(
    seconds: float,
    source: str | None = None,
    config: str = "paper",
    checkpoint: str | None = None,
    backend: str = "torch",
    artifacts: str | None = None,
    detector: str = "blazepose",
    warmup_s: float = 60.0,
    sample_every_s: float = 10.0,
) -> dict[str, Any]:
    """Run the looped pipeline for `seconds` (outputs to a temp dir) and return the memory report."""
    from edge.run import RunOptions, build_runtime
    from edge.sample import render_clip

    samples: list[tuple[float, float, int]] = []  # (seconds, RSS MiB, frames written)
    t0 = time.perf_counter()
    last = [0.0]

    def on_frame(item: Any, st: Any) -> None:
        """Sample RSS every `sample_every_s` seconds."""
        now = time.perf_counter() - t0
        if now - last[0] >= sample_every_s:
            last[0] = now
            samples.append((now, rss_mb(), st.frames_out))
            print(f"{now:6.0f} s  frames {st.frames_out}  RSS {samples[-1][1]:.1f} MiB", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        opts = RunOptions(
            source=source or str(render_clip(Path(tmp) / "clip.mp4", 90)),
            backend=backend,
            artifacts=artifacts,
            checkpoint=checkpoint,
            config=config,
            detector=detector,
            save=str(Path(tmp) / "out.mp4"),
            poses=[str(Path(tmp) / "out.jsonl"), str(Path(tmp) / "out.npz")],
            loop=True,
            duration=seconds,
        )
        with build_runtime(opts) as rt:  # what hipart-run builds (threads, detector rule, outputs)
            st = rt.pipeline(on_frame).run()
            model, has_detector = rt.loaded.source, rt.estimator.detector is not None
        out_mb = (Path(tmp) / "out.jsonl").stat().st_size / 2**20
        outputs = check_outputs(Path(tmp), st.frames_out)
    after = [(t, m) for t, m, _ in samples if t >= warmup_s] or [(t, m) for t, m, _ in samples]
    ts, ms = np.array([t for t, _ in after]), np.array([m for _, m in after])
    fps = [(t1, (n1 - n0) / (t1 - t0)) for (t0, _, n0), (t1, _, n1) in zip(samples, samples[1:], strict=False)]
    fps_after = [f for t, f in fps if t >= warmup_s] or [f for _, f in fps]
    third = max(1, len(fps_after) // 3)
    drift = (np.mean(fps_after[-third:]) / np.mean(fps_after[:third]) - 1) if len(fps_after) >= 2 else 0.0
    slope = float(np.polyfit(ts / 60, ms, 1)[0]) if len(after) >= 2 else 0.0
    return {
        "seconds": round(st.wall_s, 1),
        "frames": st.frames_out,
        "fps": round(st.fps, 2),
        "backend": backend,
        "detector": detector if has_detector else "none",
        "model": model,
        "rss_after_warmup_mib": round(float(ms[0]), 1) if len(ms) else None,
        "rss_end_mib": round(float(ms[-1]), 1) if len(ms) else None,
        "rss_max_mib": round(float(ms.max()), 1) if len(ms) else None,
        "rss_slope_mib_per_min": round(slope, 3),
        "fps_drift_first_to_last_third": round(float(drift), 3),
        "fps_per_interval": [(round(t, 1), round(f, 2)) for t, f in fps],
        "jsonl_mib": round(out_mb, 1),
        "outputs": outputs,
        "outputs_valid": all(o["ok"] for o in outputs.values()),
        "error": st.error,
        "samples": [(round(t, 1), round(m, 1), n) for t, m, n in samples],
    }


def check_outputs(folder: Path, frames: int) -> dict[str, dict[str, Any]]:
    """Every output of the soak read back: JSONL lines, NPZ frames, video frames, each against `frames` written."""
    import cv2

    res: dict[str, dict[str, Any]] = {}
    try:
        with open(folder / "out.jsonl", encoding="utf-8") as f:
            idx = [json.loads(line)["frame"] for line in f]
        res["jsonl"] = {"frames": len(idx), "ok": len(idx) == frames and len(set(idx)) == len(idx)}
    except (OSError, ValueError, KeyError) as e:
        res["jsonl"] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    try:
        with np.load(folder / "out.npz", allow_pickle=False) as z:
            n = len(z["frame"])
        res["npz"] = {"frames": n, "ok": n == frames}
    except (OSError, ValueError, KeyError) as e:
        res["npz"] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    cap = cv2.VideoCapture(str(folder / "out.mp4"))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    res["video"] = {"frames": n, "ok": n == frames}
    return res


def main(argv: list[str] | None = None) -> int:
    """CLI: print the soak report as JSON (and write it with --json)."""
    p = argparse.ArgumentParser(prog="python -m edge.soak", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--detector", default="blazepose", choices=["blazepose", "blazepose-multi", "onnx"])
    p.add_argument("--source", help="video to loop (default: the rendered synthetic 640x480 clip)")
    p.add_argument("--config", default="paper", choices=["paper", "tiny"])
    p.add_argument("--checkpoint")
    p.add_argument("--backend", default="torch")
    p.add_argument("--artifacts")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds excluded from the slope (default 60)")
    p.add_argument("--json")
    a = p.parse_args(argv)
    rep = soak(a.seconds, a.source, a.config, a.checkpoint, a.backend, a.artifacts, a.detector, warmup_s=a.warmup)
    text = json.dumps(rep, indent=2)
    print(text)
    if a.json:
        Path(a.json).write_text(text)
    return 0 if rep["error"] is None and rep["outputs_valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
