"""Kernel tests: Triton's CPU interpreter when no CUDA device is present, fresh seeds, one torch thread.

TRITON_INTERPRET must be set before triton is first imported (triton.jit decides at decoration time), so it
is set here, at collection, before any test module imports kernels/.
"""

from __future__ import annotations

import os

import pytest
import torch

# TRITON_INTERPRET=1 (no CUDA) is set by tests/conftest.py, which pytest loads first.

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def device() -> torch.device:
    return DEVICE


@pytest.fixture
def seed(request) -> int:
    """A fresh seed per test (or $HIPART_TEST_SEED to replay one); shown in the report of a failing test."""
    s = int(os.environ.get("HIPART_TEST_SEED") or int.from_bytes(os.urandom(4), "little"))
    torch.manual_seed(s)
    request.node.user_properties.append(("seed", s))
    print(f"seed={s} (replay with HIPART_TEST_SEED={s})")
    return s


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every test here runs on one torch thread (tests/conftest.py)."""
    yield
