"""Soak test: the full pipeline on a looped video for N minutes, sampling process memory.

`python -m edge.soak --seconds 600 [--source video] [--config paper] [--json out.json]`
Memory must stay flat: the report gives RSS after warm-up, at the end, its maximum, and the slope of
a least-squares line through the samples taken after warm-up (MiB per minute).
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

    samples: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    last = [0.0]

    def on_frame(item: Any, st: Any) -> None:
        """Sample RSS every `sample_every_s` seconds."""
        now = time.perf_counter() - t0
        if now - last[0] >= sample_every_s:
            last[0] = now
            samples.append((now, rss_mb()))
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
            poses=[str(Path(tmp) / "out.jsonl")],
            loop=True,
            duration=seconds,
        )
        with build_runtime(opts) as rt:  # what hipart-run builds (threads, detector rule, outputs)
            st = rt.pipeline(on_frame).run()
            model, has_detector = rt.loaded.source, rt.estimator.detector is not None
        out_mb = (Path(tmp) / "out.jsonl").stat().st_size / 2**20
    after = [(t, m) for t, m in samples if t >= warmup_s] or samples
    ts, ms = np.array([t for t, _ in after]), np.array([m for _, m in after])
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
        "jsonl_mib": round(out_mb, 1),
        "error": st.error,
        "samples": [(round(t, 1), round(m, 1)) for t, m in samples],
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: print the soak report as JSON (and write it with --json)."""
    p = argparse.ArgumentParser(prog="python -m edge.soak", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--source", help="video to loop (default: the rendered synthetic 640x480 clip)")
    p.add_argument("--config", default="paper", choices=["paper", "tiny"])
    p.add_argument("--checkpoint")
    p.add_argument("--backend", default="torch")
    p.add_argument("--artifacts")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds excluded from the slope (default 60)")
    p.add_argument("--json")
    a = p.parse_args(argv)
    rep = soak(a.seconds, a.source, a.config, a.checkpoint, a.backend, a.artifacts, warmup_s=a.warmup)
    text = json.dumps(rep, indent=2)
    print(text)
    if a.json:
        Path(a.json).write_text(text)
    return 0 if rep["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
