"""Fault table (GitHub issue 19): bad inputs, bad flags, bad files and signals against every command, classified.

Each case runs one command in a fresh temp folder (its cwd) and is classified as clear-error, graceful, ok,
raw-traceback, hang, silent-wrong or lost-output; a case passes when its class is the one it expects
(error -> clear-error, ok -> ok, graceful -> graceful).

    python benchmarks/fault_table.py                      # all cases -> benchmarks/results/fault-table.json
    python benchmarks/fault_table.py --list               # ids, commands, expectations
    python benchmarks/fault_table.py --only run-sigterm-mid,ckpt-run-bomb --out /tmp/ft.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # the harness's own cv2 checks: no FFmpeg chatter
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent
SAMPLE_KP = ROOT / "edge" / "assets" / "sample_walk.npz"
SAMPLE_VIDEO = ROOT / "edge" / "assets" / "sample_walk.mp4"
BUNDLED_PT = ROOT / "hipart" / "assets" / "hipart_default.pt"
TEMPORAL_PT = ROOT / "hipart" / "assets" / "temporal_default.pt"
HTP_PT = ROOT / "hipart" / "assets" / "htp_default.pt"
BVH_DIR = ROOT.parent / "shared" / "data" / "cmu_bvh"
TRACEBACK = "Traceback (most recent call last)"
CLASSES = ("clear-error", "graceful", "ok", "raw-traceback", "hang", "silent-wrong", "lost-output", "skipped")
PASS_CLASS = {"error": "clear-error", "ok": "ok", "graceful": "graceful"}
MARKER = "PWNED"  # a pickle that runs code creates this file in the case folder

Setup = Callable[[Path], None]


@dataclass
class Case:
    """One fault case: the command (with {d} = its temp folder), how to prepare it and what must happen."""

    id: str
    cmd: list[str]
    expect: str  # error | ok | graceful
    setup: Setup | None = None
    outputs: tuple[str, ...] = ()  # files (relative to {d}) that must exist and be readable
    timeout: float = 60.0
    signal: tuple[int, str] | None = None  # (signum, "t:SECONDS" | "lines:FILE:N") -- when to send it
    fsize: int | None = None  # RLIMIT_FSIZE in bytes (disk full), SIGXFSZ ignored
    stderr_re: str | None = None  # the message must match this (case-insensitive)
    stderr_not: tuple[str, ...] = ()  # ... and must not contain these
    max_s: float | None = None  # must finish (fail fast) within this many seconds
    unchanged: tuple[str, ...] = ()  # files the setup wrote that must keep their content
    min_frames: int = 1  # each output must hold at least this many frames
    allow_partial: bool = False  # a trailing partial JSONL line is tolerated (disk full)
    rc_ok: tuple[int, ...] | None = None  # allowed exit codes for "graceful" (default: any non-zero)
    skip: str | None = None  # reason to skip here (e.g. running as root)
    note: str = ""

    @property
    def command(self) -> str:
        """The command name (hipart-run, python -c ...)."""
        return self.cmd[0] if self.cmd[0] != "python" else "python (library)"


# ----------------------------------------------------------------------------------------------------- setups
def _kp_arrays(t: int = 10) -> dict[str, Any]:
    with np.load(SAMPLE_KP) as z:
        d = {k: z[k] for k in z.files}
    d["keypoints"], d["conf"] = d["keypoints"][:t], d["conf"][:t]
    return d


def kp_npz(name: str = "kp.npz", t: int = 10, drop: tuple[str, ...] = (), **over: Any) -> Setup:
    """Write a keypoint .npz from the bundled sample (first t frames) with some entries replaced or dropped."""

    def setup(d: Path) -> None:
        """Build the file."""
        a = _kp_arrays(t)
        a.update(over)
        for k in drop:
            a.pop(k, None)
        np.savez(d / name, **a)

    return setup


def kp_json(payload: Any, name: str = "kp.json", raw: str | None = None) -> Setup:
    """Write a keypoint .json (payload as JSON, or raw text)."""

    def setup(d: Path) -> None:
        """Build the file."""
        (d / name).write_text(raw if raw is not None else json.dumps(payload))

    return setup


def _json_frames(t: int = 5) -> list[dict[str, Any]]:
    a = _kp_arrays(t)
    return [{"keypoints": [a["keypoints"][i].tolist()], "conf": [a["conf"][i].tolist()]} for i in range(t)]


def write_bytes(name: str, data: bytes) -> Setup:
    """Write a file with these bytes."""

    def setup(d: Path) -> None:
        """Build the file."""
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)

    return setup


def truncated(src: Path, name: str, frac: float) -> Setup:
    """Copy the first `frac` of a file."""

    def setup(d: Path) -> None:
        """Build the file."""
        data = src.read_bytes()
        (d / name).write_bytes(data[: int(len(data) * frac)])

    return setup


def chain(*fns: Setup) -> Setup:
    """Run several setups in order."""

    def setup(d: Path) -> None:
        """Run them."""
        for fn in fns:
            fn(d)

    return setup


def precious(*names: str) -> Setup:
    """Pre-existing outputs that a run failing at start-up must not clobber."""

    def setup(d: Path) -> None:
        """Write them."""
        for n in names:
            (d / n).write_text("precious\n")

    return setup


def mkdirs(*names: str) -> Setup:
    """Create folders."""

    def setup(d: Path) -> None:
        """Create them."""
        for n in names:
            (d / n).mkdir(parents=True, exist_ok=True)

    return setup


def symlink(name: str, target: str) -> Setup:
    """name -> target (e.g. /dev/full)."""

    def setup(d: Path) -> None:
        """Create it."""
        (d / name).symlink_to(target)

    return setup


def avi_video(name: str = "v.avi", frames: int = 40, keep: float = 1.0, size: tuple[int, int] = (320, 240)) -> Setup:
    """An MJPG .avi of a moving box (the first `keep` fraction of its bytes kept: a truncated video)."""

    def setup(d: Path) -> None:
        """Render it."""
        import cv2

        path = d / name
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, size)
        for i in range(frames):
            img = np.full((size[1], size[0], 3), 40, np.uint8)
            cv2.rectangle(img, (20 + 3 * i, 40), (80 + 3 * i, 200), (200, 180, 160), -1)
            w.write(img)
        w.release()
        if keep < 1.0:
            data = path.read_bytes()
            path.write_bytes(data[: int(len(data) * keep)])

    return setup


def image_folder(name: str = "imgs", good: int = 4, corrupt: int = 1) -> Setup:
    """A folder of PNGs, `corrupt` of them garbage bytes."""

    def setup(d: Path) -> None:
        """Write the images."""
        import cv2

        f = d / name
        f.mkdir()
        for i in range(good):
            img = np.full((240, 320, 3), 30 + 20 * i, np.uint8)
            cv2.imwrite(str(f / f"{i:03d}.png"), img)
        for i in range(corrupt):
            (f / f"{good + i:03d}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))

    return setup


def onnx_model(name: str, pose: bool) -> Setup:
    """A valid ONNX model: a toy heatmap pose model [1,3,64,48] -> [1,17,16,12], or a non-pose Identity."""

    def setup(d: Path) -> None:
        """Build and save it."""
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        if pose:
            w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(17, 3, 1, 1)).astype(np.float32), "w")
            nodes = [
                helper.make_node("AveragePool", ["x"], ["p"], kernel_shape=[4, 4], strides=[4, 4]),
                helper.make_node("Conv", ["p", "w"], ["y"]),
            ]
            graph = helper.make_graph(
                nodes, "toy_pose", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 48])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 17, 16, 12])], [w],
            )  # fmt: skip
        else:
            graph = helper.make_graph(
                [helper.make_node("Identity", ["x"], ["y"])], "not_pose",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
            )  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, str(d / name))

    return setup


class _Evil:
    """Pickled, this runs `touch <marker>` when unpickled by anything that trusts the file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def bomb_pt(name: str = "bomb.pt", legacy: bool = False) -> Setup:
    """A checkpoint whose unpickling would run code (torch zip format, or a plain legacy pickle)."""

    def setup(d: Path) -> None:
        """Write it."""
        payload = {"format": "hipart-edge/checkpoint", "kind": "hipart", "state_dict": _Evil(str(d / MARKER))}
        if legacy:
            import pickle

            (d / name).write_bytes(pickle.dumps(payload))
        else:
            import torch

            torch.save(payload, d / name)

    return setup


def bomb_npz(name: str = "bomb.npz", key: str = "positions_3d") -> Setup:
    """An .npz whose object array would run code when loaded with allow_pickle=True."""

    def setup(d: Path) -> None:
        """Write it."""
        arr = np.empty((), dtype=object)
        arr[()] = _Evil(str(d / MARKER))
        np.savez(d / name, **{key: arr})

    return setup


def tampered_pt(name: str, how: str) -> Setup:
    """The bundled checkpoint with its config, weights or kind tampered with."""

    def setup(d: Path) -> None:
        """Write it."""
        import torch

        p = torch.load(BUNDLED_PT, map_location="cpu", weights_only=True)
        if how == "config":
            p["config"]["tokenizer"]["enc_dim"] = 64
        elif how == "missing-weight":
            p["state_dict"].pop(sorted(p["state_dict"])[0])
        elif how == "kind":
            p["kind"] = "tokenizer"
        elif how == "nan":
            k = next(k for k, v in p["state_dict"].items() if v.is_floating_point())
            p["state_dict"][k] = torch.full_like(p["state_dict"][k], float("nan"))
        elif how == "version":
            p["format_version"] = 99
        torch.save(p, d / name)

    return setup


def bvh_subset(name: str = "bvh", n: int = 2, garbage: bool = False) -> Setup:
    """A BVH folder: the first n clips of subject 05 (or one garbage .bvh)."""

    def setup(d: Path) -> None:
        """Copy / write the files."""
        f = d / name / "05"
        f.mkdir(parents=True)
        if garbage:
            (f / "05_01.bvh").write_text("HIERARCHY\nROOT Hips\n{ garbage\n")
            return
        for p in sorted((BVH_DIR / "05").glob("*.bvh"))[:n]:
            shutil.copy(p, f / p.name)

    return setup


_EXPORT_CACHE: dict[str, Path] = {}


def artifacts(name: str = "art", how: str = "ok") -> Setup:
    """An artifacts folder: a real ONNX export (made once per table run), then broken as `how` says."""

    def setup(d: Path) -> None:
        """Export (cached) and copy/break it."""
        if "dir" not in _EXPORT_CACHE:
            cache = Path(tempfile.mkdtemp(prefix="ft-export-"))
            subprocess.run(
                [_exe("hipart-export"), "--only", "hipart", "--onnx-only", "--no-parity", "--out", str(cache)],
                cwd=cache, env=_env(), capture_output=True, timeout=300, check=True,
            )  # fmt: skip
            _EXPORT_CACHE["dir"] = cache
        out = d / name
        shutil.copytree(_EXPORT_CACHE["dir"], out)
        man = json.loads((out / "manifest.json").read_text())
        entry = man["artifacts"]["hipart.fp32"]
        if how == "garbage-manifest":
            (out / "manifest.json").write_text("{not json")
        elif how == "no-manifest":
            (out / "manifest.json").unlink()
        elif how == "missing-file":
            (out / "hipart.onnx").unlink()
        elif how == "corrupt-onnx":  # bytes changed, manifest not updated
            (out / "hipart.onnx").write_bytes(b"\x08\x07garbage" * 100)
        elif how == "corrupt-onnx-rehashed":  # bytes changed and the manifest says they are right
            data = b"\x08\x07garbage" * 100
            (out / "hipart.onnx").write_bytes(data)
            import hashlib

            entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
            (out / "manifest.json").write_text(json.dumps(man))
        elif how == "other-model":
            entry["model_hash"] = man["model_hash"] = "0123456789abcdef"
            (out / "manifest.json").write_text(json.dumps(man))
        elif how == "wrong-format":
            man["format_version"] = 99
            (out / "manifest.json").write_text(json.dumps(man))
        elif how == "path-escape":
            entry["file"] = "../../../etc/passwd"
            (out / "manifest.json").write_text(json.dumps(man))

    return setup


# ------------------------------------------------------------------------------------------------------ cases
RUN = ["hipart-run", "--backend", "torch", "--threads", "1", "--quiet"]
KP = ["--source", "sample", "--max-frames", "5"]
LOOP = ["--source", "sample", "--loop", "--duration", "40"]
OUTS3 = ["--save", "{d}/out.mp4", "--poses", "{d}/out.jsonl", "--poses", "{d}/out.npz"]
O3 = ("out.mp4", "out.jsonl", "out.npz")
SIGNAL_NAMES = {signal.SIGINT: "sigint", signal.SIGTERM: "sigterm", signal.SIGHUP: "sighup"}
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
UNSAFE_MSG = ("weights_only=False", "will likely succeed")


def run_cases() -> list[Case]:
    """hipart-run: sources, outputs, flags, checkpoints, artifacts, detectors, signals, disk full."""
    c: list[Case] = []

    def add(id: str, args: list[str], expect: str = "error", **kw: Any) -> None:
        c.append(Case(id, [*RUN, *args], expect, **kw))

    # healthy baselines (the harness itself must see these as ok)
    add("run-ok-sample", [*KP, *OUTS3], "ok", outputs=O3, min_frames=5)
    add("run-ok-kp-json", ["--source", "{d}/kp.json", "--poses", "{d}/out.jsonl"], "ok",
        setup=kp_json({"width": 640, "height": 480, "fps": 30, "format": "h36m17", "frames": _json_frames()}),
        outputs=("out.jsonl",))  # fmt: skip
    add("run-ok-corrupt-image-in-folder",
        ["--source", "{d}/imgs", "--detector", "onnx", "--detector-model", "{d}/pose.onnx", "--poses", "{d}/out.jsonl"],
        "ok", setup=chain(image_folder(good=3, corrupt=1), onnx_model("pose.onnx", True)), outputs=("out.jsonl",),
        min_frames=4, note="a corrupt image is a 'corrupt' frame; the run goes on")  # fmt: skip
    add("run-ok-video-toy-detector",
        ["--source", "{d}/v.avi", "--detector", "onnx", "--detector-model", "{d}/pose.onnx", "--max-frames", "5",
         "--save", "{d}/out.mp4", "--poses", "{d}/out.jsonl"],
        "ok", setup=chain(avi_video(), onnx_model("pose.onnx", True)), outputs=("out.mp4", "out.jsonl"),
        min_frames=5)  # fmt: skip
    add("run-ok-all-nan-frames", ["--source", "{d}/kp.npz", "--poses", "{d}/out.jsonl"], "ok",
        setup=kp_npz(keypoints=np.full((5, 17, 2), np.nan, np.float32)), outputs=("out.jsonl",), min_frames=5,
        note="all-NaN rows mean 'no person': 5 frames, 0 persons")  # fmt: skip

    # sources: missing / empty / garbage / truncated
    add("run-src-missing", ["--source", "{d}/nope.mp4"])
    add("run-src-empty-mp4", ["--source", "{d}/e.mp4"], setup=write_bytes("e.mp4", b""))
    add("run-src-garbage-mp4", ["--source", "{d}/g.mp4"], setup=write_bytes("g.mp4", os.urandom(4096)))
    add("run-src-text-as-mp4", ["--source", "{d}/t.mp4"], setup=write_bytes("t.mp4", b"hello\n" * 50))
    add("run-src-truncated-mp4-moov-lost", ["--source", "{d}/t.mp4"], setup=truncated(SAMPLE_VIDEO, "t.mp4", 0.5))
    add("run-src-truncated-avi-partial",
        ["--source", "{d}/t.avi", "--detector", "onnx", "--detector-model", "{d}/pose.onnx", "--poses",
         "{d}/out.jsonl"],
        "graceful", setup=chain(avi_video("t.avi", frames=40, keep=0.5), onnx_model("pose.onnx", True)),
        outputs=("out.jsonl",), rc_ok=(0, 1), stderr_re=r"truncat|only \d+ of \d+|ended early|incomplete|partial",
        note="only part of the video decodes: the run must say so")  # fmt: skip
    add("run-src-empty-folder", ["--source", "{d}/empty"], setup=mkdirs("empty"))
    add("run-src-folder-all-corrupt",
        ["--source", "{d}/imgs", "--detector", "onnx", "--detector-model", "{d}/pose.onnx", "--poses",
         "{d}/out.jsonl"],
        setup=chain(image_folder(good=0, corrupt=3), onnx_model("pose.onnx", True)),
        note="every frame is corrupt: must not exit 0")  # fmt: skip
    add("run-src-single-image", ["--source", "{d}/a.png"], setup=write_bytes("a.png", b"\x89PNG"))
    add("run-src-camera-missing-index", ["--source", "7"], timeout=40)
    add("run-src-camera-missing-dev", ["--source", "/dev/video9"], timeout=40)
    add("run-src-rtsp-refused", ["--source", "rtsp://127.0.0.1:9/stream"], timeout=45, max_s=30)
    add("run-src-http-unroutable", ["--source", "http://10.255.255.1:8080/video.mjpg"], timeout=45, max_s=30)
    add("run-src-empty-string", ["--source", ""])
    # keypoint .npz
    add("run-kp-empty-file", ["--source", "{d}/kp.npz"], setup=write_bytes("kp.npz", b""))
    add("run-kp-garbage", ["--source", "{d}/kp.npz"], setup=write_bytes("kp.npz", os.urandom(2000)))
    add("run-kp-truncated-zip", ["--source", "{d}/kp.npz"], setup=truncated(SAMPLE_KP, "kp.npz", 0.5))
    add("run-kp-no-keypoints-key", ["--source", "{d}/kp.npz"], setup=kp_npz(drop=("keypoints",)))
    add("run-kp-zero-frames", ["--source", "{d}/kp.npz", "--poses", "{d}/out.jsonl"],
        setup=kp_npz(keypoints=np.zeros((0, 17, 2), np.float32), conf=np.zeros((0, 17), np.float32)),
        note="no frames at all: must not exit 0 with an empty output")  # fmt: skip
    add("run-kp-wrong-joints", ["--source", "{d}/kp.npz"],
        setup=kp_npz(keypoints=np.zeros((5, 18, 2), np.float32), drop=("conf",)))  # fmt: skip
    add("run-kp-1d", ["--source", "{d}/kp.npz"], setup=kp_npz(keypoints=np.zeros(34, np.float32), drop=("conf",)))
    add("run-kp-scalar", ["--source", "{d}/kp.npz"], setup=kp_npz(keypoints=np.float32(3.0), drop=("conf",)))
    add("run-kp-string-dtype", ["--source", "{d}/kp.npz"],
        setup=kp_npz(keypoints=np.full((5, 17, 2), "a", dtype="U3"), drop=("conf",)))  # fmt: skip
    add("run-kp-object-array", ["--source", "{d}/kp.npz"], setup=bomb_npz("kp.npz", "keypoints"), unchanged=())
    add("run-kp-width-negative", ["--source", "{d}/kp.npz", "--poses", "{d}/out.jsonl"],
        setup=kp_npz(width=np.int64(-5)))  # fmt: skip
    add("run-kp-width-nan", ["--source", "{d}/kp.npz"], setup=kp_npz(width=np.float64("nan")))
    add("run-kp-height-zero-string", ["--source", "{d}/kp.npz"], setup=kp_npz(height=np.array("tall")))
    add("run-kp-fps-negative", ["--source", "{d}/kp.npz", "--save", "{d}/out.mp4"], setup=kp_npz(fps=np.float64(-1)))
    add("run-kp-conf-wrong-shape", ["--source", "{d}/kp.npz"], setup=kp_npz(conf=np.ones((10, 5), np.float32)))
    add("run-kp-conf-fewer-frames", ["--source", "{d}/kp.npz"], setup=kp_npz(conf=np.ones((3, 17), np.float32)))
    add("run-kp-bad-format", ["--source", "{d}/kp.npz"], setup=kp_npz(format=np.array("banana")))
    add("run-kp-inf-values", ["--source", "{d}/kp.npz", "--poses", "{d}/out.jsonl"],
        setup=kp_npz(keypoints=np.full((5, 17, 2), np.inf, np.float32), drop=("conf",)), expect="ok",
        outputs=("out.jsonl",), min_frames=5, note="non-finite rows are 'no person'")  # fmt: skip
    add("run-kp-huge-coords", ["--source", "{d}/kp.npz", "--poses", "{d}/out.jsonl"], "graceful",
        setup=kp_npz(keypoints=np.full((5, 17, 2), 3e38, np.float32), conf=np.ones((5, 17), np.float32)),
        outputs=("out.jsonl",), rc_ok=(0, 1), stderr_re=r"outside|non-finite|not finite|out of range|implausible",
        note="keypoints at 3e38 px: persons may be dropped, but not silently")  # fmt: skip
    add("run-nan-checkpoint-refused", [*KP, "--checkpoint", "{d}/c.pt", *OUTS3], setup=tampered_pt("c.pt", "nan"),
        stderr_re=r"NaN or inf", note="NaN weights: refused at load (every frame would fail), nothing written; "
        "every-frame-fails itself: tests/edge/test_outputs_signals_flags.py")  # fmt: skip
    add("run-kp-partial-nan-person", ["--source", "{d}/kp.npz", "--poses", "{d}/out.jsonl"], "ok",
        setup=kp_npz(keypoints=np.where(np.arange(17)[None, :, None] < 3, np.nan,
                                        _kp_arrays(5)["keypoints"]).astype(np.float32), t=5),
        outputs=("out.jsonl",), min_frames=5, note="3 joints NaN per person: masked, finite output")  # fmt: skip
    # keypoint .json
    add("run-kpjson-garbage", ["--source", "{d}/kp.json"], setup=kp_json(None, raw="{not json"))
    add("run-kpjson-empty-object", ["--source", "{d}/kp.json"], setup=kp_json({}))
    add("run-kpjson-no-frames", ["--source", "{d}/kp.json", "--poses", "{d}/out.jsonl"],
        setup=kp_json({"frames": []}))  # fmt: skip
    add("run-kpjson-wrong-shape", ["--source", "{d}/kp.json"],
        setup=kp_json({"frames": [{"keypoints": [[[1, 2]] * 5]}]}))  # fmt: skip
    add("run-kpjson-strings", ["--source", "{d}/kp.json"],
        setup=kp_json({"frames": [{"keypoints": [[["a", "b"]] * 17]}]}))  # fmt: skip
    add("run-kpjson-frames-not-list", ["--source", "{d}/kp.json"], setup=kp_json({"frames": 5}))
    add("run-kpjson-empty-persons", ["--source", "{d}/kp.json", "--poses", "{d}/out.jsonl"], "ok",
        setup=kp_json({"frames": [{"keypoints": []}, {"keypoints": []}]}), outputs=("out.jsonl",), min_frames=2)
    add("run-kpjson-nan-literal", ["--source", "{d}/kp.json", "--poses", "{d}/out.jsonl"], "ok",
        setup=kp_json(None, raw='{"frames": [{"keypoints": [' + json.dumps([[0.5, 0.5]] * 17).replace(
            "0.5, 0.5]", "NaN, NaN]") + "]}]}"), outputs=("out.jsonl",), min_frames=1,
        note="a NaN person is 'no person'")  # fmt: skip
    add("run-kpjson-width-string", ["--source", "{d}/kp.json"],
        setup=kp_json({"width": "wide", "frames": _json_frames(2)}))  # fmt: skip

    # output paths
    add("run-out-poses-mp4", [*KP, "--poses", "{d}/out.mp4"], note="--poses out.mp4 is a user mistake")
    add("run-out-poses-txt", [*KP, "--poses", "{d}/out.txt"])
    add("run-out-save-jsonl", [*KP, "--save", "{d}/out.jsonl"])
    add("run-out-save-txt", [*KP, "--save", "{d}/out.txt"])
    add("run-out-save-folder", [*KP, "--save", "{d}/folder"], setup=mkdirs("folder"))
    add("run-out-poses-folder", [*KP, "--poses", "{d}/folder.jsonl"], setup=mkdirs("folder.jsonl"))
    add("run-out-unwritable-dir", [*KP, "--poses", "/proc/hipart-ft/out.jsonl"])
    add("run-out-sysfs", [*KP, "--save", "/sys/out.mp4"])
    add("run-out-readonly-file", [*KP, "--poses", "{d}/ro.jsonl"],
        setup=chain(precious("ro.jsonl"), lambda d: os.chmod(d / "ro.jsonl", 0o444)), unchanged=("ro.jsonl",),
        skip="running as root: chmod does not make a file read-only" if IS_ROOT else None)  # fmt: skip
    add("run-out-same-path-twice", [*KP, "--poses", "{d}/out.jsonl", "--poses", "{d}/out.jsonl"],
        note="two sinks on one file interleave/clobber: must be refused")  # fmt: skip
    add("run-out-npz-and-journal-clash", [*KP, "--poses", "{d}/out.npz", "--poses", "{d}/out.npz.partial.jsonl"])
    add("run-out-keep-on-startup-fail", ["--source", "{d}/nope.npz", "--poses", "{d}/out.jsonl", "--save",
                                         "{d}/out.mp4"], setup=precious("out.jsonl", "out.mp4"),
        unchanged=("out.jsonl", "out.mp4"))  # fmt: skip
    add("run-out-devfull-jsonl", [*KP, "--poses", "{d}/out.jsonl"], setup=symlink("out.jsonl", "/dev/full"),
        note="every write fails with ENOSPC")  # fmt: skip
    add("run-out-devfull-mp4", [*KP, "--save", "{d}/out.mp4"], setup=symlink("out.mp4", "/dev/full"))
    add("run-diskfull-mp4", [*LOOP, "--save", "{d}/out.mp4", "--poses", "{d}/out.jsonl"], fsize=400_000,
        outputs=("out.mp4", "out.jsonl"), allow_partial=True, timeout=90,
        note="RLIMIT_FSIZE 400 kB: exit 1, files readable")  # fmt: skip
    add("run-diskfull-npz", [*LOOP, "--poses", "{d}/out.npz"], fsize=300_000, outputs=("out.npz",), timeout=90)
    add("run-diskfull-jsonl", [*LOOP, "--poses", "{d}/out.jsonl"], fsize=200_000, outputs=("out.jsonl",),
        allow_partial=True, timeout=90)  # fmt: skip

    # flags
    for flag, val in [("--max-frames", "-5"), ("--max-frames", "0"), ("--duration", "-1"), ("--duration", "nan"),
                      ("--min-conf", "7"), ("--min-conf", "nan"), ("--min-conf", "-1"), ("--queue-size", "0"),
                      ("--queue-size", "-3"), ("--threads", "-2"), ("--threads", "0"), ("--device", "banana"),
                      ("--max-batch-frames", "0"), ("--max-frames", "abc")]:
        add(f"run-flag{flag[1:]}={val}", [*KP, "--poses", "{d}/out.jsonl", flag, val])
    add("run-flag-device-cuda-absent", [*KP, "--device", "cuda:7"])
    add("run-flag-backend-banana", [*KP, "--backend", "banana"])
    add("run-flag-unknown", [*KP, "--frobnicate"])
    add("run-flag-keypoint-format-bad", [*KP, "--keypoint-format", "coco99"])
    add("run-flag-smooth-and-temporal", [*KP, "--smooth", "--temporal", "default"])
    add("run-flag-temporal-garbage", [*KP, "--temporal", "{d}/t.pt"], setup=write_bytes("t.pt", os.urandom(500)))
    add("run-flag-temporal-missing", [*KP, "--temporal", "{d}/none.pt"])
    add("run-flag-temporal-is-hipart", [*KP, "--temporal", str(BUNDLED_PT)])
    # backends / artifacts
    c.append(Case("run-backend-tensorrt-absent", ["hipart-run", *KP, "--backend", "tensorrt", "--threads", "1"],
                  "error"))  # fmt: skip
    c.append(Case("run-backend-triton-absent", ["hipart-run", *KP, "--backend", "triton", "--threads", "1"], "error"))
    ort = ["hipart-run", *KP, "--backend", "onnxruntime", "--threads", "1", "--artifacts", "{d}/art"]
    c.append(Case("run-art-missing-dir", ort, "error"))
    c.append(Case("run-art-empty-dir", ort, "error", setup=mkdirs("art")))
    c.append(Case("run-art-no-manifest", [*ort, "--poses", "{d}/out.jsonl"], "ok", setup=artifacts(how="no-manifest"),
                  outputs=("out.jsonl",), min_frames=5, timeout=120,
                  note="a folder exported before manifests existed: read as before, model hash checked from the "
                  "ONNX metadata"))  # fmt: skip
    for how in ("garbage-manifest", "missing-file", "corrupt-onnx", "corrupt-onnx-rehashed",
                "other-model", "wrong-format", "path-escape"):
        c.append(Case(f"run-art-{how}", [*ort, "--poses", "{d}/out.jsonl"], "error", setup=artifacts(how=how),
                      timeout=120))  # fmt: skip
    c.append(Case("run-art-ok", [*ort, "--poses", "{d}/out.jsonl"], "ok", setup=artifacts(), outputs=("out.jsonl",),
                  min_frames=5, timeout=120))  # fmt: skip
    # checkpoints
    for cid, setup_fn, extra in _checkpoint_variants():
        add(f"ckpt-run-{cid}", [*KP, "--checkpoint", "{d}/c.pt", "--poses", "{d}/out.jsonl"], setup=setup_fn, **extra)
    # detectors
    add("run-det-onnx-no-model", ["--source", "sample-video", "--max-frames", "3", "--detector", "onnx"])
    add("run-det-onnx-missing", ["--source", "sample-video", "--max-frames", "3", "--detector", "onnx",
                                 "--detector-model", "{d}/none.onnx"])  # fmt: skip
    add("run-det-onnx-garbage", ["--source", "sample-video", "--max-frames", "3", "--detector", "onnx",
                                 "--detector-model", "{d}/g.onnx"], setup=write_bytes("g.onnx", os.urandom(3000)))
    add("run-det-onnx-not-pose", ["--source", "sample-video", "--max-frames", "3", "--detector", "onnx",
                                  "--detector-model", "{d}/id.onnx", "--poses", "{d}/out.jsonl"],
        setup=onnx_model("id.onnx", False), note="a valid ONNX that is not a pose model")  # fmt: skip
    add("run-det-blazepose-ok", ["--source", "sample-video", "--max-frames", "3", "--poses", "{d}/out.jsonl"], "ok",
        outputs=("out.jsonl",), min_frames=3, note="the default detector on the bundled video")  # fmt: skip
    # signals
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        name = SIGNAL_NAMES[sig]
        add(f"run-{name}-mid", [*LOOP, *OUTS3], "graceful", signal=(sig, "lines:out.jsonl:5"), outputs=O3,
            timeout=90)  # fmt: skip
        add(f"run-{name}-startup", [*LOOP, *OUTS3], "graceful", signal=(sig, "t:0.8"), timeout=60,
            note="during imports / model load: no traceback, no half-made outputs")  # fmt: skip
    add("run-sigterm-mid-npz-only", [*LOOP, "--poses", "{d}/out.npz"], "graceful",
        signal=(signal.SIGTERM, "t:8"), outputs=("out.npz",), timeout=90)  # fmt: skip
    add("run-sigint-twice", [*LOOP, *OUTS3], "graceful", signal=(signal.SIGINT, "lines:out.jsonl:5+twice"),
        outputs=O3, timeout=90, note="impatient user: two Ctrl-C 0.2 s apart")  # fmt: skip
    return c


def _checkpoint_variants() -> list[tuple[str, Setup, dict[str, Any]]]:
    """The bad-checkpoint set, reused for every command that takes --checkpoint."""
    return [
        ("missing", lambda d: None, {}),
        ("empty", write_bytes("c.pt", b""), {}),
        ("garbage", write_bytes("c.pt", os.urandom(4096)), {}),
        ("truncated", truncated(BUNDLED_PT, "c.pt", 0.5), {}),
        ("text", write_bytes("c.pt", b"this is not a checkpoint\n"), {}),
        ("zip-not-torch", lambda d: zipfile.ZipFile(d / "c.pt", "w").writestr("a.txt", "hello"), {}),
        ("bomb", bomb_pt("c.pt"), {"stderr_not": UNSAFE_MSG}),
        ("bomb-legacy-pickle", bomb_pt("c.pt", legacy=True), {"stderr_not": UNSAFE_MSG}),
        ("wrong-config", tampered_pt("c.pt", "config"), {}),
        ("missing-weight", tampered_pt("c.pt", "missing-weight"), {}),
        ("wrong-kind", tampered_pt("c.pt", "kind"), {}),
        ("nan-weights", tampered_pt("c.pt", "nan"), {"note": "NaN weights: must not write NaN/garbage poses as ok"}),
        ("future-version", tampered_pt("c.pt", "version"), {}),
        ("temporal-as-hipart", lambda d: shutil.copy(TEMPORAL_PT, d / "c.pt"), {}),
        ("folder", mkdirs("c.pt"), {}),
    ]


def other_cases() -> list[Case]:
    """hipart-bench, hipart-export, hipart-eval, hipart-model, hipart-train, hipart-data, hipart-temporal, loaders."""
    c: list[Case] = []
    bench = ["hipart-bench", "--backends", "torch", "--batch", "1", "--iters", "2", "--warmup", "0", "--threads", "1"]
    c += [
        Case("bench-ok", [*bench, "--json", "{d}/b.json"], "ok", outputs=("b.json",)),
        Case("bench-all-skipped", ["hipart-bench", "--backends", "tensorrt,triton", "--batch", "1", "--iters", "2",
                                   "--threads", "1", "--json", "{d}/b.json"], "error", timeout=150,
             note="no backend can run: must exit non-zero (today it first exports an ONNX model, ~35 s)"),
        Case("bench-backend-banana", [*bench[:1], "--backends", "banana"], "error"),
        Case("bench-backends-empty", [*bench[:1], "--backends", ","], "error"),
        Case("bench-batch-0", [*bench, "--batch", "0"], "error"),
        Case("bench-batch-text", [*bench, "--batch", "a,b"], "error"),
        Case("bench-iters-0", [*bench, "--iters", "0"], "error"),
        Case("bench-iters-neg", [*bench, "--iters", "-3"], "error"),
        Case("bench-max-seconds-neg", [*bench, "--max-seconds", "-1"], "error"),
        Case("bench-threads-neg", [*bench, "--threads", "-2"], "error"),
        Case("bench-json-unwritable", [*bench, "--json", "/proc/hipart-ft/b.json"], "error"),
        Case("bench-json-devfull", [*bench, "--json", "{d}/b.json"], "error", setup=symlink("b.json", "/dev/full")),
        Case("bench-device-banana", [*bench, "--device", "banana"], "error"),
        Case("bench-artifacts-garbage", ["hipart-bench", "--backends", "onnxruntime", "--batch", "1", "--iters", "2",
                                         "--threads", "1", "--artifacts", "{d}/art"], "error",
             setup=artifacts(how="garbage-manifest"), timeout=120, note="the only backend asked for cannot run"),
        Case("bench-pipeline-bad-source", [*bench, "--pipeline", "--source", "{d}/nope.mp4", "--frames", "5"],
             "error"),
        Case("bench-sigint-mid", ["hipart-bench", "--backends", "torch", "--batch", "1,8,64", "--iters", "500",
                                  "--threads", "1"], "graceful", signal=(signal.SIGINT, "t:8"), timeout=60),
    ]
    for cid, setup_fn, extra in _checkpoint_variants()[1:8]:
        c.append(Case(f"ckpt-bench-{cid}", [*bench, "--checkpoint", "{d}/c.pt"], "error", setup=setup_fn, **extra))

    exp = ["hipart-export", "--only", "hipart", "--onnx-only", "--no-parity"]
    c += [
        Case("export-out-unwritable", [*exp, "--out", "/proc/hipart-ft/art"], "error"),
        Case("export-out-is-file", [*exp, "--out", "{d}/f"], "error", setup=write_bytes("f", b"x")),
        Case("export-artifacts-banana", [*exp[:1], "--only", "banana", "--out", "{d}/art"], "error"),
        Case("export-batch-bad", [*exp, "--batch", "8,1,a", "--out", "{d}/art"], "error"),
        Case("export-calib-size-0", [*exp[:1], "--int8", "--calib-size", "0", "--out", "{d}/art"], "error"),
        Case("export-trt-version-bad", [*exp, "--check-trt", "--trt-version", "99", "--out", "{d}/art"], "error"),
        Case("export-calib-data-garbage", [*exp[:1], "--only", "hipart", "--int8", "--calib-data", "{d}/c.npz",
                                           "--out", "{d}/art"], "error", setup=write_bytes("c.npz", os.urandom(900)),
             timeout=120),
        Case("export-calib-data-object", [*exp[:1], "--only", "hipart", "--int8", "--calib-data", "{d}/c.npz",
                                          "--out", "{d}/art"], "error", setup=bomb_npz("c.npz", "x_s"), timeout=120),
        Case("export-dataset-missing", [*exp[:1], "--only", "hipart", "--int8", "--dataset", "{d}/nods",
                                        "--out", "{d}/art"], "error", timeout=120),
        Case("export-max-drift-nan", [*exp, "--max-drift-mm", "nan", "--out", "{d}/art"], "error"),
        Case("export-sigint-mid", [*exp, "--out", "{d}/art"], "graceful", signal=(signal.SIGINT, "t:10"),
             timeout=90, note="Ctrl-C during the export: no traceback, no half manifest"),
    ]
    for cid, setup_fn, extra in _checkpoint_variants()[1:8]:
        c.append(Case(f"ckpt-export-{cid}", [*exp, "--checkpoint", "{d}/c.pt", "--out", "{d}/art"], "error",
                      setup=setup_fn, **extra))  # fmt: skip

    model = ["hipart-model", "--runs", "1"]
    c += [
        Case("model-ok", [*model, "--json", "{d}/m.json"], "ok", outputs=("m.json",)),
        Case("model-batch-0", [*model, "--batch", "0"], "error"),
        Case("model-runs-neg", [*model, "--runs", "-1"], "error"),
        Case("model-json-unwritable", [*model, "--json", "/proc/hipart-ft/m.json"], "error",
             note="must fail before the work, not after"),
        Case("model-json-folder", [*model, "--json", "{d}/dir"], "error", setup=mkdirs("dir")),
    ]
    for cid, setup_fn, extra in _checkpoint_variants():
        c.append(Case(f"ckpt-model-{cid}", [*model, "--checkpoint", "{d}/c.pt"], "error", setup=setup_fn, **extra))

    ev = ["hipart-eval", "--no-progress"]
    c += [
        Case("eval-bad-ckpt-bvh-fast", [*ev, "--checkpoint", "{d}/c.pt", "--bvh-dir", "{d}/bvh"], "error",
             setup=chain(write_bytes("c.pt", os.urandom(2048)), bvh_subset()), max_s=15, timeout=90,
             note="must fail fast (before building the dataset)"),
        Case("eval-bomb-ckpt", [*ev, "--checkpoint", "{d}/c.pt", "--data", "{d}/ds"], "error",
             setup=chain(bomb_pt("c.pt"), mkdirs("ds"), write_bytes("ds/manifest.json", b"{}")),
             stderr_not=UNSAFE_MSG),
        Case("eval-missing-ckpt", [*ev, "--checkpoint", "{d}/none.pt", "--data", "{d}/ds"], "error",
             setup=chain(mkdirs("ds"), write_bytes("ds/manifest.json", b"{}"))),
        Case("eval-data-not-dataset", [*ev, "--checkpoint", str(BUNDLED_PT), "--data", "{d}"], "error"),
        Case("eval-data-garbage-manifest", [*ev, "--checkpoint", str(BUNDLED_PT), "--data", "{d}/ds"], "error",
             setup=chain(mkdirs("ds"), write_bytes("ds/manifest.json", b"{garbage"))),
        Case("eval-split-train", [*ev, "--checkpoint", str(BUNDLED_PT), "--data", "{d}", "--split", "train"], "error"),
        Case("eval-bvh-missing", [*ev, "--checkpoint", str(BUNDLED_PT), "--bvh-dir", "{d}/none"], "error"),
        Case("eval-bvh-empty", [*ev, "--checkpoint", str(BUNDLED_PT), "--bvh-dir", "{d}/empty"], "error",
             setup=mkdirs("empty")),
        Case("eval-bvh-garbage", [*ev, "--checkpoint", str(BUNDLED_PT), "--bvh-dir", "{d}/bvh"], "error",
             setup=bvh_subset(garbage=True), timeout=120),
        Case("eval-subsample-0", [*ev, "--checkpoint", str(BUNDLED_PT), "--bvh-dir", "{d}/bvh", "--subsample", "0"],
             "error", setup=bvh_subset(n=1), max_s=15, timeout=90),
        Case("eval-batch-size-0", [*ev, "--checkpoint", str(BUNDLED_PT), "--bvh-dir", "{d}/bvh", "--batch-size",
                                   "0"], "error", setup=bvh_subset(n=1), max_s=15, timeout=90),
        Case("eval-json-unwritable", [*ev, "--checkpoint", str(BUNDLED_PT), "--bvh-dir", "{d}/bvh", "--json",
                                      "/proc/hipart-ft/e.json"], "error", setup=bvh_subset(n=1), max_s=15,
             timeout=240, note="must fail before the evaluation, not after"),
        Case("eval-sigint-startup", [*ev, "--checkpoint", str(BUNDLED_PT), "--bvh-dir", "{d}/bvh"], "graceful",
             setup=bvh_subset(n=1), signal=(signal.SIGINT, "t:1.5"), timeout=60),
    ]

    tr = ["hipart-train", "lifter", "--no-progress", "--device", "cpu"]
    c += [
        Case("train-data-missing", [*tr, "--data", "{d}/none", "--out", "{d}/run"], "error"),
        Case("train-data-not-dataset", [*tr, "--data", "{d}", "--out", "{d}/run"], "error"),
        Case("train-data-garbage-manifest", [*tr, "--data", "{d}/ds", "--out", "{d}/run"], "error",
             setup=chain(mkdirs("ds"), write_bytes("ds/manifest.json", b"[1,2"))),
        Case("train-config-missing", [*tr, "--data", "{d}/ds", "--config", "{d}/none.json", "--out", "{d}/run"],
             "error", setup=chain(mkdirs("ds"), write_bytes("ds/manifest.json", b"{}"))),
        Case("train-config-garbage", [*tr, "--data", "{d}/ds", "--config", "{d}/c.json", "--out", "{d}/run"],
             "error", setup=chain(mkdirs("ds"), write_bytes("ds/manifest.json", b"{}"), write_bytes("c.json", b"{x"))),
        Case("train-epochs-neg", [*tr, "--data", "{d}/ds", "--epochs", "-1", "-1", "-1", "--out", "{d}/run"],
             "error", setup=chain(mkdirs("ds"), write_bytes("ds/manifest.json", b"{}"))),
        Case("train-init-from-bomb", [*tr, "--data", "{d}/ds", "--init-from", "{d}/c.pt", "--out", "{d}/run"],
             "error", setup=chain(mkdirs("ds"), write_bytes("ds/manifest.json", b"{}"), bomb_pt("c.pt")),
             stderr_not=UNSAFE_MSG),
        Case("train-out-unwritable", [*tr, "--data", "{d}/ds", "--out", "/proc/hipart-ft/run"], "error",
             setup=chain(mkdirs("ds"), write_bytes("ds/manifest.json", b"{}"))),
        Case("train-stage-banana", ["hipart-train", "banana", "--data", "{d}"], "error"),
    ]

    data = ["hipart-data"]
    c += [
        Case("data-build-bvh-missing", [*data, "build", "--bvh-dir", "{d}/none", "--out", "{d}/ds", "--quiet"],
             "error"),
        Case("data-build-bvh-empty", [*data, "build", "--bvh-dir", "{d}/empty", "--out", "{d}/ds", "--quiet"],
             "error", setup=mkdirs("empty")),
        Case("data-build-bvh-garbage", [*data, "build", "--bvh-dir", "{d}/bvh", "--out", "{d}/ds", "--quiet",
                                        "--body", "mean"], "error", setup=bvh_subset(garbage=True), timeout=120),
        Case("data-build-split-bad", [*data, "build", "--bvh-dir", "{d}/bvh", "--out", "{d}/ds", "--quiet",
                                      "--split", "train=;;=x", "--body", "mean"], "error", setup=bvh_subset(n=1),
             timeout=120),
        Case("data-build-workers-0", [*data, "build", "--bvh-dir", "{d}/bvh", "--out", "{d}/ds", "--quiet",
                                      "--workers", "0", "--body", "mean", "--limit", "1"], "error",
             setup=bvh_subset(n=1), timeout=120),
        Case("data-build-out-unwritable", [*data, "build", "--bvh-dir", "{d}/bvh", "--out", "/proc/hipart-ft/ds",
                                           "--quiet", "--body", "mean"], "error", setup=bvh_subset(n=1), timeout=120),
        Case("data-info-missing", [*data, "info", "{d}/none"], "error"),
        Case("data-info-garbage-manifest", [*data, "info", "{d}/ds"], "error",
             setup=chain(mkdirs("ds"), write_bytes("ds/manifest.json", b"{garbage"))),
        Case("data-info-empty-manifest", [*data, "info", "{d}/ds", "--verify"], "error",
             setup=chain(mkdirs("ds"), write_bytes("ds/manifest.json", b"{}"))),
        Case("data-show-missing", [*data, "show", "{d}/none", "--out", "{d}/show"], "error"),
        Case("data-video-clip-missing", [*data, "video", "--bvh-dir", "{d}/bvh", "--clip", "99_99", "--out",
                                         "{d}/v"], "error", setup=bvh_subset(n=1), timeout=120),
        Case("data-no-subcommand", [*data], "error"),
    ]

    tp = ["hipart-temporal"]
    c += [
        Case("temporal-eval-garbage-ckpt", [*tp, "eval", "--checkpoint", "{d}/c.pt", "--data", "{d}/ds",
                                            "--no-progress"], "error",
             setup=chain(write_bytes("c.pt", os.urandom(999)), mkdirs("ds"), write_bytes("ds/manifest.json", b"{}"))),
        Case("temporal-eval-bomb-ckpt", [*tp, "eval", "--checkpoint", "{d}/c.pt", "--data", "{d}/ds",
                                         "--no-progress"], "error",
             setup=chain(bomb_pt("c.pt"), mkdirs("ds"), write_bytes("ds/manifest.json", b"{}")),
             stderr_not=UNSAFE_MSG),
        Case("temporal-eval-hipart-ckpt", [*tp, "eval", "--checkpoint", str(BUNDLED_PT), "--data", "{d}/ds",
                                           "--no-progress"], "error",
             setup=chain(mkdirs("ds"), write_bytes("ds/manifest.json", b"{}"))),
        Case("temporal-train-data-missing", [*tp, "train", "--data", "{d}/none", "--out", "{d}/run",
                                             "--no-progress", "--device", "cpu"], "error"),
        Case("temporal-train-frames-0", [*tp, "train", "--data", "{d}/ds", "--frames", "0", "--out", "{d}/run",
                                         "--no-progress", "--device", "cpu"], "error",
             setup=chain(mkdirs("ds"), write_bytes("ds/manifest.json", b"{}"))),
        Case("temporal-export-garbage-ckpt", [*tp, "export", "--checkpoint", "{d}/c.pt", "--out", "{d}/t.onnx"],
             "error", setup=write_bytes("c.pt", os.urandom(999))),
        Case("temporal-export-hipart-ckpt", [*tp, "export", "--checkpoint", str(BUNDLED_PT), "--out",
                                             "{d}/t.onnx"], "error"),
        Case("temporal-bench-configs-garbage", [*tp, "bench", "--configs", "banana,frames=x", "--runs", "1",
                                                "--threads", "1"], "error"),
        Case("temporal-bench-runs-0", [*tp, "bench", "--configs", "edge,frames=27", "--runs", "0", "--threads", "1"],
             "error"),
        Case("temporal-cache-garbage-hipart", [*tp, "cache", "--hipart", "{d}/c.pt", "--data", "{d}/ds", "--out",
                                               "{d}/c.npz", "--no-progress"], "error",
             setup=chain(write_bytes("c.pt", os.urandom(999)), mkdirs("ds"), write_bytes("ds/manifest.json", b"{}"))),
        Case("temporal-no-subcommand", [*tp], "error"),
    ]

    # session 6: hipart-serve, the edge client, the Triton repository, HTP
    srv = ["hipart-serve", "--port", "1", "--backend", "torch", "--random-weights", "tiny"]
    c += [
        Case("serve-replicas-0", [*srv, "--replicas", "0"], "error"),
        Case("serve-max-batch-text", [*srv, "--max-batch-size", "many"], "error"),
        Case("serve-temporal-garbage", [*srv, "--temporal", "{d}/t.pt"], "error",
             setup=write_bytes("t.pt", os.urandom(500)), timeout=120),
        Case("serve-flag-unknown", [*srv, "--frobnicate"], "error"),
        Case("run-server-unreachable", [*RUN[:1], *KP, "--server", "http://127.0.0.1:9", "--poses", "{d}/o.jsonl"],
             "error", unchanged=("o.jsonl",), setup=write_bytes("o.jsonl", b'{"precious": 1}\n')),
        Case("run-server-not-loopback-url", [*RUN[:1], *KP, "--server", "banana://x"], "error"),
        Case("run-server-with-checkpoint", [*RUN[:1], *KP, "--server", "http://127.0.0.1:9", "--checkpoint",
                                            str(BUNDLED_PT)], "error"),
        Case("run-temporal-htp-bad-h", [*RUN, *KP, "--temporal", "htp", "--htp-hypotheses", "0"], "error"),
        Case("run-temporal-htp-ok", [*RUN, *KP, "--temporal", "htp", "--htp-hypotheses", "1", "--htp-steps", "1",
                                     "--poses", "{d}/o.jsonl"], "ok", outputs=("o.jsonl",), timeout=120),
        Case("export-triton-repo-is-file", [*exp, "--out", "{d}/art", "--triton-repo", "{d}/f"], "error",
             setup=write_bytes("f", b"x")),
        Case("temporal-htp-eval-train-split", [*tp, "htp-eval", "--checkpoint", str(HTP_PT), "--data", "{d}/ds",
                                               "--split", "train"], "error", setup=mkdirs("ds")),
        Case("temporal-htp-train-data-missing", [*tp, "htp-train", "--data", "{d}/ds", "--out", "{d}/run",
                                                 "--max-steps", "1"], "error", setup=mkdirs("ds")),
    ]

    lib = ("import sys\nfrom hipart.data.h36m import H36MData\ntry:\n    H36MData({args})\n"
           "except (ValueError, OSError) as e:\n    sys.exit(f'error: {{e}}')")
    c += [
        Case("h36m-object-npz-3d", ["python", "-c", lib.format(args="r'{d}/bomb.npz'")], "error",
             setup=bomb_npz("bomb.npz", "positions_3d"),
             note="a crafted object array must not be unpickled (marker file)"),
        Case("h36m-object-npz-2d", ["python", "-c", lib.format(args="r'{d}/ok.npz', r'{d}/bomb.npz'")], "error",
             setup=chain(bomb_npz("bomb.npz", "positions_2d"), bomb_npz("ok.npz", "positions_3d"))),
    ]
    return c


def all_cases() -> list[Case]:
    """Every case, ids unique."""
    cases = run_cases() + other_cases()
    dup = [k for k, n in Counter(x.id for x in cases).items() if n > 1]
    assert not dup, f"duplicate case ids {dup}"
    return cases


# -------------------------------------------------------------------------------------------------- execution
def _exe(name: str) -> str:
    if name == "python":
        return sys.executable
    p = BIN / name
    return str(p) if p.exists() else name


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    env.pop("HIPART_ARTIFACTS", None)
    return env


def check_jsonl(path: Path, allow_partial: bool = False) -> tuple[bool, int, str]:
    """(ok, frames, why): every complete line parses; a trailing partial line only when allowed."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    n = 0
    for i, line in enumerate(lines):
        try:
            json.loads(line)
        except ValueError:
            return False, n, f"line {i + 1} does not parse"
        n += 1
    if tail:
        if not allow_partial:
            return False, n, "trailing partial line"
        return True, n, "trailing partial line (tolerated)"
    return True, n, ""


def check_npz(path: Path) -> tuple[bool, int, str]:
    """(ok, frames, why): loads with allow_pickle=False and has a frame array."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # any failure means unreadable
        return False, 0, f"np.load failed: {type(e).__name__}: {str(e)[:80]}"
    if "frame" not in arrays:
        return False, 0, f"no 'frame' array (has {sorted(arrays)})"
    return True, len(arrays["frame"]), ""


def check_video(path: Path) -> tuple[bool, int, str]:
    """(ok, frames, why): cv2 opens it and decodes at least one frame (frames counted up to 2000)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return False, 0, "cv2 cannot open it"
        n = 0
        while n < 2000:
            ok, _ = cap.read()
            if not ok:
                break
            n += 1
        return (n > 0), n, "" if n else "no decodable frame"
    finally:
        cap.release()


def check_output(path: Path, allow_partial: bool = False) -> tuple[bool, int, str]:
    """Dispatch on the extension."""
    if not path.exists():
        return False, 0, "missing"
    if path.is_dir():
        return True, 1, ""
    ext = path.suffix.lower()
    if ext == ".jsonl":
        return check_jsonl(path, allow_partial)
    if ext == ".npz":
        return check_npz(path)
    if ext in (".mp4", ".avi", ".mov", ".mkv", ".m4v"):
        return check_video(path)
    if ext == ".json":
        try:
            json.loads(path.read_text())
        except ValueError as e:
            return False, 0, f"bad JSON: {e}"
        return True, 1, ""
    return path.stat().st_size > 0, 1, ""


def _jsonl_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def _preexec(fsize: int | None) -> Callable[[], None] | None:
    if fsize is None:
        return None

    def pre() -> None:
        """In the child: cap file size, and make writes past it fail with EFBIG instead of killing."""
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return pre


def _message(stderr: str) -> str:
    """The error line a user would read: the last line naming an error, else the last non-empty line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.search(r"error|cannot|not |invalid|refus|fail|interrupt|stopp", ln, re.I):
            return ln[:300]
    return lines[-1][:300] if lines else ""


def run_case(case: Case, root: Path) -> dict[str, Any]:
    """Run one case in a fresh folder under `root` and classify it."""
    row: dict[str, Any] = {"id": case.id, "command": case.command, "expect": case.expect}
    if case.skip:
        return {**row, "class": "skipped", "pass": None, "rc": None, "seconds": 0.0, "note": case.skip}
    d = Path(tempfile.mkdtemp(prefix="case-", dir=root))  # no case id in paths: messages are matched
    try:
        if case.setup:
            case.setup(d)
    except Exception as e:  # the harness's own failure: report, do not classify the command
        return {**row, "class": "skipped", "pass": None, "rc": None, "seconds": 0.0,
                "note": f"setup failed: {type(e).__name__}: {e}"}  # fmt: skip
    before = {n: (d / n).read_bytes() for n in case.unchanged if (d / n).exists()}
    argv = [a.replace("{d}", str(d)) for a in case.cmd]
    argv[0] = _exe(argv[0])
    row["argv"] = " ".join(argv[1:]).replace(str(d), "{d}")
    out_f, err_f = open(d / ".stdout", "wb"), open(d / ".stderr", "wb")  # noqa: SIM115
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=d, env=_env(), stdin=subprocess.DEVNULL, stdout=out_f, stderr=err_f,
                            preexec_fn=_preexec(case.fsize), start_new_session=True)  # fmt: skip
    sent, hang, rc = 0, False, None
    while True:
        rc = proc.poll()
        if rc is not None:
            break
        el = time.monotonic() - t0
        if el > case.timeout:
            hang = True
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
            break
        if case.signal and not sent:
            sig, when = case.signal
            fire = False
            if when.startswith("t:"):
                fire = el >= float(when[2:])
            else:
                _, fname, n = when.split(":")
                fire = _jsonl_lines(d / fname) >= int(n.split("+")[0]) or el > case.timeout / 2
            if fire:
                os.kill(proc.pid, sig)
                sent = 1
                row["signal_at_s"] = round(el, 2)
                if when.endswith("+twice"):
                    time.sleep(0.2)
                    if proc.poll() is None:
                        os.kill(proc.pid, sig)
                        sent = 2
        time.sleep(0.05)
    secs = time.monotonic() - t0
    out_f.close()
    err_f.close()
    try:  # children left behind (e.g. by a killed run) must not outlive the case
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    stderr = (d / ".stderr").read_text(errors="replace").replace(str(d), "{d}")
    row.update(rc=rc, seconds=round(secs, 2), message=_message(stderr))
    cls, note = classify(case, d, rc, hang, secs, stderr, bool(sent), before)
    row.update({"class": cls, "pass": cls == PASS_CLASS[case.expect], "note": note})
    if case.note:
        row["case_note"] = case.note
    row["stderr_tail"] = stderr[-1500:]
    return row


def classify(case: Case, d: Path, rc: int, hang: bool, secs: float, stderr: str, signalled: bool,
             before: dict[str, bytes]) -> tuple[str, str]:  # fmt: skip
    """The class of one finished run, and why."""
    if hang:
        return "hang", f"no exit within {case.timeout:.0f} s (killed)"
    if TRACEBACK in stderr:
        last = [ln for ln in stderr.splitlines() if ln.strip()]
        return "raw-traceback", f"rc {rc}: {last[-1][:200] if last else ''}"
    if (d / MARKER).exists():
        return "silent-wrong", "UNSAFE: the crafted pickle ran code (marker file created)"
    for n, content in before.items():
        if not (d / n).exists() or (d / n).read_bytes() != content:
            return "lost-output", f"pre-existing {n} was clobbered"
    for s in case.stderr_not:
        if s in stderr:
            return "silent-wrong", f"message says {s!r}"
    outs: list[str] = []
    lost: list[str] = []
    for name in case.outputs:
        ok, n, why = check_output(d / name, case.allow_partial)
        outs.append(f"{name}: {n} frames" + (f" ({why})" if why else ""))
        if not ok or (case.expect == "ok" and n < case.min_frames):
            lost.append(f"{name}: {why or f'{n} < {case.min_frames} frames'}")
    if case.expect == "ok":
        if rc != 0:
            return ("clear-error" if stderr.strip() else "silent-wrong"), f"expected exit 0, got {rc}: " + \
                _message(stderr)[:200]
        if lost:
            return "lost-output", "; ".join(lost)
        return "ok", "; ".join(outs)
    if case.expect == "error":
        if rc == 0:
            return "silent-wrong", "exit 0 where an error was expected" + (f" ({'; '.join(outs)})" if outs else "")
        if rc < 0:
            return ("lost-output" if lost else "silent-wrong"), f"killed by signal {-rc}, no message"
        if lost:
            return "lost-output", "; ".join(lost)
        if not _message(stderr):
            return "silent-wrong", f"exit {rc} with no message"
        if case.stderr_re and not re.search(case.stderr_re, stderr, re.I):
            return "silent-wrong", f"message does not say /{case.stderr_re}/"
        if case.max_s and secs > case.max_s:
            return "hang", f"failed only after {secs:.0f} s (limit {case.max_s:.0f} s)"
        return "clear-error", f"exit {rc}"
    # graceful
    if lost:
        return "lost-output", f"rc {rc}: " + "; ".join(lost)
    if case.stderr_re and not re.search(case.stderr_re, stderr, re.I):
        return "silent-wrong", f"rc {rc}; message does not say /{case.stderr_re}/"
    if case.rc_ok is not None:
        if rc not in case.rc_ok:
            return "silent-wrong", f"exit {rc}, expected one of {case.rc_ok}"
        return "graceful", f"exit {rc}; " + "; ".join(outs)
    if rc == 0 and signalled:
        return "silent-wrong", "exit 0 after a signal (should be 130/143/129)"
    if rc < 0 and case.outputs:
        return "lost-output", f"killed by signal {-rc} (no handler)"
    return "graceful", f"exit {rc}" + (f"; {'; '.join(outs)}" if outs else "")


# -------------------------------------------------------------------------------------------------- reporting
def machine() -> str:
    """One line: host, CPUs, Python, git revision."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        rev, dirty = "?", ""
    return (f"{platform.machine()} {platform.system()} {platform.release()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, git {rev}{'+dirty' if dirty else ''}, "
            f"{'root' if IS_ROOT else 'user'}, OMP_NUM_THREADS=1")  # fmt: skip


def markdown(rows: list[dict[str, Any]]) -> str:
    """The per-case table."""
    out = ["| id | expect | class | pass | rc | s | note |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        note = str(r.get("note", "")).replace("|", "/").replace("\n", " ")[:140]
        mark = {True: "yes", False: "**NO**", None: "-"}[r["pass"]]
        out.append(f"| {r['id']} | {r['expect']} | {r['class']} | {mark} | {r['rc']} | {r['seconds']} | {note} |")
    return "\n".join(out)


def document(report: dict[str, Any]) -> str:
    """docs/FAULTS.md: every case with the command, what happened (the one-line message) and the exit code."""
    tot = report["totals"]
    out = [
        "# The fault table",
        "",
        "Every case run as a user would, by `OMP_NUM_THREADS=1 python benchmarks/fault_table.py --doc docs/FAULTS.md`",
        f"({report['machine']}; {report['wall_s']} s). Classes: clear-error (non-zero exit, one-line message, no",
        "traceback), graceful (documented non-zero exit such as 130/143 with complete outputs), ok, raw-traceback,",
        "hang, silent-wrong (exit 0 where an error was due, or wrong output), lost-output (an output missing or",
        "unreadable). What each exit code means: [RUNTIME.md](RUNTIME.md#faults-signals-and-exit-codes),",
        "[CLI.md](CLI.md).",
        "",
        f"**{tot['cases']} cases: {tot['pass']} as expected, {tot['fail']} not, {tot['skipped']} skipped** — "
        + ", ".join(f"{k} {v}" for k, v in tot["by_class"].items()) + ".",
        "",
        "| case | command line (`{d}` = a fresh temp folder) | class | exit | behaviour (first line of stderr) |",
        "|---|---|---|---:|---|",
    ]
    for r in report["rows"]:
        msg = str(r.get("message") or r.get("note") or "").replace("|", "/").replace("\n", " ")[:150]
        argv = str(r.get("argv", "")).replace("|", "/")[:170]
        mark = "" if r["pass"] is not False else " **(unexpected)**"
        out.append(f"| {r['id']} | `{r['command']} {argv}` | {r['class']}{mark} | {r['rc']} | {msg} |")
    return "\n".join(out) + "\n"


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per class, per command, pass/fail."""
    return {
        "cases": len(rows),
        "by_class": {k: sum(r["class"] == k for r in rows) for k in CLASSES},
        "by_command": dict(Counter(r["command"] for r in rows)),
        "pass": sum(r["pass"] is True for r in rows),
        "fail": sum(r["pass"] is False for r in rows),
        "skipped": sum(r["pass"] is None for r in rows),
        "failing": [r["id"] for r in rows if r["pass"] is False],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the table (or a subset), write the JSON, print Markdown; exit 1 when any case fails."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma list of case ids (or id prefixes ending in *)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--jobs", type=int, default=1, help="cases run at once (default 1: timings and signals are "
                    "sensitive to load)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=RESULTS / "fault-table.json", help="JSON report path")
    ap.add_argument("--keep", action="store_true", help="keep the per-case temp folders")
    ap.add_argument("--doc", type=Path, help="also write the table as a Markdown page (docs/FAULTS.md)")
    a = ap.parse_args(argv)
    cases = all_cases()
    if a.only:
        want = [w.strip() for w in a.only.split(",") if w.strip()]
        cases = [c for c in cases if any(c.id == w or (w.endswith("*") and c.id.startswith(w[:-1])) for w in want)]
        if not cases:
            print(f"no case matches {a.only!r} (see --list)", file=sys.stderr)
            return 2
    if a.list:
        for c in cases:
            print(f"{c.id:45s} {c.expect:9s} {' '.join(c.cmd)}")
        print(f"{len(cases)} cases: " + ", ".join(f"{k} {v}" for k, v in Counter(c.command for c in cases).items()))
        return 0
    root = Path(tempfile.mkdtemp(prefix="hipart-fault-table-"))
    t0 = time.monotonic()
    rows: list[dict[str, Any]] = []

    def one(c: Case) -> dict[str, Any]:
        """Run a case and print its line."""
        r = run_case(c, root)
        print(f"[{r['class']:13s}] {'PASS' if r['pass'] else ('skip' if r['pass'] is None else 'FAIL')} "
              f"{c.id} ({r['seconds']} s) {str(r.get('note', ''))[:120]}", file=sys.stderr, flush=True)  # fmt: skip
        return r

    try:
        if a.jobs <= 1:
            rows = [one(c) for c in cases]
        else:
            with ThreadPoolExecutor(a.jobs) as pool:
                rows = list(pool.map(one, cases))
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
            for p in _EXPORT_CACHE.values():
                shutil.rmtree(p, ignore_errors=True)
    tot = totals(rows)
    report = {"machine": machine(), "wall_s": round(time.monotonic() - t0, 1), "totals": tot, "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1))
    if a.doc:
        a.doc.write_text(document(report))
    print(markdown(rows))
    print(f"\n{tot['cases']} cases, {tot['pass']} pass, {tot['fail']} fail, {tot['skipped']} skipped; "
          + ", ".join(f"{k} {v}" for k, v in tot["by_class"].items()) + f"\nwrote {a.out}")  # fmt: skip
    return 1 if tot["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
