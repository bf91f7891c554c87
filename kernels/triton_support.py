"""Optional-Triton plumbing shared by the kernel files: import guard, interpreter detection, small helpers.

The package must import without Triton (Jetson has no Triton wheels), so every kernel file takes `triton`
and `tl` from here; when Triton is missing they are stand-ins whose `jit` leaves the function undecorated
and the launchers refuse to run with a clear message.
"""

from __future__ import annotations

import os

import torch

try:  # pragma: no cover - exercised by whichever environment runs the tests
    import triton
    import triton.language as tl

    HAS_TRITON = True
    TRITON_IMPORT_ERROR: str | None = None
except Exception as exc:  # ImportError, or a broken install on an unsupported platform
    HAS_TRITON = False
    TRITON_IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

    class _MissingTriton:
        """Stand-in so `@triton.jit` and `tl.constexpr` annotations still evaluate at import time."""

        @staticmethod
        def jit(fn=None, **_kwargs):
            return fn if fn is not None else (lambda f: f)

        constexpr = object

        def __getattr__(self, name):
            raise RuntimeError(f"triton is not installed ({TRITON_IMPORT_ERROR}); pip install 'hipart-edge[triton]'")

    triton = _MissingTriton()  # type: ignore[assignment]
    tl = _MissingTriton()  # type: ignore[assignment]


def interpreting() -> bool:
    """True when Triton runs kernels with its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def require_triton() -> None:
    if not HAS_TRITON:
        raise RuntimeError(f"triton is not installed ({TRITON_IMPORT_ERROR}); pip install 'hipart-edge[triton]'")


def check_device(*tensors: torch.Tensor) -> None:
    """Triton launches need CUDA tensors, or CPU tensors under the interpreter; all on one device."""
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    device = devices.pop()
    if device.type == "cpu" and not interpreting():
        raise ValueError(
            "CPU tensors need TRITON_INTERPRET=1 (Triton's interpreter); use the reference_* "
            "function or move the tensors to CUDA"
        )


def kernel_dtype(t: torch.Tensor) -> torch.Tensor:
    """The interpreter has no bfloat16: compute such inputs in float32 there (exact widening)."""
    if interpreting() and t.dtype == torch.bfloat16:
        return t.float()
    return t


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def poison_(t: torch.Tensor) -> torch.Tensor:
    """Fill a buffer with a value no kernel writes (NaN / int min) so unwritten elements show up in tests."""
    if t.is_floating_point():
        return t.fill_(float("nan"))
    return t.fill_(torch.iinfo(t.dtype).min)


class NonFiniteInputError(ValueError):
    """Rows containing NaN/Inf reached a nearest-code or argmax lookup; `rows` lists them."""

    def __init__(self, what: str, rows: list[int]):
        shown = rows[:16]
        more = f" (+{len(rows) - len(shown)} more)" if len(rows) > len(shown) else ""
        super().__init__(f"{what}: {len(rows)} input row(s) contain NaN/Inf: {shown}{more}")
        self.rows = rows


def raise_on_invalid(what: str, idx: torch.Tensor) -> None:
    """Index -1 marks a non-finite input row (see the kernels): raise, listing the rows. Syncs the device."""
    bad = (idx < 0).nonzero().flatten()
    if bad.numel():
        raise NonFiniteInputError(what, bad.tolist())


def check_on_nan(on_nan: str) -> None:
    """Validate the launchers' on_nan argument."""
    if on_nan not in ("raise", "mark"):
        raise ValueError(f"on_nan must be 'raise' or 'mark', got {on_nan!r}")


def finish_reference(
    what: str,
    idx: torch.Tensor,
    finite: torch.Tensor,
    table: torch.Tensor,
    out_idx: torch.Tensor | None,
    out_rows: torch.Tensor | None,
    on_nan: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The references' common tail: idx -1 and NaN rows for non-finite inputs, gather, fill outputs, raise."""
    idx = torch.where(finite, idx, torch.full_like(idx, -1))
    rows = table[idx.clamp_min(0)].clone()
    rows[~finite] = float("nan")
    if out_idx is not None:
        out_idx.copy_(idx)
        idx = out_idx
    if out_rows is not None:
        out_rows.copy_(rows)
        rows = out_rows
    if on_nan == "raise":
        raise_on_invalid(what, idx)
    return idx, rows
