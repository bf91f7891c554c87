"""argparse value types shared by every command: a bad flag value is refused at parse time (exit 2, one line)."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
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


def _number(text: str, ok: Callable[[float], bool], expected: str, must: str) -> float:
    """A float for which ok(v) holds, else ArgumentTypeError ('expected <expected>' / 'must be <must>')."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(v):  # a nan fails every check
        raise argparse.ArgumentTypeError(f"must be {must}, got {text}")
    return v


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _number(text, lambda v: math.isfinite(v) and v > 0, "a number > 0", "a finite number > 0")


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _number(text, lambda v: math.isfinite(v) and v >= 0, "a number >= 0", "a finite number >= 0")


def confidence(text: str) -> float:
    """argparse type: a confidence threshold in [0, 1]."""
    return _number(text, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]", "in [0, 1] (detector scores)")


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
