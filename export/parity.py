"""onnxruntime vs PyTorch parity: exact token ids, coordinates within a relative tolerance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

REL_TOL = 1e-4


@dataclass
class ParityReport:
    """Per-output error of an ONNX artifact against the PyTorch module it came from."""

    max_rel_err: dict[str, float] = field(default_factory=dict)
    max_abs_err: dict[str, float] = field(default_factory=dict)
    tokens_equal: dict[str, bool] = field(default_factory=dict)

    @property
    def worst_rel(self) -> float:
        """Largest relative error over float outputs (0.0 when there are none)."""
        return max(self.max_rel_err.values(), default=0.0)

    def ok(self, rel_tol: float = REL_TOL) -> bool:
        """True when every token output is identical and every float output is within `rel_tol`."""
        return all(self.tokens_equal.values()) and self.worst_rel <= rel_tol


def session(
    model: str | Path | bytes, providers: Sequence[str] = ("CPUExecutionProvider",)
) -> ort.InferenceSession:
    """An onnxruntime session (CPU by default) over a model file or serialized model bytes."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=list(providers))


def relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| / max(|ref|) over the tensor (scale-aware, no blow-up near zero entries)."""
    scale = max(float(np.abs(ref).max()), 1e-12)
    return float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max()) / scale


def compare_outputs(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> ParityReport:
    """Compare named outputs: integer tensors must match exactly, float tensors get a relative error."""
    report = ParityReport()
    for name, r in ref.items():
        g = got[name]
        if g.shape != r.shape:
            raise ValueError(f"{name}: shape {g.shape} != reference {r.shape}")
        if np.issubdtype(r.dtype, np.integer):
            report.tokens_equal[name] = bool(np.array_equal(g, r))
        else:
            report.max_rel_err[name] = relative_error(g, r)
            report.max_abs_err[name] = float(np.abs(g.astype(np.float64) - r).max())
    return report


def torch_outputs(module: torch.nn.Module, inputs: dict[str, np.ndarray], names: Sequence[str]) -> dict:
    """Run the PyTorch module on the same inputs, returning outputs under the artifact's output names."""
    with torch.no_grad():
        out = module.eval()(*(torch.from_numpy(v) for v in inputs.values()))
    out = out if isinstance(out, tuple | list) else (out,)
    return {n: o.detach().cpu().numpy() for n, o in zip(names, out, strict=True)}


def check_parity(path: str | Path, module: torch.nn.Module, inputs: dict[str, np.ndarray]) -> ParityReport:
    """Run `path` in onnxruntime and `module` in PyTorch on `inputs` and compare."""
    sess = session(path)
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(names, inputs), strict=True))
    return compare_outputs(got, torch_outputs(module, inputs, names))
