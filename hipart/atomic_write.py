"""Write files so a reader never sees a half-written file: temp name in the same folder, then rename.

The one implementation of atomic writes for every package (checkpoints, exported artifacts, calibration sets)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputDirError(OSError):
    """The output folder cannot be created or written."""


def ensure_writable_dir(path: str | Path) -> Path:
    """Create `path` if needed and prove it is writable; raise OutputDirError with a clear message if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputDirError(f"output directory {path} is not writable: {e.strerror or e}") from e
    return path


def ensure_writable_file(path: str | Path) -> Path:
    """Create the parent folder if needed and prove a file can be written there (not a folder, not read-only);
    OutputDirError with a one-line reason otherwise. Nothing is written to `path` itself."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise OutputDirError(f"output path {p} is a folder; give a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".hipart-probe-", dir=p.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputDirError(f"cannot write output {p}: {e.strerror or e}") from None
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputDirError(f"cannot write output {p}: file is read-only")
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `final`; rename it onto `final` on success, delete it on any error."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; artifacts get the usual mode
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(final: str | Path, data: bytes) -> Path:
    """Write `data` to `final` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)
