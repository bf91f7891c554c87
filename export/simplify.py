"""onnx-simplifier pass and the full `onnx.checker` check applied to every artifact."""

from __future__ import annotations

import onnx
import onnxsim


class SimplifyError(RuntimeError):
    """onnx-simplifier failed or produced an invalid graph."""


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant-fold and clean the graph with onnx-simplifier (no fusions that change the op set)."""
    try:
        simplified, ok = onnxsim.simplify(model, check_n=0, skip_fuse_bn=True)
    except Exception as e:  # onnxsim raises a variety of types from its C++ core
        raise SimplifyError(f"onnx-simplifier failed: {e}") from e
    if not ok:
        raise SimplifyError("onnx-simplifier could not validate the simplified model")
    return simplified


def check(model: onnx.ModelProto) -> None:
    """Run onnx.checker with full_check (schema + strict shape inference); raises onnx.checker.ValidationError."""
    onnx.checker.check_model(model, full_check=True)
