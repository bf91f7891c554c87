"""Interchangeable HiPART backends: one pure `infer(x_s) -> Result` model call (docs/ARCHITECTURE.md §6)."""

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
