"""Outputs written as the run goes: per-frame JSONL or NPZ, and the annotated video.

Every sink checks that its path is writable *before* the run starts (so a bad path fails fast with
a clear message and no existing file is clobbered), writes each frame as it arrives (JSONL: one
flushed line per frame, so a crash loses at most the frame in flight; NPZ: a JSONL journal beside
the target, turned into the .npz atomically at the end) and is closed in a `finally`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hipart.atomic_write import atomic_path


class SinkError(RuntimeError):
    """An output cannot be written (path, permissions, codec)."""


def check_writable(path: str | os.PathLike) -> Path:
    """Create the parent folder if needed and prove we can write there; raise SinkError otherwise."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise SinkError(f"output path {p} is a folder; give a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".hipart-probe-", dir=p.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise SinkError(f"cannot write output {p}: {e.strerror or e}") from None
    if p.exists() and not os.access(p, os.W_OK):
        raise SinkError(f"cannot write output {p}: file is read-only")
    return p


class Sink:
    """Base class: `start()` when the run begins, `write(record, image)` per frame, then `close()`.

    Constructing a sink only checks its path, so a run that fails before its first frame never
    truncates an existing output.
    """

    path: Path

    def start(self) -> None:
        """Open the output (called by the pipeline when the run begins)."""

    def write(self, record: dict[str, Any], image: np.ndarray | None = None) -> None:
        """Write one frame: its record and, for video sinks, the rendered image."""
        raise NotImplementedError

    def close(self) -> None:
        """Flush and finalise the output."""


class JsonlSink(Sink):
    """One JSON object per frame and line, flushed as written."""

    def __init__(self, path: str | os.PathLike):
        self.path = check_writable(path)
        self._f: Any = None
        self.count = 0

    def start(self) -> None:
        """Create (truncate) the file."""
        if self._f is None:
            try:
                self._f = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
            except OSError as e:
                raise SinkError(f"cannot write output {self.path}: {e.strerror}") from None

    def write(self, record: dict[str, Any], image: np.ndarray | None = None) -> None:
        """Append one line and flush it to the OS."""
        if self._f is None:
            self.start()
        self._f.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        self._f.flush()
        self.count += 1

    @property
    def closed(self) -> bool:
        """True once closed (or never started)."""
        return self._f is None or self._f.closed

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()


NPZ_PERSON_FIELDS = ("keypoints_2d", "confidence", "dense_2d", "fine_2d", "pose_3d")


class NpzSink(Sink):
    """Per-person arrays concatenated over the run + `person_frame` (frame index of each row).

    Frames go to `<path>.partial.jsonl` as they come; `close()` writes the .npz atomically and
    removes the journal. After a crash the journal holds every finished frame.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = check_writable(path)
        self.journal = JsonlSink(self.path.with_name(self.path.name + ".partial.jsonl"))
        self.count = 0

    def start(self) -> None:
        """Create the journal."""
        self.journal.start()

    def write(self, record: dict[str, Any], image: np.ndarray | None = None) -> None:
        """Append the frame to the journal."""
        self.journal.write(record)
        self.count += 1

    def close(self) -> None:
        """Build the .npz from the journal (temp file + rename), then delete the journal."""
        if self.journal.closed:
            return
        self.journal.close()
        frames, stamps, status, person_frame = [], [], [], []
        cols: dict[str, list] = {k: [] for k in NPZ_PERSON_FIELDS}
        tok_s, tok_d = [], []
        with open(self.journal.path, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                frames.append(r["frame"])
                stamps.append(r["timestamp"])
                status.append(r["status"])
                for person in r["persons"]:
                    person_frame.append(r["frame"])
                    for k in NPZ_PERSON_FIELDS:
                        cols[k].append(person[k])
                    tok_s.append(person["tokens"]["sparse"])
                    tok_d.append(person["tokens"]["dense"])
        shapes = {
            "keypoints_2d": (17, 2),
            "confidence": (17,),
            "dense_2d": (48, 2),
            "fine_2d": (96, 2),
            "pose_3d": (17, 3),
        }
        arrays = {k: np.asarray(v, np.float32).reshape(-1, *shapes[k]) for k, v in cols.items()}
        arrays.update(
            frame=np.asarray(frames, np.int64),
            timestamp=np.asarray(stamps, np.float64),
            status=np.asarray(status, dtype="U32"),
            person_frame=np.asarray(person_frame, np.int64),
            tokens_sparse=np.asarray(tok_s, np.int64).reshape(-1, 16),
            tokens_dense=np.asarray(tok_d, np.int64).reshape(-1, 48),
        )
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.unlink(self.journal.path)


class VideoSink(Sink):
    """Annotated frames to a video file (mp4v for .mp4, MJPG for .avi); frame size fixed by the first."""

    FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}

    def __init__(self, path: str | os.PathLike, fps: float = 30.0):
        self.path = check_writable(path)
        if self.path.suffix.lower() not in self.FOURCC:
            raise SinkError(f"unsupported video extension {self.path.suffix!r}; use one of {sorted(self.FOURCC)}")
        self.fps = fps
        self._writer: Any = None
        self._size: tuple[int, int] | None = None
        self.count = 0

    def write(self, record: dict[str, Any], image: np.ndarray | None = None) -> None:
        """Append the rendered frame (resized to the first frame's size if it differs)."""
        import cv2

        if image is None:
            return
        if self._writer is None:
            self._size = (image.shape[1], image.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*self.FOURCC[self.path.suffix.lower()])
            self._writer = cv2.VideoWriter(str(self.path), fourcc, float(self.fps), self._size)
            if not self._writer.isOpened():
                raise SinkError(f"OpenCV cannot open a video writer for {self.path} (codec missing?)")
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size)
        self._writer.write(image)
        self.count += 1

    def close(self) -> None:
        """Finalise the container (writes the index; the file is unplayable without it)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def open_sink(path: str | os.PathLike, fps: float = 30.0) -> Sink:
    """A sink chosen by extension: .jsonl, .npz, or a video extension."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".json"):
        return JsonlSink(path)
    if suffix == ".npz":
        return NpzSink(path)
    return VideoSink(path, fps)
