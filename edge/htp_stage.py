"""The HTP diffusion lifter as hipart-run's temporal stage (`--temporal htp|HTP.pt`): TemporalStage's ring buffer,
`HTPDenoiser.lift` on each window, on torch or onnxruntime.

Per person (track) the stage buffers, beside the last T frames of x, each frame's joint visibility (confidence >=
min_conf: JPMA gives hidden joints the hypothesis mean) and camera in x's normalised units (`--intrinsics`, else
focal = image width with the principal point at the centre, which is (2, 2, 0, 0) whatever the image size; the label
says which). Warm-up, per-track buffers, resets and their dropping are TemporalStage's (causal or centred; seq2seq is
not offered).

Noise: every window is lifted from the same initial noise [H, T, 17, 3], drawn once from `seed`, so the output is a
fixed function of the window: a stream is reproducible, a person's output does not depend on who else shares the
call or how long the stream has run, and no frame-to-frame jitter comes from re-drawn noise.

Engines share one call, (x, noise [P,H,T,17,3], intrinsics [P,4], visible [P,T,17]) -> [P,T,17,3] (numpy):
`TorchLift` (HTPDenoiser.lift) and `OrtLift` (htp_lift.onnx from `hipart-temporal export`). `build_htp_stage` takes
onnxruntime when the artifacts folder's manifest lists an htp_lift export of this checkpoint (model hash) made for
the same H and K, else torch, and says why.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.estimator import FrameResult
from edge.occlusion import DEFAULT_MIN_CONF, visible_mask
from edge.temporal import TemporalStage

MODES = ("causal", "centred")
ENGINES = ("auto", "torch", "onnxruntime")


class LiftEngine(Protocol):
    """One HTP window call: (x, noise, intrinsics, visible) -> the aggregated poses of every frame [P, T, 17, 3]."""

    name: str

    def __call__(self, x: np.ndarray, noise: np.ndarray, intrinsics: np.ndarray, visible: np.ndarray) -> np.ndarray:
        ...


class TorchLift:
    """`HTPDenoiser.lift` with K steps (export.htp_onnx.HTPLiftGraph: the function the ONNX holds), numpy in and out."""

    name = "torch"

    def __init__(self, model: Any, steps: int):
        from export.htp_onnx import HTPLiftGraph

        self.graph = HTPLiftGraph(model, steps)

    def __call__(self, x: np.ndarray, noise: np.ndarray, intrinsics: np.ndarray, visible: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.graph(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (x, noise, intrinsics, visible))
                              ).numpy()  # fmt: skip


class OrtLift:
    """htp_lift.onnx in onnxruntime (CPU, `threads` intra-op threads); `sampling` = the (H, K) it was exported for."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, threads: int | None = 1):
        import onnxruntime as ort

        from export.htp_onnx import artifact_sampling, read_extra

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        self.path = Path(path)
        self.sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.sampling = artifact_sampling(read_extra(self.sess))

    def __call__(self, x: np.ndarray, noise: np.ndarray, intrinsics: np.ndarray, visible: np.ndarray) -> np.ndarray:
        feed = {"x": x, "noise": noise, "intrinsics": intrinsics, "visible": visible}
        return self.sess.run(None, {k: np.ascontiguousarray(v) for k, v in feed.items()})[0]


class HTPStage(TemporalStage):
    """TemporalStage over the HTP diffusion lifter (causal or centred); see the module docstring."""

    def __init__(self, model: Any, mode: str = "causal", min_conf: float = DEFAULT_MIN_CONF, max_gap_s: float = 0.5,
                 hypotheses: int | None = None, steps: int | None = None, seed: int = 0,
                 engine: LiftEngine | None = None, camera_given: bool = False):  # fmt: skip
        from export.htp_onnx import DEFAULT_HYPOTHESES, DEFAULT_STEPS

        if mode not in MODES:
            raise ValueError(f"the HTP stage streams {' or '.join(MODES)} (no seq2seq), got {mode!r}")
        super().__init__(model, mode, min_conf, max_gap_s)
        self.hypotheses, self.steps = hypotheses or DEFAULT_HYPOTHESES, steps or DEFAULT_STEPS
        if self.hypotheses < 1 or self.steps < 1:
            raise ValueError(f"--htp-hypotheses and --htp-steps must be >= 1, got {self.hypotheses}, {self.steps}")
        self.engine = engine or TorchLift(model, self.steps)
        sampling = getattr(self.engine, "sampling", None)
        if sampling is not None and sampling != (self.hypotheses, self.steps):
            raise ValueError(f"the {self.engine.name} engine was exported for H, K = {sampling}, not "
                             f"{(self.hypotheses, self.steps)}")  # fmt: skip
        self.noise = initial_noise(model.config, self.hypotheses, seed)
        camera = "--intrinsics" if camera_given else "the default camera (focal = image width, centred; --intrinsics)"
        self.label += f"; HTP H={self.hypotheses} K={self.steps} on {self.engine.name}, JPMA with {camera}"

    # -- TemporalStage's model seam ------------------------------------------------------------------------------
    def frame_state(self, x: Any, extra: np.ndarray | None) -> Any:
        """Per-frame [P, 1, 17 + 4] (torch): joint visibility (1/0), then the camera (`frame_extra`; None: all
        visible, the default camera)."""
        import torch

        if extra is None:
            extra = default_extra(x.shape[0], self.model.config.num_joints)
        return torch.from_numpy(np.ascontiguousarray(extra, np.float32))[:, None]

    def lift_window(self, x: Any, state: Any) -> np.ndarray:
        """The windows' output frame of the JPMA pose [P, 17, 3], with each window's newest camera."""
        j = self.model.config.num_joints
        s = state.numpy()
        noise = np.repeat(self.noise, len(s), 0)
        pose = self.engine(x.numpy(), noise, s[:, -1, j:], s[..., :j] > 0.5)
        return pose[:, self.out_index]

    def frame_extra(self, item: FrameResult) -> np.ndarray:
        """[P, 17 + 4]: each person's joint visibility (the Estimator's confidence rule) and the frame's camera."""
        from export.htp_onnx import DEFAULT_INTRINSICS

        vis = visible_mask(item.kpts, item.conf, self.min_conf).astype(np.float32)
        intr = np.asarray(DEFAULT_INTRINSICS, np.float32)
        if item.intrinsics is not None:
            import torch

            from hipart.models.diffusion import normalised_intrinsics

            k = item.intrinsics
            intr = normalised_intrinsics(torch.tensor([k.fx, k.fy, k.cx, k.cy]), item.width, item.height).numpy()
        return np.concatenate([vis, np.broadcast_to(intr, (len(vis), 4))], 1)


def initial_noise(cfg: Any, hypotheses: int, seed: int) -> np.ndarray:
    """The stage's one noise draw [1, H, T, 17, 3] (float32) from `seed`."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn((1, hypotheses, cfg.frames, cfg.num_joints, 3), generator=g).numpy()


def default_extra(persons: int, joints: int) -> np.ndarray:
    """`frame_extra` without an item: every joint visible, the default camera."""
    from export.htp_onnx import DEFAULT_INTRINSICS

    return np.concatenate([np.ones((persons, joints), np.float32),
                           np.tile(np.asarray(DEFAULT_INTRINSICS, np.float32), (persons, 1))], 1)  # fmt: skip


def find_ort_engine(model_hash: str, hypotheses: int, steps: int, artifacts: str | os.PathLike | None = None,
                    threads: int | None = 1) -> tuple[OrtLift | None, str]:  # fmt: skip
    """(the onnxruntime engine, why) when `artifacts` (default $HIPART_ARTIFACTS or ./exported) lists an htp_lift
    export of this model made for (H, K); else (None, why not)."""
    from export.htp_onnx import ARTIFACT
    from export.manifest import ExpectedModel, ManifestError, ManifestMissing, ModelMismatch, default_dir, resolve

    folder = Path(artifacts) if artifacts else default_dir()
    if importlib.util.find_spec("onnxruntime") is None:
        return None, "onnxruntime is not installed"
    try:
        path, _ = resolve(folder, ARTIFACT, "fp32", "onnx", ExpectedModel(model_hash, "the HTP checkpoint"))
    except ManifestError as e:
        what = {ManifestMissing: f"{folder} has no manifest.json",
                ModelMismatch: f"{folder}'s {ARTIFACT}.onnx was exported from another model"}.get(
            type(e), " ".join(str(e).split(" (it lists")[0].split(";")[0].split()))  # fmt: skip
        return None, (f"{what}; `hipart-temporal export --checkpoint HTP.pt --hypotheses {hypotheses} --steps {steps} "
                      f"--artifacts {folder}` makes one")  # fmt: skip
    engine = OrtLift(path, threads)
    if engine.sampling != (hypotheses, steps):
        return None, (f"{path} was exported for H, K = {engine.sampling}, not ({hypotheses}, {steps}): re-export with "
                      f"`hipart-temporal export --checkpoint HTP.pt --hypotheses {hypotheses} --steps {steps}`")
    return engine, f"{path}"


def build_htp_stage(model: Any, meta: dict[str, Any], mode: str = "causal", min_conf: float = DEFAULT_MIN_CONF,
                    hypotheses: int | None = None, steps: int | None = None, artifacts: str | os.PathLike | None = None,
                    threads: int | None = 1, engine: str = "auto", camera_given: bool = False, seed: int = 0
                    ) -> tuple[HTPStage, str]:  # fmt: skip
    """The HTP stage of `hipart-run --temporal` and its one-line engine note. H, K default to the checkpoint's
    deployed ones (`extra.deploy`, else 3 and 2); engine auto: onnxruntime when `find_ort_engine` finds the export,
    else torch."""
    from export.htp_onnx import deployed_sampling
    from hipart.checkpoint import model_hash

    if engine not in ENGINES:
        raise ValueError(f"HTP engine must be one of {ENGINES}, got {engine!r}")
    dh, dk = deployed_sampling(meta)
    h, k = hypotheses or dh, steps or dk
    ort, note = None, "HTP engine: torch (asked for)"
    if engine != "torch":
        ort, why = find_ort_engine(model_hash(model), h, k, artifacts, threads)
        if ort is None and engine == "onnxruntime":
            raise ValueError(f"HTP on onnxruntime: {why}")
        note = f"HTP engine: onnxruntime ({why})" if ort else f"HTP engine: torch (no onnxruntime export: {why})"
    stage = HTPStage(model, mode, min_conf, hypotheses=h, steps=k, seed=seed, engine=ort, camera_given=camera_given)
    return stage, note
