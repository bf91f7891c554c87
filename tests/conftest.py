"""Shared pytest setup: the `gpu` marker skips cleanly where no CUDA device is present; shared fixtures."""

from __future__ import annotations

import os

import pytest
import torch

from hipart.models.config import HiPARTConfig
from hipart.models.hipart import HiPART

if not torch.cuda.is_available():  # Triton kernels run in the CPU interpreter (must be set before triton loads)
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none present)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_torch_thread():
    """Tiny ops on 2 shared cores: torch intra-op threads cost far more than they save."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def tiny_model() -> HiPART:
    """A tiny HiPART with distinct (trained-like) codebooks, in eval mode."""
    torch.manual_seed(0)
    m = HiPART(HiPARTConfig.tiny()).eval()
    with torch.no_grad():
        m.tokenizer.sparse_quantizer.codebook.normal_()
        m.tokenizer.dense_quantizer.codebook.normal_()
    m.sync_codebooks()
    return m


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny built-dataset folder with consecutive frames (tests/temporal_data.py), written once per module; modules
    with their own `data` fixture override it."""
    from tests.temporal_data import write_tiny_dataset

    return write_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")
