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


def exit_codes(codes: dict[int, str]) -> str:
    """An argparse epilog listing a command's exit codes (plus Ctrl-C / SIGTERM, the same for every command)."""
    rows = {**codes, 130: "stopped by Ctrl-C (SIGINT)", 143: "stopped by SIGTERM (docker stop, systemd)"}
    return "exit codes:\n" + "\n".join(f"  {k:<4} {v}" for k, v in sorted(rows.items()))


class Terminated(BaseException):
    """SIGTERM / SIGHUP received: unwinds like Ctrl-C so `finally` blocks run and files are closed."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


def install_stop_handlers() -> None:
    """Ctrl-C raises KeyboardInterrupt (even when started with SIGINT ignored, as under nohup or `cmd &`), and
    SIGTERM / SIGHUP raise Terminated, so both unwind through `finally` blocks and end in one line."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _raise_terminated)


def interruptible(prog: str, main: Callable[[], int], when: str = "") -> int:
    """main() with Ctrl-C -> exit 130 and SIGTERM / SIGHUP -> 128+N, each a one-line message (`when` appended, e.g.
    " while starting"), never a traceback."""
    import signal

    install_stop_handlers()
    try:
        return main()
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted (Ctrl-C){when}", file=sys.stderr)
        return 128 + signal.SIGINT
    except Terminated as t:
        print(f"\n{prog}: stopped by {signal.Signals(t.signum).name}{when}", file=sys.stderr)
        return 128 + t.signum
