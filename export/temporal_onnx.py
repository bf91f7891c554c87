"""ONNX export of the temporal lifter (`temporal_lift.onnx`: x [B,T,N,2] -> pose3d), checked against PyTorch.

TPS + TRI (and no pruning) is static: the kept frames and the interpolation table are constants, so the graph
is Gather (constant indices) + Mul/Add, batch the only dynamic axis. TPC, TPA and TPMo choose frames from the
data: the graph needs TopK (constant k = r) for the scores and for sorting the chosen indices back into time,
then GatherElements with those data-dependent indices; TPC also a pairwise-distance matrix. They export with
`allow_dynamic=True` (shapes stay static since every r is fixed); see docs/TEMPORAL.md for what was verified.

`temporal_stream` (export_temporal_stream) is the causal streaming form for a server that keeps per-stream state
(Triton's implicit state, export/triton_repo.py): one frame in, the ring buffer of frame tokens in and out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from export.onnx_export import DEFAULT_OPSET, ExportError, GraphSpec, export_module
from export.parity import ParityReport, check_parity, session
from hipart.checkpoint import model_hash
from hipart.models.temporal import TemporalLifter

ARTIFACT = "temporal_lift"
DYNAMIC_STRATEGIES = ("tpc", "tpa", "tpmo")
ABS_TOL = 1e-4  # metres: 0.1 mm


def temporal_spec(model: TemporalLifter) -> GraphSpec:
    """Input/output names and meanings of the temporal artifact for this model's configuration."""
    cfg = model.config
    out = (f"root-relative 3D joints of every frame [B,{cfg.frames},17,3] (m)" if cfg.pipeline == "seq2seq" else
           f"root-relative 3D joints of frame {cfg.output_index} [B,17,3] (m)")  # fmt: skip
    return GraphSpec(ARTIFACT, {"x": f"window of normalised 2D points [B,{cfg.frames},{cfg.num_points},2]"},
                     {"pose3d": out})  # fmt: skip


def export_temporal(model: TemporalLifter, out_path: str | Path, opset: int = DEFAULT_OPSET,
                    run_simplify: bool = True, allow_dynamic: bool = False) -> Path:  # fmt: skip
    """Export the model (its configured pipeline) to ONNX with a dynamic batch axis; returns the path."""
    cfg = model.config
    if cfg.prune in DYNAMIC_STRATEGIES and not allow_dynamic:
        raise ExportError(
            f"prune={cfg.prune!r} picks frames from the data (TopK + GatherElements with dynamic indices); only "
            "TPS (+ TRI or TRA) and no pruning are the supported static artifacts. Pass allow_dynamic=True to try."
        )
    x = torch.zeros(2, cfg.frames, cfg.num_points, 2)
    extra = {"temporal_config": json.dumps(cfg.to_dict())}
    return export_module(model.eval(), (x,), temporal_spec(model), out_path, model_hash(model), opset, run_simplify,
                         extra)  # fmt: skip


def sample_window(model: TemporalLifter, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """A random window (a 2D pose drifting over time, with jitter) as the artifact's input dict.

    The jitter keeps per-frame scores distinct: TopK ties are broken differently by onnxruntime and torch.
    """
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, 1, cfg.num_points, 2, generator=g) * 0.3
    drift = torch.randn(batch, 1, cfg.num_points, 2, generator=g) * 0.01
    jitter = torch.randn(batch, cfg.frames, cfg.num_points, 2, generator=g) * 0.005
    t = torch.arange(cfg.frames, dtype=torch.float32)[None, :, None, None]
    return {"x": (base + drift * t + jitter).numpy()}


def check_temporal_parity(path: str | Path, model: TemporalLifter, batch: int = 2, seed: int = 0,
                          abs_tol: float = ABS_TOL) -> ParityReport:  # fmt: skip
    """onnxruntime vs PyTorch on a sample window; raises ExportError when the max abs error exceeds abs_tol."""
    report = check_parity(path, model.eval(), sample_window(model, batch, seed))
    worst = max(report.max_abs_err.values())
    if worst > abs_tol:
        raise ExportError(f"{path}: onnxruntime differs from PyTorch by {worst:.2e} m (> {abs_tol:.0e})")
    return report


STREAM_ARTIFACT = "temporal_stream"
STREAM_STATIC = ("none", "tps")  # the kept frames must not depend on the data: the state holds tokens, not 2D points


class TemporalStreamGraph(torch.nn.Module):
    """One frame + START/READY + the ring buffer of the last T frame tokens -> causal 3D pose and the new buffer.

    The per-frame stage (`frame_tokens`) runs once on the new frame; the buffer is rolled by one (or, at START, filled
    with T copies of the frame, TemporalStage's warm-up); the lifter runs on the buffer and returns the newest
    frame's pose (seq2frame at T - 1). A slot that is not READY hands its input buffer back unchanged.
    """

    def __init__(self, model: TemporalLifter):
        super().__init__()
        if model.config.prune not in STREAM_STATIC:
            raise ExportError(f"prune={model.config.prune!r} picks frames from the data; the streaming graph supports "
                              f"{' and '.join(STREAM_STATIC)} (static kept frames)")  # fmt: skip
        self.model = model.eval()
        self.frames = model.config.frames

    def forward(self, x: torch.Tensor, start: torch.Tensor, ready: torch.Tensor,
                state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        tok = self.model.frame_tokens(x[:, None])  # [B, 1, n, C]
        started = (start > 0)[:, :, None, None]  # [B, 1, 1, 1]
        window = torch.where(started, tok.expand(-1, self.frames, -1, -1), torch.cat([state[:, 1:], tok], 1))
        xs = x[:, None].expand(-1, self.frames, -1, -1)  # only for the eager shape check: tokens carry the window
        pose = self.model.forward_frame(xs, self.frames - 1, tokens=window)
        return pose, torch.where((ready > 0)[:, :, None, None], window, state)


def stream_state_shape(model: TemporalLifter) -> tuple[int, int, int]:
    """Per-stream state of the streaming graph: [T, tokens per frame, channels] of `frame_tokens`."""
    with torch.no_grad():
        tok = model.eval().frame_tokens(torch.zeros(1, 1, model.config.num_points, 2))
    return model.config.frames, tok.shape[2], tok.shape[3]


def stream_spec(model: TemporalLifter) -> GraphSpec:
    """Input/output names and meanings of the streaming temporal artifact."""
    cfg = model.config
    state = "ring buffer of the last {} frames' tokens [B,{},{},{}] (Triton implicit state)".format(
        cfg.frames, *stream_state_shape(model))  # fmt: skip
    return GraphSpec(
        STREAM_ARTIFACT,
        {"x": f"one frame of normalised 2D points [B,{cfg.num_points},2] (TemporalStage.hierarchical_input)",
         "START": "1 on the first frame of a stream (fills the buffer with this frame), else 0 [B,1] int32",
         "READY": "1 where the batch slot holds a request, else 0 (state passed through) [B,1] int32",
         "state_in": state},
        {"pose3d": "root-relative 3D joints of this frame [B,17,3] (m): the window's last frame (causal)",
         "state_out": state},
    )  # fmt: skip


def export_temporal_stream(model: TemporalLifter, out_path: str | Path, opset: int = DEFAULT_OPSET,
                           run_simplify: bool = True) -> Path:  # fmt: skip
    """Export the streaming (causal, stateful) graph of a static temporal model to ONNX; returns the path."""
    graph = TemporalStreamGraph(model)
    t, n, c = stream_state_shape(model)
    ones = torch.ones(2, 1, dtype=torch.int32)
    inputs = (torch.zeros(2, model.config.num_points, 2), ones, ones, torch.zeros(2, t, n, c))
    extra = {"temporal_config": json.dumps(model.config.to_dict()), "state": json.dumps([t, n, c])}
    return export_module(graph, inputs, stream_spec(model), out_path, model_hash(model), opset, run_simplify, extra)


def sample_stream(model: TemporalLifter, steps: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    """A random stream of frames [steps, B, N, 2] (a drifting, jittered 2D pose; see `sample_window`)."""
    g = torch.Generator().manual_seed(seed)
    n = model.config.num_points
    base, drift = torch.randn(1, batch, n, 2, generator=g) * 0.3, torch.randn(1, batch, n, 2, generator=g) * 0.01
    t = torch.arange(steps, dtype=torch.float32)[:, None, None, None]
    return (base + drift * t + torch.randn(steps, batch, n, 2, generator=g) * 0.005).numpy()


def stream_windows(frames: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """The window each streamed frame closes [steps, B, T, N, 2]: frames since the last START, the oldest repeated."""
    out, window = [], None
    for frame, start in zip(frames, starts, strict=True):
        window = np.repeat(frame[:, None], length, 1) if start or window is None else np.concatenate(
            [window[:, 1:], frame[:, None]], 1)  # fmt: skip
        out.append(window)
    return np.stack(out)


def run_stream(path: str | Path, frames: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Feed a stream frame by frame through the streaming ONNX (onnxruntime, state handed back) -> [steps, B, 17, 3]."""
    sess = session(path)
    state = np.zeros([frames.shape[1], *sess.get_inputs()[3].shape[1:]], np.float32)  # Triton's zero initial state
    poses = []
    for frame, start in zip(frames, starts, strict=True):
        flag = np.full((frames.shape[1], 1), int(start), np.int32)
        pose, state = sess.run(None, {"x": frame, "START": flag, "READY": np.ones_like(flag), "state_in": state})
        poses.append(pose)
    return np.stack(poses)


def check_stream_parity(path: str | Path, model: TemporalLifter, steps: int | None = None, batch: int = 2,
                        seed: int = 0, abs_tol: float = ABS_TOL) -> float:  # fmt: skip
    """The streaming ONNX over a stream with a START in the middle vs PyTorch on each frame's whole window (causal
    output, the per-frame stage recomputed); returns the max abs error, ExportError above abs_tol."""
    t = model.config.frames
    steps = steps or t + 4
    frames = sample_stream(model, steps, batch, seed)
    starts = np.zeros(steps, bool)
    starts[[0, steps - 3]] = True  # the second START must refill the buffer
    got = run_stream(path, frames, starts)
    with torch.no_grad():
        ref = np.stack([model.eval().forward_frame(torch.from_numpy(w), t - 1).numpy()
                        for w in stream_windows(frames, starts, t)])  # fmt: skip
    worst = float(np.abs(got - ref).max())
    if worst > abs_tol:
        raise ExportError(f"{path}: the streamed poses differ from PyTorch's windows by {worst:.2e} m "
                          f"(> {abs_tol:.0e})")
    return worst
