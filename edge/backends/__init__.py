"""Interchangeable HiPART backends: one `run(kpts2d, conf) -> Result` signature (ARCHITECTURE.md §6)."""

from edge.backends.base import Backend, BackendError, BackendUnavailable, Result
from edge.backends.registry import BACKENDS, available_backends, create_backend

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "Result",
    "available_backends",
    "create_backend",
]
