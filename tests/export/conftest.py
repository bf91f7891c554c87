"""Shared fixtures: the stand-in model exported once per session."""

from __future__ import annotations

import pytest
import torch

from export.onnx_export import GraphSpec, export_module
from hipart.checkpoint import model_hash
from tests.export.standin import StandIn, StandInStep, make_inputs

UNROLLED = GraphSpec(
    "standin_densify",
    {"x_s": "normalised 2D pose [B,17,2]"},
    {"points": "decoded 2D points [B,P,2]", "tokens": "greedy token ids [B,T]"},
)
STEP = GraphSpec(
    "standin_decode_step",
    {"h": "step input embedding [B,D]", "step": "step index [B]", "past_k": "K cache", "past_v": "V cache"},
    {"logits": "[B,K]", "token": "[B]", "present_k": "K cache", "present_v": "V cache"},
)


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs on one torch thread (tests/conftest.py)."""
    yield


@pytest.fixture(scope="session")
def standin() -> StandIn:
    return StandIn().eval()


@pytest.fixture(scope="session")
def standin_onnx(standin, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("standin") / "standin.onnx"
    x = torch.from_numpy(make_inputs(2, 0)["x_s"])
    export_module(standin, (x,), UNROLLED, out, model_hash(standin))
    return str(out)


@pytest.fixture(scope="session")
def standin_step_onnx(standin, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("standin") / "standin_step.onnx"
    b = 2
    h = torch.randn(b, standin.cfg.dim)
    k, v = standin.empty_cache(b)
    export_module(StandInStep(standin), (h, torch.zeros(b, dtype=torch.long), k, v), STEP, out, "x")
    return str(out)
