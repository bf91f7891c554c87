"""ONNX export of the temporal lifter (`temporal_lift.onnx`: x [B,T,N,2] -> pose3d), checked against PyTorch.

TPS + TRI (and no pruning) is static: the kept frames and the interpolation table are constants, so the graph
is Gather (constant indices) + Mul/Add, batch the only dynamic axis. TPC, TPA and TPMo choose frames from the
data: the graph needs TopK (constant k = r) for the scores and for sorting the chosen indices back into time,
then GatherElements with those data-dependent indices; TPC also a pairwise-distance matrix. They export with
`allow_dynamic=True` (shapes stay static since every r is fixed); see docs/TEMPORAL.md for what was verified.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from export.onnx_export import DEFAULT_OPSET, ExportError, GraphSpec, export_module
from export.parity import ParityReport, check_parity
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
