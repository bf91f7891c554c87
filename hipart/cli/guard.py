"""Shared CLI endings: a dataset-folder check and clean error exits (no tracebacks for expected failures)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def is_dataset_dir(path: Path) -> bool:
    """True for a `hipart-data build` folder; otherwise print a clear error and return False."""
    if (path / "manifest.json").exists():
        return True
    print(f"error: {path} is not a dataset folder (no manifest.json); build one with `hipart-data build`",
          file=sys.stderr)  # fmt: skip
    return False


def run_guarded(fn: Callable[[Any], int], args: Any, errors: tuple[type[BaseException], ...]) -> int:
    """fn(args), mapping the expected `errors` to exit 1 and Ctrl-C to 130 (training state is resumable)."""
    try:
        return fn(args)
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: state saved at the last checkpoint step; rerun with --resume", file=sys.stderr)
        return 130
