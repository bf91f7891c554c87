"""ONNX export of the HTP diffusion lifter's whole sampler (`htp_lift.onnx`), checked against `HTPDenoiser.lift`.

The graph is `lift` with H and K fixed: the frozen single-frame lifter (condition "lifter", folded in: the only pose
input is x, so a runtime needs no second model; it costs one small MLP pass per frame of the window, about one
denoiser call, see docs/TEMPORAL.md "Deployment"), K DDIM steps unrolled, H hypotheses batched, then JPMA. The
initial noise is an input, so parity runs on fixed noise and a runtime feeds its own seeded noise. Inputs and outputs
are batch-major (the artifact contract: batch on axis 0, the only dynamic axis): noise [B, H, T, 17, 3] is transposed
to lift's [H, B, ...] inside the graph.

onnx / onnxruntime / onnxsim are imported on use: the runtime (edge/htp_stage.py) reads the names and the deployed
sampling defaults from here without them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hipart.checkpoint import model_hash
from hipart.models.htp import HTPDenoiser

if TYPE_CHECKING:
    from export.parity import ParityReport

ARTIFACT = "htp_lift"
ABS_TOL = 1e-4  # metres: 0.1 mm
DEFAULT_HYPOTHESES, DEFAULT_STEPS = 3, 2  # when a checkpoint stores no deployed sampling
DEPLOY_KEY = "deploy"  # checkpoint extra[DEPLOY_KEY] = {"hypotheses": H, "steps": K}: the deployed sampling
DEFAULT_INTRINSICS = (2.0, 2.0, 0.0, 0.0)  # focal = image width, principal point at the centre, in x_s's units


def deployed_sampling(meta: dict[str, Any] | None) -> tuple[int, int]:
    """(H, K) stored in a checkpoint's metadata (`extra.deploy`), else (DEFAULT_HYPOTHESES, DEFAULT_STEPS)."""
    d = ((meta or {}).get("extra") or {}).get(DEPLOY_KEY) or {}
    return int(d.get("hypotheses", DEFAULT_HYPOTHESES)), int(d.get("steps", DEFAULT_STEPS))


def artifact_sampling(extra: dict[str, Any]) -> tuple[int, int] | None:
    """(H, K) an exported htp_lift.onnx was built for, from its `hipart.extra` metadata (None if absent)."""
    try:
        return int(extra["hypotheses"]), int(extra["steps"])
    except (KeyError, TypeError, ValueError):
        return None


def read_extra(sess: Any) -> dict[str, Any]:
    """The `hipart.extra` metadata of an onnxruntime session's model ({} when absent or unreadable)."""
    try:
        extra = json.loads(sess.get_modelmeta().custom_metadata_map.get("hipart.extra", "{}"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return extra if isinstance(extra, dict) else {}


class HTPLiftGraph(torch.nn.Module):
    """`HTPDenoiser.lift` with K steps, batch-major noise: (x, noise [B,H,T,17,3], intrinsics, visible) -> pose."""

    def __init__(self, model: HTPDenoiser, steps: int):
        super().__init__()
        self.model, self.steps = model.eval(), steps

    def forward(self, x: torch.Tensor, noise: torch.Tensor, intrinsics: torch.Tensor,
                visible: torch.Tensor) -> torch.Tensor:  # fmt: skip
        return self.model.lift(x, noise.transpose(0, 1), self.steps, intrinsics=intrinsics, visible=visible)


def htp_spec(model: HTPDenoiser, hypotheses: int, steps: int) -> Any:
    """Input/output names and meanings of the HTP artifact (an export.onnx_export.GraphSpec)."""
    from export.onnx_export import GraphSpec

    c = model.config
    t, j = c.frames, c.num_joints
    return GraphSpec(
        ARTIFACT,
        {"x": f"window of normalised 2D points [B,{t},{c.num_points},2] (the first {j} are x_s)",
         "noise": f"initial DDIM noise [B,{hypotheses},{t},{j},3] (unit Gaussian, diffusion space)",
         "intrinsics": "camera (fx, fy, cx, cy) [B,4] in x's normalised units (hipart.models.diffusion."
                       "normalised_intrinsics; focal = width, centred: 2, 2, 0, 0)",
         "visible": f"joint visibility [B,{t},{j}] bool (JPMA: hidden joints take the hypothesis mean)"},
        {"pose3d": f"JPMA-aggregated root-relative 3D joints of every frame [B,{t},{j},3] (m), {hypotheses} "
                   f"hypotheses, {steps} DDIM steps"},
    )  # fmt: skip


def sample_inputs(model: HTPDenoiser, hypotheses: int, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """A realistic, non-degenerate input dict: a drifting, jittered 2D window (export.temporal_onnx.sample_window),
    seeded noise, focal-equals-width intrinsics and a few hidden joints.

    Exactly repeated frames (a warm-up buffer, a still person) can make TCEP's similarities tie up to rounding, and
    onnxruntime may then select other neighbours than PyTorch (docs/TEMPORAL.md); parity is checked away from them.
    """
    from export.temporal_onnx import sample_window

    c = model.config
    g = torch.Generator().manual_seed(seed + 1)
    x = sample_window(model, batch, seed)["x"]
    noise = torch.randn(batch, hypotheses, c.frames, c.num_joints, 3, generator=g).numpy()
    intr = np.tile(np.asarray(DEFAULT_INTRINSICS, np.float32), (batch, 1))
    intr[:, :2] *= 1.0 + 0.2 * np.arange(batch, dtype=np.float32)[:, None]  # distinct cameras per row
    visible = (torch.rand(batch, c.frames, c.num_joints, generator=g) > 0.1).numpy()
    return {"x": x, "noise": noise, "intrinsics": intr, "visible": visible}


def export_htp(model: HTPDenoiser, out_path: str | Path, hypotheses: int, steps: int, opset: int | None = None,
               run_simplify: bool = True) -> Path:  # fmt: skip
    """Export the sampler (H hypotheses, K steps unrolled, JPMA) with a dynamic batch axis; returns the path."""
    from export.onnx_export import DEFAULT_OPSET, export_module

    if hypotheses < 1:
        raise ValueError(f"hypotheses must be >= 1, got {hypotheses}")
    ex = sample_inputs(model, hypotheses, batch=2)
    extra = {"htp_config": json.dumps(model.config.to_dict()), "hypotheses": str(hypotheses), "steps": str(steps)}
    return export_module(HTPLiftGraph(model, steps), [torch.from_numpy(v) for v in ex.values()],
                         htp_spec(model, hypotheses, steps), out_path, model_hash(model), opset or DEFAULT_OPSET,
                         run_simplify, extra)  # fmt: skip


def check_htp_parity(path: str | Path, model: HTPDenoiser, batch: int = 2, seed: int = 0,
                     abs_tol: float = ABS_TOL) -> ParityReport:  # fmt: skip
    """onnxruntime vs `lift` (with the artifact's H and K) on the same fixed noise (`sample_inputs`); ExportError
    above abs_tol metres."""
    from export.onnx_export import ExportError
    from export.parity import check_parity, session

    sampling = artifact_sampling(read_extra(session(path)))
    if sampling is None:
        raise ExportError(f"{path}: no HTP sampling (hypotheses, steps) in its metadata; not an {ARTIFACT} export")
    hypotheses, steps = sampling
    report = check_parity(path, HTPLiftGraph(model, steps), sample_inputs(model, hypotheses, batch, seed))
    worst = max(report.max_abs_err.values())
    if worst > abs_tol:
        raise ExportError(f"{path}: onnxruntime differs from PyTorch's lift by {worst:.2e} m (> {abs_tol:.0e})")
    return report
