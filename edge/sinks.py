"""Outputs written as the run goes: per-frame JSONL or NPZ, and the annotated video.

Every sink checks that its path is writable *before* the run starts (so a bad path fails fast with
a clear message and no existing file is clobbered), writes each frame as it arrives and is closed in a
`finally`. A killed run (SIGKILL, power loss) leaves every output readable up to its last flushed frame:
JSONL is one flushed line per frame; NPZ goes through a JSONL journal beside the target (`<name>.partial.jsonl`),
turned into the .npz atomically at the end, or afterwards by `hipart-run --recover <name>.npz`; video is
fragmented MP4 (or Matroska / AVI). A write error (disk full) raises SinkError and leaves the file complete up
to the last good frame.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from hipart.atomic_write import OutputDirError, atomic_path, ensure_writable_file

log = logging.getLogger("hipart.edge")


class SinkError(RuntimeError):
    """An output cannot be written (path, permissions, codec, disk full)."""


POSE_EXTENSIONS = (".jsonl", ".json", ".npz")
JOURNAL_SUFFIX = ".partial.jsonl"


def _reason(e: BaseException) -> str:
    """A one-line reason for an OS / FFmpeg write error, naming a full disk plainly."""
    code = getattr(e, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"no space left for the file ({os.strerror(code)})"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def check_writable(path: str | os.PathLike) -> Path:
    """Create the parent folder if needed and prove we can write there; raise SinkError otherwise."""
    try:
        return ensure_writable_file(path)
    except OutputDirError as e:
        raise SinkError(str(e)) from None


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
        """Append one line and flush it to the OS; on a write error, cut the file back to the last whole line."""
        if self._f is None:
            self.start()
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        try:
            self._f.write(line)
            self._f.flush()
        except OSError as e:
            self._cut_back()
            raise SinkError(f"writing {self.path} failed after {self.count} frames: {_reason(e)}") from None
        self._good = self._f.tell()
        self.count += 1

    _good = 0  # byte offset after the last whole line

    def _cut_back(self) -> None:
        """Drop a half-written line (the file stays valid JSONL) and close the file."""
        f, self._f = self._f, None
        try:
            os.ftruncate(f.fileno(), self._good)
        except OSError:
            pass
        try:
            f.close()
        except OSError:  # the buffered tail cannot be written either: it is the half line we cut
            pass

    @property
    def closed(self) -> bool:
        """True once closed (or never started)."""
        return self._f is None or self._f.closed

    def close(self) -> None:
        """Flush, fsync and close the file (idempotent)."""
        if self.closed:
            return
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
        except OSError as e:
            self._cut_back()
            raise SinkError(f"finishing {self.path} failed: {_reason(e)}") from None


NPZ_PERSON_SHAPES = {  # per-person record field -> its array shape in the .npz (rows stacked over the run)
    "keypoints_2d": (17, 2),
    "confidence": (17,),
    "dense_2d": (48, 2),
    "fine_2d": (96, 2),
    "pose_3d": (17, 3),
}


class NpzSink(Sink):
    """Per-person arrays concatenated over the run + `person_frame` (frame index of each row) and `track_id` (each
    row's track id: stable across frames with a tracker, else the person's index in its frame).

    Frames go to the journal `<path>.partial.jsonl` as they come; `close()` writes the .npz atomically and
    removes the journal. After a crash the journal holds every finished frame, and `recover_npz` (or
    `hipart-run --recover <path>`) turns it into the .npz. A journal left by an earlier killed run is recovered to
    `<stem>.recovered.npz` when a new run starts, never overwritten.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = check_writable(path)
        self.journal = JsonlSink(journal_path(self.path))
        self.count = 0

    def start(self) -> None:
        """Recover a stale journal (earlier killed run), then create the journal."""
        if self.journal.path.exists() and self.journal.closed:
            target = self.path.with_name(self.path.stem + ".recovered.npz")
            _, n = recover_npz(self.path, target)
            log.warning("%s: an earlier run was killed; its %d frames were recovered into %s", self.path, n, target)
        self.journal.start()
        self._open = True

    _open = False  # started and not yet turned into the .npz

    def write(self, record: dict[str, Any], image: np.ndarray | None = None) -> None:
        """Append the frame to the journal."""
        if not self._open:
            self.start()
        self.journal.write(record)
        self.count += 1

    def close(self) -> None:
        """Build the .npz from the journal (temp file + rename), then delete the journal; keep it on failure.

        After a journal write error (disk full) the .npz is still built from the frames the journal holds."""
        if not self._open:
            return
        self._open = False
        try:
            self.journal.close()
        finally:
            recover_npz(self.path)


def journal_path(npz: str | os.PathLike) -> Path:
    """The journal beside an .npz output: `<name>.npz.partial.jsonl`."""
    p = Path(npz)
    return p.with_name(p.name + JOURNAL_SUFFIX)


def read_journal(journal: str | os.PathLike) -> list[dict[str, Any]]:
    """Every whole record of a JSONL journal (a half-written last line, the one in flight at a kill, is skipped)."""
    records = []
    with open(journal, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # the line in flight when the run was killed
                continue
            raise SinkError(f"{journal}: line {i + 1} is not a JSON record; not a hipart-run journal") from None
    return records


def recover_npz(npz: str | os.PathLike, target: str | os.PathLike | None = None) -> tuple[Path, int]:
    """Turn the journal of `npz` into `target` (default `npz`) atomically and delete it; returns (path, frames).

    SinkError when the journal is missing or unreadable, or the .npz cannot be written (the journal is then kept).
    """
    npz = Path(npz)
    journal = journal_path(npz)
    if not journal.is_file():
        raise SinkError(f"no journal {journal} to recover (the run finished, or wrote no .npz)")
    try:
        records = read_journal(journal)
        arrays = _npz_arrays(records)
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise SinkError(f"{journal}: not a readable hipart-run journal ({type(e).__name__}: {e})") from None
    out = Path(target) if target is not None else npz
    try:
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    except OSError as e:
        raise SinkError(
            f"writing {out} failed: {_reason(e)}; the frames are kept in {journal} "
            f"(free space, then: hipart-run --recover {npz})"
        ) from None
    os.unlink(journal)
    return out, len(records)


def _npz_arrays(records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The .npz arrays of a list of frame records."""
    frames, stamps, status, person_frame, track_id = [], [], [], [], []
    cols: dict[str, list] = {k: [] for k in NPZ_PERSON_SHAPES}
    tok_s, tok_d = [], []
    for r in records:
        frames.append(r["frame"])
        stamps.append(r["timestamp"])
        status.append(r["status"])
        for i, person in enumerate(r["persons"]):
            person_frame.append(r["frame"])
            track_id.append(person.get("track_id", i))  # journals from before tracking: the index
            for k in NPZ_PERSON_SHAPES:
                cols[k].append(person[k])
            tok_s.append(person["tokens"]["sparse"])
            tok_d.append(person["tokens"]["dense"])
    arrays = {k: np.asarray(v, np.float32).reshape(-1, *NPZ_PERSON_SHAPES[k]) for k, v in cols.items()}
    arrays.update(
        frame=np.asarray(frames, np.int64),
        timestamp=np.asarray(stamps, np.float64),
        status=np.asarray(status, dtype="U32"),
        person_frame=np.asarray(person_frame, np.int64),
        track_id=np.asarray(track_id, np.int64),
        tokens_sparse=np.asarray(tok_s, np.int64).reshape(-1, 16),
        tokens_dense=np.asarray(tok_d, np.int64).reshape(-1, 48),
    )
    return arrays


class VideoSink(Sink):
    """Annotated frames to a video that stays playable if the run is killed (PyAV / FFmpeg).

    .mp4/.m4v/.mov: H.264 in *fragmented* MP4 (an index per fragment, one fragment per second), so a killed run
    leaves every finished second playable; .mkv: H.264 in Matroska; .avi: Motion-JPEG. Frame size is fixed by the
    first frame (later frames are resized). A write error (disk full) raises SinkError.
    """

    _FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}  # an index per fragment, none at the end
    FORMATS = {  # extension -> (container, codec, container options)
        ".mp4": ("mp4", "libx264", _FRAGMENTED),
        ".m4v": ("mp4", "libx264", _FRAGMENTED),
        ".mov": ("mov", "libx264", _FRAGMENTED),
        ".mkv": ("matroska", "libx264", {}),
        ".avi": ("avi", "mjpeg", {}),
    }

    def __init__(self, path: str | os.PathLike, fps: float = 30.0):
        self.path = check_writable(path)
        if self.path.suffix.lower() not in self.FORMATS:
            raise SinkError(f"unsupported video extension {self.path.suffix!r}; use one of {sorted(self.FORMATS)}")
        try:
            import av  # noqa: F401
        except ImportError:
            raise SinkError("writing video needs PyAV: pip install av (pinned in requirements-deploy.txt)") from None
        self.fps = fps if fps and np.isfinite(fps) and fps > 0 else 30.0
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None
        self.count = 0

    def _open(self, width: int, height: int) -> None:
        import av

        fmt, codec, opts = self.FORMATS[self.path.suffix.lower()]
        self._size = (width - width % 2, height - height % 2)  # yuv420p needs even sizes
        try:
            self._container = av.open(str(self.path), "w", format=fmt, options={**opts, "flush_packets": "1"})
            rate = Fraction(round(self.fps * 1000), 1000)
            if codec == "libx264":
                stream = self._container.add_stream(
                    codec, rate=rate, options={"preset": "veryfast", "tune": "zerolatency", "crf": "23"}
                )
                stream.pix_fmt = "yuv420p"
            else:
                stream = self._container.add_stream(codec, rate=rate)
                stream.pix_fmt = "yuvj420p"
            stream.width, stream.height = self._size
            stream.codec_context.gop_size = max(1, round(self.fps))  # a keyframe, hence a fragment, per second
            self._stream = stream
        except (OSError, ValueError, av.FFmpegError) as e:
            raise SinkError(f"cannot open a video writer for {self.path}: {e}") from None

    def write(self, record: dict[str, Any], image: np.ndarray | None = None) -> None:
        """Append the rendered frame (resized to the first frame's size if it differs)."""
        import av

        if image is None:
            return
        if self._container is None:
            self._open(image.shape[1], image.shape[0])
        if (image.shape[1], image.shape[0]) != self._size:
            import cv2

            image = cv2.resize(image, self._size)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        self._mux(self._stream.encode(frame))
        self.count += 1

    def _mux(self, packets: Any) -> None:
        import av

        try:
            self._container.mux(packets)
        except (OSError, av.FFmpegError) as e:
            raise SinkError(f"writing {self.path} failed: {_reason(e)}") from None

    def close(self) -> None:
        """Flush the encoder and close the container (idempotent)."""
        if self._container is None:
            return
        try:
            self._mux(self._stream.encode(None))
        finally:
            container, self._container = self._container, None
            try:
                container.close()
            except Exception as e:  # the OS refused the final bytes (disk full)
                raise SinkError(f"finishing {self.path} failed: {_reason(e)}") from None


def open_sink(path: str | os.PathLike, fps: float = 30.0, kind: str | None = None) -> Sink:
    """A sink chosen by extension: .jsonl/.json, .npz, or a video extension; `kind` 'poses' or 'video' checks it."""
    suffix = Path(path).suffix.lower()
    if kind == "poses" and suffix not in POSE_EXTENSIONS:
        raise SinkError(
            f"--poses {path}: poses are written as {', '.join(POSE_EXTENSIONS)}; for a video use --save {path}"
        )
    if kind == "video" and suffix in POSE_EXTENSIONS:
        raise SinkError(
            f"--save {path}: --save writes a video ({', '.join(sorted(VideoSink.FORMATS))}); "
            f"for poses use --poses {path}"
        )
    if suffix in (".jsonl", ".json"):
        return JsonlSink(path)
    if suffix == ".npz":
        return NpzSink(path)
    return VideoSink(path, fps)
