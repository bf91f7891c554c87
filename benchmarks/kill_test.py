"""SIGKILL durability (GitHub issue 19): kill `hipart-run` at a random moment N times; every output must stay readable.

Each run: `hipart-run --source SRC --loop --backend torch --threads 1 --save out.mp4 --poses out.jsonl
--poses out.npz`, SIGKILLed at a seeded random moment between --min-delay and --max-delay seconds after start.
Then: every complete JSONL line parses (a trailing partial line is allowed and counted), the video opens with
cv2 and PyAV and decodes >= 1 frame, the NPZ journal `out.npz.partial.jsonl` parses, and `hipart-run --recover
out.npz` (when hipart-run has it) makes a loadable .npz with as many frames as the journal.

    python benchmarks/kill_test.py                   # 20 runs -> benchmarks/results/kill-test.json
    python benchmarks/kill_test.py --runs 3 --source sample-clip --run-args "--detector onnx --detector-model m.onnx"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Outputs written within this many frames of the kill may still sit in a writer's buffer: a video with fewer
# JSONL frames than this behind it is allowed to be empty.
VIDEO_GRACE_FRAMES = 10


def _exe(name: str) -> str:
    p = BIN / name
    return str(p) if p.exists() else name


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    return env


def check_jsonl(path: Path) -> dict[str, Any]:
    """Complete lines parsed, partial trailing line counted; ok=False when a complete line does not parse."""
    if not path.exists():
        return {"exists": False, "ok": True, "frames": 0, "partial_line": False}
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()
    bad = []
    for i, line in enumerate(lines):
        try:
            json.loads(line)
        except ValueError:
            bad.append(i + 1)
    return {"exists": True, "ok": not bad, "frames": len(lines) - len(bad), "bad_lines": bad[:5],
            "partial_line": bool(tail)}  # fmt: skip


def check_video(path: Path) -> dict[str, Any]:
    """Frames decoded by cv2 and by PyAV (each capped at 5000), and why either failed."""
    r: dict[str, Any] = {"exists": path.exists(), "bytes": path.stat().st_size if path.exists() else 0}
    if not r["exists"]:
        return {**r, "cv2_frames": 0, "av_frames": 0}
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = 0
    if cap.isOpened():
        while n < 5000 and cap.read()[0]:
            n += 1
    else:
        r["cv2_error"] = "cannot open"
    cap.release()
    r["cv2_frames"] = n
    try:
        import av

        m = 0
        with av.open(str(path)) as c:
            for _ in c.decode(video=0):
                m += 1
                if m >= 5000:
                    break
        r["av_frames"] = m
    except ImportError:
        r["av_frames"] = None
        r["av_error"] = "PyAV not installed"
    except Exception as e:  # av.error.* and friends: the file is not readable
        r["av_frames"] = 0
        r["av_error"] = f"{type(e).__name__}: {str(e)[:120]}"
    return r


def has_recover() -> bool:
    """True when `hipart-run --help` lists --recover."""
    try:
        out = subprocess.run([_exe("hipart-run"), "--help"], capture_output=True, text=True, timeout=120,
                             env=_env()).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    return "--recover" in out


def recover(d: Path, journal_frames: int) -> dict[str, Any]:
    """`hipart-run --recover out.npz`, then load the .npz and compare its frame count with the journal's."""
    t0 = time.monotonic()
    p = subprocess.run([_exe("hipart-run"), "--recover", str(d / "out.npz")], cwd=d, capture_output=True,
                       text=True, timeout=300, env=_env())  # fmt: skip
    r: dict[str, Any] = {"rc": p.returncode, "seconds": round(time.monotonic() - t0, 2),
                         "message": (p.stderr.strip().splitlines() or [""])[-1][:300]}  # fmt: skip
    if "Traceback (most recent call last)" in p.stderr:
        r["traceback"] = True
    try:
        with np.load(d / "out.npz", allow_pickle=False) as z:
            frames = int(len(z["frame"]))
        r.update(npz_frames=frames, ok=frames == journal_frames and p.returncode == 0)
    except Exception as e:  # missing or unreadable
        r.update(npz_frames=None, ok=False, error=f"{type(e).__name__}: {str(e)[:160]}")
    return r


def one_run(i: int, delay: float, a: argparse.Namespace, root: Path, can_recover: bool) -> dict[str, Any]:
    """Start, SIGKILL after `delay` s, check the outputs."""
    d = root / f"run{i:02d}"
    d.mkdir()
    argv = [_exe("hipart-run"), "--source", a.source, "--loop", "--backend", a.backend, "--threads", "1",
            "--quiet", "--save", str(d / "out.mp4"), "--poses", str(d / "out.jsonl"), "--poses", str(d / "out.npz"),
            *shlex.split(a.run_args)]  # fmt: skip
    with open(d / ".stderr", "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, cwd=d, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True)  # fmt: skip
        exited_early = None
        while time.monotonic() - t0 < delay:
            if proc.poll() is not None:
                exited_early = proc.returncode
                break
            time.sleep(0.02)
        killed_at = time.monotonic() - t0
        if exited_early is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    row: dict[str, Any] = {"run": i, "delay_s": round(delay, 2), "killed_at_s": round(killed_at, 2)}
    if exited_early is not None:
        tail = (d / ".stderr").read_text(errors="replace").strip().splitlines()
        row.update(ok=False, why=f"hipart-run exited by itself with {exited_early} before the kill: "
                   f"{tail[-1][:200] if tail else ''}")  # fmt: skip
        return row
    js = check_jsonl(d / "out.jsonl")
    journal = check_jsonl(d / "out.npz.partial.jsonl")
    video = check_video(d / "out.mp4")
    row.update(jsonl=js, journal=journal, video=video, npz_exists=(d / "out.npz").exists())
    problems = []
    if not js["ok"]:
        problems.append(f"jsonl: unparseable lines {js['bad_lines']}")
    if not journal["ok"]:
        problems.append(f"npz journal: unparseable lines {journal['bad_lines']}")
    flushed = js["frames"]
    if flushed and not journal["exists"] and not row["npz_exists"]:
        problems.append("npz: neither the .npz nor its journal exists")
    vid_frames = max(video.get("cv2_frames") or 0, video.get("av_frames") or 0)
    if flushed >= VIDEO_GRACE_FRAMES and (not video.get("cv2_frames") or not video.get("av_frames")):
        problems.append(f"video: cv2 {video.get('cv2_frames')} / PyAV {video.get('av_frames')} frames decoded "
                        f"after {flushed} JSONL frames ({video.get('av_error') or video.get('cv2_error') or ''})")
    row["frames"] = {"jsonl": flushed, "journal": journal["frames"], "video": vid_frames}
    if can_recover and journal["exists"]:
        row["recover"] = recover(d, journal["frames"])
        if not row["recover"]["ok"]:
            problems.append(f"--recover: {row['recover'].get('error') or row['recover']['message']} "
                            f"(npz {row['recover'].get('npz_frames')} vs journal {journal['frames']} frames)")
    elif not can_recover:
        row["recover"] = "skipped: hipart-run has no --recover yet"
    row.update(ok=not problems, why="; ".join(problems))
    if flushed == 0:
        row["note"] = "killed before the first frame was written"
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the kill test, print a table, write the JSON; exit 1 when a run lost output."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--source", default="sample", help="hipart-run --source (default sample: bundled keypoints; "
                    "sample-clip needs a working detector, see --run-args)")  # fmt: skip
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--run-args", default="", help="extra hipart-run arguments (one shell-quoted string)")
    ap.add_argument("--min-delay", type=float, default=2.0)
    ap.add_argument("--max-delay", type=float, default=12.0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "kill-test.json")
    ap.add_argument("--keep", action="store_true", help="keep the run folders (printed)")
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    delays = [rng.uniform(a.min_delay, a.max_delay) for _ in range(a.runs)]
    can_recover = has_recover()
    if not can_recover:
        print("note: `hipart-run --help` has no --recover yet; the recovery check is skipped", file=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="hipart-kill-test-"))
    rows = []
    t0 = time.monotonic()
    try:
        for i, delay in enumerate(delays):
            r = one_run(i, delay, a, root, can_recover)
            rows.append(r)
            f = r.get("frames", {})
            print(f"run {i:2d} kill at {r['killed_at_s']:5.2f} s  jsonl {f.get('jsonl', '-')}  journal "
                  f"{f.get('journal', '-')}  video {f.get('video', '-')}  {'ok' if r['ok'] else 'FAIL: ' + r['why']}",
                  file=sys.stderr, flush=True)  # fmt: skip
    finally:
        if a.keep:
            print(f"run folders kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    totals = {
        "runs": len(rows),
        "ok": sum(r["ok"] for r in rows),
        "failed": sum(not r["ok"] for r in rows),
        "jsonl_bad": sum(not r.get("jsonl", {}).get("ok", True) for r in rows),
        "jsonl_partial_tail": sum(bool(r.get("jsonl", {}).get("partial_line")) for r in rows),
        "journal_bad": sum(not r.get("journal", {}).get("ok", True) for r in rows),
        "video_unreadable": sum("video:" in r.get("why", "") for r in rows),
        "recover_failed": sum(isinstance(r.get("recover"), dict) and not r["recover"]["ok"] for r in rows),
        "recover_checked": can_recover,
        "killed_before_first_frame": sum(r.get("note", "").startswith("killed before") for r in rows),
    }
    report = {
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, OMP_NUM_THREADS=1",
        "command": f"hipart-run --source {a.source} --loop --backend {a.backend} --threads 1 --save out.mp4 "
        f"--poses out.jsonl --poses out.npz {a.run_args}".strip(),
        "seed": a.seed, "delay_range_s": [a.min_delay, a.max_delay], "wall_s": round(time.monotonic() - t0, 1),
        "totals": totals, "runs": rows,
    }  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1))
    print("| run | kill at s | jsonl | partial tail | journal | video (cv2/av) | recover | ok |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        v = r.get("video", {})
        rec = r.get("recover")
        rec_s = rec if isinstance(rec, str) or rec is None else f"{rec.get('npz_frames')} frames rc {rec['rc']}"
        print(f"| {r['run']} | {r['killed_at_s']} | {r.get('jsonl', {}).get('frames', '-')} | "
              f"{r.get('jsonl', {}).get('partial_line', '-')} | {r.get('journal', {}).get('frames', '-')} | "
              f"{v.get('cv2_frames', '-')}/{v.get('av_frames', '-')} | {rec_s} | "
              f"{'yes' if r['ok'] else '**NO** ' + r.get('why', '')[:120]} |")  # fmt: skip
    print(f"\n{totals['ok']}/{totals['runs']} runs kept every output readable; wrote {a.out}")
    return 0 if not totals["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
