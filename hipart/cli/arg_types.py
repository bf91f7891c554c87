"""argparse value types shared by every command: a bad flag value is refused at parse time (exit 2, one line)."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

from hipart.atomic_write import OutputDirError, ensure_writable_file


def _whole(text: str, minimum: int) -> int:
    """An integer >= minimum, else ArgumentTypeError."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}") from None
    if v < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
    return v


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _whole(text, 1)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return v


def confidence(text: str) -> float:
    """argparse type: a confidence threshold in [0, 1]."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= v <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be in [0, 1] (detector scores), got {text}")
    return v


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _whole(text, 0)


def device_name(text: str) -> str:
    """argparse type: auto, cpu, cuda or cuda:N."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def writable_file(text: str) -> Path:
    """argparse type: an output file path whose folder exists (or can be made) and is writable; not a folder."""
    try:
        return ensure_writable_file(text)
    except OutputDirError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """--checkpoint | --random-weights, and the older --config, with the same meaning in every command that runs a
    model (docs/CLI.md)."""
    from hipart.models.config import ARCHITECTURES

    model = p.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", help="HiPART checkpoint .pt (default: the bundled model)")
    model.add_argument("--random-weights", choices=ARCHITECTURES, metavar="ARCH",
                       help="an untrained model of architecture paper | edge | tiny instead (plumbing and speed only)")
    p.add_argument("--config", default="paper", choices=ARCHITECTURES,
                   help="architecture of the random model used only when no checkpoint exists at all (kept for old "
                   "scripts; prefer --random-weights)")
