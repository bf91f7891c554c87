"""`hipart-run` as a library call: one builder (source, Estimator, sinks) for hipart-run, the bench and the soak.

With the onnxruntime or TensorRT backend (named, or picked by `auto`) and no --checkpoint, nothing here imports
torch: the weights are only identified (the bundled model's hash, from its JSON sidecar) to check the artifacts.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from edge.backends import BackendError, create_backend
from edge.backends.registry import ARTIFACT_BACKENDS, backend_class, expected_model, resolve_auto
from edge.backends.remote import DEFAULT_RETRY_S, DEFAULT_TIMEOUT_S
from edge.camera_space import Intrinsics
from edge.detectors import DetectorError, create_detector
from edge.estimator import Estimator
from edge.occlusion import DEFAULT_MIN_CONF
from edge.pipeline import Item, Pipeline, RunStats
from edge.sinks import Sink, SinkError, open_sink
from edge.smoothing import PoseSmoother
from edge.sources import PacedSource, Source, SourceError, open_source
from edge.temporal import TemporalStage, load_video_lifter
from edge.visualize import render_frame
from edge.weights import LoadedModel, bundled_reference, load_model

log = logging.getLogger("hipart.edge")


class RunError(RuntimeError):
    """The run cannot start (bad source, output path, checkpoint, backend): message for the user."""


@dataclass
class RunOptions:
    """Everything `hipart-run` accepts (see cli_run for the flags)."""

    source: str = "sample"
    backend: str = "auto"  # the fastest available (edge.backends.registry.resolve_auto)
    artifacts: str | None = None
    device: str = "auto"
    checkpoint: str | None = None
    random_weights: str | None = None  # an architecture (paper | edge | tiny): untrained model instead
    config: str = "paper"  # architecture of the random model when no checkpoint exists at all (older flag)
    detector: str = "blazepose"
    detector_model: str | None = None
    detector_layout: str = "topdown"
    keypoint_format: str | None = None
    save: str | None = None
    poses: list[str] = field(default_factory=list)
    show: bool = False
    smooth: bool = False
    track: bool | None = None  # stable per-person track ids (norfair); None: on with a multi-person detector
    track_max_age: int = 30  # frames an established track survives without a detection
    intrinsics: str | None = None  # 'F' or 'fx,fy,cx,cy' (px): persons' roots in camera space (edge/camera_space.py)
    min_conf: float = DEFAULT_MIN_CONF
    queue_size: int = 4
    max_frames: int | None = None
    loop: bool = False
    quiet: bool = False
    threads: int | None = None
    duration: float | None = None
    max_batch_frames: int = 8
    temporal: str | None = None  # temporal lifter or HTP checkpoint (hipart-temporal train / htp-train), default, htp
    temporal_mode: str = "causal"  # causal | centred | seq2seq (files only)
    htp_hypotheses: int | None = None  # HTP: H (None: the checkpoint's deployed value, else 3)
    htp_steps: int | None = None  # HTP: K DDIM steps (None: the checkpoint's deployed value, else 2)
    pace: bool = False  # play a file source in real time, like a camera (edge.sources.PacedSource)
    max_persons: int = 8  # blazepose-multi: most persons per frame
    min_person_height: float = 0.0  # blazepose-multi: drop persons shorter than this (px)
    detector_tiles: bool = False  # blazepose-multi: also detect on 2x2 tiles (small persons)
    server: str | None = None  # hipart-serve URL: HiPART runs there (edge.backends.remote), no local model
    server_timeout: float = DEFAULT_TIMEOUT_S  # the longest one frame waits on the server
    server_retry: float = DEFAULT_RETRY_S  # the longest gap between reconnection attempts while the server is away


def _say(out: TextIO, msg: str) -> None:
    print(msg, file=out, flush=True)


class _Window:
    """An OpenCV window when a display exists; a no-op (with one notice) otherwise."""

    def __init__(self, out: TextIO):
        self.ok = bool(
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("win32", "darwin")
        )
        if not self.ok:
            _say(out, "--show: no display found; running headless (use --save to keep the video)")

    def show(self, image: object) -> None:
        """Show one frame; Esc or q stops the run like Ctrl-C."""
        if not self.ok:
            return
        import cv2

        try:
            cv2.imshow("hipart-run", image)
            if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                raise KeyboardInterrupt
        except cv2.error:
            self.ok = False


class _ShowSink(Sink):
    def __init__(self, window: _Window):
        self.window = window

    def write(self, record: dict, image: object = None) -> None:
        """Show the rendered frame in the window."""
        if image is not None:
            self.window.show(image)


def _silent(msg: str) -> None:
    """Drop a message (library callers that print nothing)."""


def needs_detector(source: Source) -> bool:
    """The one rule: a source of images needs a 2D detector; a keypoint source brings its own 2D."""
    return not source.provides_keypoints


def build_estimator(
    opts: RunOptions, loaded: LoadedModel, source: Source | None = None, say: Callable[[str], None] = _silent
) -> Estimator:
    """The Estimator of `opts`: backend, a detector when `source` needs one, smoothing / temporal; else RunError."""
    temporal = _temporal_stage(opts, say)
    if temporal is not None and temporal.mode == "seq2seq" and source is not None and source.live:
        raise RunError("--temporal-mode seq2seq needs a file source (it waits for T frames); use causal or centred")
    intrinsics = None
    if opts.intrinsics:
        try:
            intrinsics = Intrinsics.parse(opts.intrinsics, *((source.width, source.height) if source else (None, None)))
        except ValueError as e:
            raise RunError(f"--intrinsics: {e} (for this source give fx,fy,cx,cy)") from None
    stateless = source is not None and source.independent_frames  # nothing carried from one image to the next
    tracker = None
    if (opts.track if opts.track is not None else opts.detector in ("blazepose-multi", "onnx")) and not stateless:
        from edge.tracking import PersonTracker

        try:
            tracker = PersonTracker(opts.track_max_age, min_conf=opts.min_conf)
        except (ImportError, ValueError) as e:
            raise RunError(f"--track: {e}") from None
    name = "remote" if opts.server else opts.backend
    expected = expected_model(loaded)  # artifacts must come from the checkpoint / bundled model in use
    if name == "auto":
        name, why = resolve_auto(opts.artifacts, expected)
        say(why)
    detector = None
    if source is None or needs_detector(source):
        try:
            kw: dict[str, object] = {"layout": opts.detector_layout} if opts.detector == "onnx" else {}
            if opts.detector == "blazepose-multi":
                kw = {"max_persons": opts.max_persons, "min_person_height": opts.min_person_height,
                      "tiles": opts.detector_tiles}
            detector = create_detector(opts.detector, opts.detector_model, **kw)
        except DetectorError as e:
            raise RunError(str(e)) from None
    if opts.device != "auto" and name != "torch":
        say(f"note: --device {opts.device} applies to the torch backend only; {name} chooses its own device")
    # Detector and HiPART run concurrently: by default HiPART gets half the cores, the detector the rest
    # (measured on 2 cores: 10.2 FPS with 1 thread each vs 6.5 FPS when both ask for every core).
    threads = opts.threads or (max(1, (os.cpu_count() or 2) // 2) if detector is not None else None)
    try:
        if opts.server:
            backend = backend_class(name)(opts.server, opts.server_timeout, opts.server_retry, opts.min_conf)
            loaded.model_hash = backend.model_hash  # the server names the model it runs
        else:
            if threads and name not in ARTIFACT_BACKENDS:  # the artifact backends take `threads` themselves
                import torch

                torch.set_num_threads(threads)
            backend = create_backend(
                name, loaded.model, opts.artifacts, opts.device, loaded.model_hash, opts.min_conf, threads,
                expected=expected,
            )  # fmt: skip
    except (BackendError, ValueError) as e:
        if detector is not None:
            detector.close()
        raise RunError(str(e)) from None
    art_hash = getattr(backend, "artifact_hash", None)
    if art_hash and loaded.model_hash not in ("", "unknown") and art_hash != loaded.model_hash:
        say(
            f"WARNING: the {backend.name} artifacts were exported from model {art_hash}, but the "
            f"checkpoint in use is {loaded.model_hash}; 3D output follows the artifacts"
        )
    return Estimator(backend, detector, temporal, opts.min_conf, PoseSmoother() if opts.smooth else None,
                     tracker=tracker, stateless=stateless, intrinsics=intrinsics)  # fmt: skip


@dataclass
class Runtime:
    """What a run is built from: the source, the Estimator, the sinks and the weights; closable."""

    opts: RunOptions
    source: Source
    estimator: Estimator
    sinks: list[Sink]
    loaded: LoadedModel

    def pipeline(
        self,
        on_frame: Callable[[Item, RunStats], None] | None = None,
        extra_sinks: list[Sink] | None = None,
        draw: bool | None = None,
    ) -> Pipeline:
        """The Pipeline over these parts; frames are rendered when `draw` (default: a video is saved)."""
        o, banner = self.opts, self.loaded.banner
        draw = bool(o.save) if draw is None else draw

        def render(item: Item, ema: dict[str, float], fps: float) -> object:
            """Render one pipeline item to the output frame."""
            return render_frame(item, ema, fps, banner)

        return Pipeline(
            self.source,
            self.estimator,
            sinks=self.sinks + list(extra_sinks or []),
            render=render if draw else None,
            queue_size=o.queue_size,
            on_frame=on_frame,
            max_frames=o.max_frames,
            max_seconds=o.duration,
            max_batch_frames=o.max_batch_frames,
        )

    def close(self) -> None:
        """Close sinks (the pipeline closes them too; this covers failures before it ran), Estimator and source."""
        try:
            _close_sinks(self.sinks)
            self.estimator.close()
        finally:
            self.source.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_runtime(opts: RunOptions, loaded: LoadedModel | None = None, say: Callable[[str], None] = _silent) -> Runtime:
    """Source, sinks, weights (unless `loaded` is given) and Estimator for `opts`; RunError when it cannot start."""
    _check_outputs_distinct(opts)
    given = [f for f, v in (("--checkpoint", opts.checkpoint), ("--random-weights", opts.random_weights),
                            ("--artifacts", opts.artifacts), ("--backend", opts.backend != "auto")) if v]
    if opts.server and given:
        raise RunError(f"--server runs HiPART on hipart-serve, with the server's model: {', '.join(given)} cannot "
                       "apply; leave them out")  # fmt: skip
    if opts.artifacts is not None and opts.backend == "auto":  # named backends say what they miss themselves
        from export.manifest import MANIFEST_NAME

        folder = Path(opts.artifacts).expanduser()
        if not (folder / MANIFEST_NAME).is_file() and not (folder.is_dir() and any(folder.glob("*.onnx"))):
            raise RunError(
                f"--artifacts {opts.artifacts}: no {MANIFEST_NAME} there (export into it first: "
                f"hipart-export --out {opts.artifacts})"
            )
    try:
        source = open_source(opts.source, opts.keypoint_format, loop=opts.loop)
    except SourceError as e:
        raise RunError(str(e)) from None
    if opts.pace:
        if source.live:
            source.close()
            raise RunError("--pace plays a file in real time; this source is already live")
        source = PacedSource(source)
    sinks: list[Sink] = []
    try:
        try:
            if opts.save:
                sinks.append(open_sink(opts.save, fps=source.fps or 30.0, kind="video"))
            for path in opts.poses:
                sinks.append(open_sink(path, kind="poses"))
        except SinkError as e:
            raise RunError(str(e)) from None
        if loaded is None:
            loaded, opts = _weights(opts, say)
        if loaded.banner:
            bar = "!" * len(loaded.banner)
            say(f"{bar}\n{loaded.banner}\n{bar}")
        estimator = build_estimator(opts, loaded, source, say)
    except BaseException:
        _close_sinks(sinks)
        source.close()
        raise
    return Runtime(opts, source, estimator, sinks, loaded)


def _check_outputs_distinct(opts: RunOptions) -> None:
    """RunError when two outputs (or an output and an .npz journal) would be the same file."""
    from edge.sinks import journal_path

    seen: dict[Path, str] = {}
    for o in ([opts.save] if opts.save else []) + list(opts.poses):
        p = Path(o).expanduser().resolve()
        names = [p] + ([journal_path(p)] if p.suffix.lower() == ".npz" else [])
        for n in names:
            if n in seen:
                raise RunError(f"two outputs would write the same file {n} ({seen[n]} and {o}); give distinct names")
            seen[n] = o


def _weights(opts: RunOptions, say: Callable[[str], None]) -> tuple[LoadedModel, RunOptions]:
    """The weights of a run, and `opts` with `auto` resolved when it had to be resolved first.

    Without --checkpoint, a backend that runs exported artifacts (onnxruntime, TensorRT; named or picked by `auto`)
    needs only the bundled model's identity (`bundled_reference`: its hash, read from the JSON sidecar, no torch)
    to check the artifacts against; the PyTorch module is loaded for torch / triton or a --checkpoint only. With
    --server the model is the server's: nothing is loaded, its hash comes from the server's /v1/health.
    """
    if opts.server:
        return LoadedModel(None, "unknown", f"hipart-serve at {opts.server}", True), opts
    if opts.checkpoint is None and opts.random_weights is None and opts.backend in ("auto", *ARTIFACT_BACKENDS):
        ref = bundled_reference()
        if opts.backend == "auto":
            name, why = resolve_auto(opts.artifacts, expected_model(ref))
            say(why)
            opts = replace(opts, backend=name)
        if opts.backend in ARTIFACT_BACKENDS:
            return ref or LoadedModel(None, "unknown", "the exported artifacts (no bundled model to check)", True), opts
    try:
        return load_model(opts.checkpoint, opts.config, random_weights=opts.random_weights), opts
    except Exception as e:  # CheckpointError and friends: one line for the user
        raise RunError(f"cannot load the model: {e}") from None


def _close_sinks(sinks: list[Sink]) -> None:
    for s in sinks:
        try:
            s.close()
        except Exception:
            pass


def run_pipeline(opts: RunOptions, out: TextIO | None = None) -> RunStats:
    """Run `hipart-run` with `opts`; raises RunError when it cannot start, else returns the stats."""
    out = out or sys.stderr
    with build_runtime(opts, say=lambda msg: _say(out, msg)) as rt:
        window = _Window(out) if opts.show else None
        shown = [_ShowSink(window)] if window is not None and window.ok else []
        total = rt.source.total
        if opts.max_frames is not None:
            total = min(total or opts.max_frames, opts.max_frames)
        tty = out.isatty()
        every = 10 if tty else max(30, (total or 300) // 10)

        def progress(item: Item, st: RunStats) -> None:
            """Print a progress line now and then."""
            if opts.quiet or (st.frames_out % every and st.frames_out != total):
                return
            of = f"/{total}" if total else ""
            line = (
                f"frame {st.frames_out}{of}  persons {len(item)}  dropped {st.dropped}  "
                f"hipart {item.timings.get('hipart', 0):6.1f} ms  {pipe._fps():5.1f} FPS"
            )
            print("\r" + line if tty else line, end="" if tty else "\n", file=out, flush=True)

        src, est = rt.source, rt.estimator
        _say(
            out,
            f"source: {src.name} ({'live' if src.live else 'file'}{f', {src.total} frames' if src.total else ''})  "
            f"backend: {est.backend.name} on {est.backend.device}  model: {rt.loaded.source} "
            f"[{rt.loaded.model_hash}]  detector: "
            f"{est.detector.name if est.detector else 'none (pre-extracted keypoints)'}",
        )
        if est.temporal is not None:
            _say(out, f"{est.temporal.label} (model {opts.temporal})")
        pipe = rt.pipeline(progress, shown, draw=bool(opts.save or shown))
        stats = pipe.run()
        stats.banner = rt.loaded.banner
        if not opts.quiet and tty:
            print(file=out)
        return stats


def _temporal_stage(opts: RunOptions, say: Callable[[str], None] = _silent) -> TemporalStage | None:
    """The temporal stage asked for by --temporal (a temporal lifter or the HTP diffusion lifter), or None; RunError
    with the reason when it cannot be built."""
    htp_flags = opts.htp_hypotheses is not None or opts.htp_steps is not None
    if not opts.temporal:
        if htp_flags:
            raise RunError("--htp-hypotheses / --htp-steps set the HTP sampler of --temporal htp|HTP.pt")
        return None
    if opts.smooth:
        raise RunError("--smooth and --temporal both filter the 3D over time; choose one")
    try:
        model, meta = load_video_lifter(opts.temporal)
    except Exception as e:  # CheckpointError and friends: one line for the user
        raise RunError(f"cannot load the temporal model: {e}") from None
    try:
        if meta["kind"] == "htp":
            from edge.htp_stage import build_htp_stage

            stage, note = build_htp_stage(model, meta, opts.temporal_mode, opts.min_conf, opts.htp_hypotheses,
                                          opts.htp_steps, opts.artifacts, opts.threads or 1,
                                          camera_given=bool(opts.intrinsics))  # fmt: skip
            say(note)
            return stage
        if htp_flags:
            raise RunError(f"--htp-hypotheses / --htp-steps apply to an HTP model; {opts.temporal} is an H2OT lifter")
        return TemporalStage(model, opts.temporal_mode, opts.min_conf)
    except ValueError as e:
        raise RunError(str(e)) from None


def summary(stats: RunStats, opts: RunOptions) -> str:
    """The closing report: counts, FPS, per-stage latency, events, outputs."""
    lines = [
        f"frames: {stats.frames_in} read, {stats.frames_out} written, {stats.dropped} dropped"
        f"{' (live source fell behind: oldest frames dropped)' if stats.dropped else ''}, "
        f"{stats.corrupt} corrupt, {stats.failed} failed; persons lifted: {stats.persons}"
        + (
            f", {stats.persons_dropped} not lifted (outside the image or fewer than the minimum confident joints)"
            if stats.persons_dropped
            else ""
        ),
        f"throughput: {stats.fps:.1f} FPS over {stats.wall_s:.1f} s; latency capture->written"
        + (" (live: what a camera user sees): " if stats.live else
           " (file source: frames queue and are never dropped, so this is mostly waiting; --pace plays the file "
           "like a camera): ")  # fmt: skip
        + (
            f"median {stats.latency_ms['median']:.0f} ms, p90 {stats.latency_ms['p90']:.0f} ms"
            if stats.latency_ms
            else "n/a"
        ),
        "stage means (ms): "
        + ", ".join(f"{k} {v:.1f}" for k, v in stats.stage_ms.items() if not k.startswith("hipart.")),
    ]
    sub = {k[7:]: v for k, v in stats.stage_ms.items() if k.startswith("hipart.")}
    if sub:
        lines.append("hipart breakdown (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in sub.items()))
    lines += [f"event: {e}" for e in stats.events]
    outs = ([opts.save] if opts.save else []) + list(opts.poses)
    as_given = {str(Path(o).expanduser()): o for o in outs}  # sinks report expanded paths
    bad = [f"{as_given.get(p, p)} ({why})" for p, why in stats.outputs_failed.items()]
    good = [o for o in outs if str(Path(o).expanduser()) not in stats.outputs_failed]
    if good:
        lines.append("wrote: " + ", ".join(good))
    if bad:
        lines.append("INCOMPLETE (complete up to the last good frame): " + "; ".join(bad))
    if not outs:
        lines.append("no outputs requested: add --save out.mp4 and/or --poses out.jsonl to keep the results")
    if stats.interrupted:
        name = signal.Signals(stats.signal).name if stats.signal else "SIGINT"
        lines.append(f"interrupted ({name}): outputs flushed and closed")
    if stats.error:
        lines.append(f"stopped: {stats.error}")
    if stats.banner:
        lines.append(f"NOTE: {stats.banner}")
    return "\n".join(lines)
