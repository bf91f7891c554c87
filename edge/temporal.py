"""The streaming temporal stage of hipart-run: a ring buffer of the last T hierarchical frames -> video lifter.

Per person (per track id when the frames are tracked, `edge.tracking`; else by detector index, like the smoother)
the stage keeps the last T frames of
[x_s, dense, fine] (normalised, [161, 2]; x_s alone for a 17-point model) and their per-frame tokens
(`TemporalLifter.frame_tokens`, computed once per frame), and replaces the per-frame 3D pose by the temporal one:

- causal: the newest frame is the output (seq2frame at T - 1): no added delay;
- centred: the output is the window's centre (T // 2): the 3D pose shown lags T - 1 - T // 2 frames (HUD says so);
- seq2seq (files only): frames are held until T are collected (or the stream breaks), then lifted in one call.

Warm-up: at the start, and after every discontinuity (time going backwards or jumping by more than `max_gap_s`;
untracked: also a person count change or a frame without a result), the buffer is refilled with copies of the
current frame. Tracked: one buffer per track (all persons of a frame lifted in one model call), started at the
track's first frame, dropped when the track ends (or is unseen for `max_gap_s`); a track's output equals running
the stage on that person alone. A frame flagged `restart` (stateless sources: independent images) drops every
buffer first. seq2seq holds chunks over one set of persons: a chunk breaks when the set of track ids changes
(untracked: the person count), so several tracked persons work as long as they stay together.

The model is reached through three methods (`frame_state`, `lift_window`, `frame_extra`): edge/htp_stage.py's
`HTPStage` overrides them to stream the HTP diffusion lifter through the same ring buffer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import hipart
from edge.estimator import FrameResult, lift_input
from edge.occlusion import DEFAULT_MIN_CONF
from edge.tracking import unique_ids
from hipart import skeleton

if TYPE_CHECKING:
    from hipart.models.temporal import TemporalLifter

# torch is imported on use (the stage is built only with --temporal), so `edge.run` / `edge.pipeline` stay torch-free.
MODES = ("causal", "centred", "seq2seq")
VIDEO_KINDS = ("temporal", "htp")  # checkpoint kinds `--temporal` takes (htp: edge/htp_stage.py)
BUNDLED_HTP = Path(hipart.__file__).parent / "assets" / "htp_default.pt"  # `--temporal htp`


def bundled_temporal_checkpoint() -> Path | None:
    """hipart.checkpoint.bundled_temporal_checkpoint, imported on use (it imports torch)."""
    from hipart.checkpoint import bundled_temporal_checkpoint as bundled

    return bundled()


def load_video_lifter(path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    """(model, checkpoint metadata) of `--temporal`: "default" (the bundled temporal lifter), "htp" (the bundled HTP
    diffusion lifter, hipart/assets/htp_default.pt) or a temporal / HTP checkpoint; CheckpointError otherwise."""
    from hipart.checkpoint import CheckpointError, load_checkpoint

    if str(path) == "default":
        path = bundled_temporal_checkpoint()
        if path is None:
            raise CheckpointError("this build bundles no temporal model (hipart/assets/temporal_default.pt)")
    elif str(path) == "htp":
        if not BUNDLED_HTP.is_file():
            raise CheckpointError("this build bundles no HTP model (hipart/assets/htp_default.pt): give --temporal "
                                  "PATH/htp.pt")  # fmt: skip
        path = BUNDLED_HTP
    model, meta = load_checkpoint(path, expect_kind=None)
    if meta["kind"] not in VIDEO_KINDS:
        raise CheckpointError(f"{path} holds a {meta['kind']!r} checkpoint, expected 'temporal' or 'htp'")
    return model, meta


def load_temporal(path: str | os.PathLike) -> TemporalLifter:
    """A trained temporal lifter from its checkpoint, or the bundled one for "default" (CheckpointError otherwise)."""
    from hipart.checkpoint import CheckpointError

    model, meta = load_video_lifter(path)
    if meta["kind"] != "temporal":
        raise CheckpointError(f"{path} holds a {meta['kind']!r} checkpoint, expected 'temporal'")
    return model


class TemporalStage:
    """Temporal lifting of the pipeline's items, in frame order; see the module docstring for the modes."""

    def __init__(
        self, model: TemporalLifter, mode: str = "causal", min_conf: float = DEFAULT_MIN_CONF, max_gap_s: float = 0.5
    ):
        if mode not in MODES:
            raise ValueError(f"temporal mode must be one of {MODES}, got {mode!r}")
        self.model, self.mode, self.min_conf, self.max_gap_s = model.eval(), mode, min_conf, max_gap_s
        self.frames = model.config.frames
        self.out_index = self.frames - 1 if mode == "causal" else self.frames // 2
        self.lag_frames = self.frames - 1 - self.out_index if mode != "seq2seq" else 0
        self.label = {
            "causal": f"temporal causal T={self.frames}: 3D of this frame",
            "centred": f"temporal centred T={self.frames}: 3D lags {self.lag_frames} frames",
            "seq2seq": f"temporal seq2seq T={self.frames}",
        }[mode]
        self.resets = 0
        self._held: list = []  # seq2seq: (item, x, order) waiting for their chunk
        self.reset()

    def reset(self) -> None:
        """Forget the buffered frames of every track (the next frame starts a new warm-up)."""
        self._tracks: dict[int, tuple[np.ndarray, Any, float]] = {}  # id -> x [T, N, 2], frame_state [T, ...], time
        self._count: int | None = None  # untracked: the person count of the last frame
        self._key: Any = None  # seq2seq: the persons of the held chunk (track ids, or the count)
        self._t: float | None = None  # seq2seq: time of the last held frame

    def drop_tracks(self, track_ids: Iterable[int]) -> None:
        """Forget the buffers of these (ended) tracks."""
        for i in track_ids:
            self._tracks.pop(int(i), None)

    # -- one frame -------------------------------------------------------------------------------------
    def hierarchical_input(self, x_s: np.ndarray, dense: np.ndarray, fine: np.ndarray) -> np.ndarray:
        """Per-frame model input [P, N, 2] from the Estimator's x_s (normalised, masked) + dense + fine (normalised)."""
        if self.model.config.num_points == skeleton.NUM_JOINTS:
            return x_s.astype(np.float32)
        return np.concatenate([x_s, dense, fine], 1).astype(np.float32)

    def frame_input(self, kpts_px: np.ndarray, conf: np.ndarray, dense: np.ndarray, fine: np.ndarray,
                    width: float, height: float) -> np.ndarray:  # fmt: skip
        """`hierarchical_input` for pixel keypoints: x_s made by the Estimator's input policy (`lift_input`)."""
        return self.hierarchical_input(lift_input(kpts_px, conf, width, height, self.min_conf), dense, fine)

    def _in_time(self, last: float | None, t: float) -> bool:
        return last is not None and last < t <= last + self.max_gap_s

    # -- the model seam: what is buffered per frame beside x, and the window call (edge/htp_stage.py overrides) ----
    def frame_state(self, x: Any, extra: np.ndarray | None) -> Any:
        """Per-frame state [P, 1, ...] (torch) buffered beside x [P, 1, N, 2]: the lifter's frame tokens."""
        return self.model.frame_tokens(x)

    def lift_window(self, x: Any, state: Any) -> np.ndarray:
        """Windows x [P, T, N, 2] + their buffered states [P, T, ...] (torch) -> the output frame's 3D [P, 17, 3]."""
        return self.model.forward_frame(x, self.out_index, tokens=state).numpy()

    def frame_extra(self, item: FrameResult) -> np.ndarray | None:
        """Per-person data of a pipeline item that `frame_state` needs beside x (none for this lifter)."""
        return None

    def step(self, x: np.ndarray, t: float, track_ids: Sequence[int] | np.ndarray | None = None,
             extra: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """Push frame x [P, N, 2] taken at time t (s) for persons track_ids [P] (None: by index), with `frame_extra`'s
        per-person data; return the temporal 3D poses [P, 17, 3] (causal/centred)."""
        import torch

        n = x.shape[0]
        restarted = False
        if track_ids is None:  # untracked: persons by index, every buffer restarts when the count changes
            if n != self._count and self._tracks:
                self._tracks.clear()
                restarted = True
            self._count = n
            ids = list(range(n))
        else:
            ids = unique_ids(track_ids, n)
        with torch.no_grad():
            xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))[:, None]  # [P, 1, N, 2]
            tok = self.frame_state(xt, extra)  # [P, 1, ...]
            xs, toks = [], []
            for k, tid in enumerate(ids):
                old = self._tracks.get(tid)
                if old is None or not self._in_time(old[2], t):
                    restarted |= old is not None
                    bx = np.repeat(xt[k].numpy(), self.frames, axis=0)
                    btok = tok[k].repeat(self.frames, *(1,) * (tok.dim() - 2))
                else:
                    bx = np.concatenate([old[0][1:], xt[k].numpy()], 0)
                    btok = torch.cat([old[1][1:], tok[k]], 0)
                self._tracks[tid] = (bx, btok, t)
                xs.append(bx)
                toks.append(btok)
            self.resets += restarted
            if track_ids is not None:  # bound the state when an end was missed (frames dropped by a live queue)
                self.drop_tracks([i for i, (_, _, s) in self._tracks.items() if not s <= t <= s + self.max_gap_s])
            if n == 0:
                return np.zeros((0, skeleton.NUM_JOINTS, 3), np.float32)
            out = self.lift_window(torch.from_numpy(np.stack(xs)), torch.stack(toks))
        return np.asarray(out, np.float32)

    def lift_chunk(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        """seq2seq: frames [P, N, 2] (1..T of them, one clip) -> their 3D poses, the window padded by the last frame."""
        import torch

        n = len(xs)
        seq = np.stack(xs + [xs[-1]] * (self.frames - n), 1)  # [P, T, N, 2]
        with torch.no_grad():
            out = self.model.forward_sequence(torch.from_numpy(seq)).numpy().astype(np.float32)
        return [out[:, i] for i in range(n)]

    # -- pipeline hook ------------------------------------------------------------------------------------
    def _x_of(self, item: FrameResult) -> np.ndarray | None:
        res = item.result
        if res is None or item.status != "ok" or len(res) == 0:
            return None
        if len(item.x_s) == len(res):  # the Estimator's x_s: what the HiPART backend saw
            return self.hierarchical_input(item.x_s, res.dense, res.fine)
        return self.frame_input(item.kpts, item.conf, res.dense, res.fine, item.width, item.height)  # built by hand

    @staticmethod
    def _ids_of(item: FrameResult) -> np.ndarray | None:
        ids = getattr(item, "track_ids", None)
        if not getattr(item, "tracked", False) or ids is None or item.result is None or len(ids) != len(item.result):
            return None
        return np.asarray(ids, np.int64)

    def process(self, items: Iterable[FrameResult]) -> list[FrameResult]:
        """FrameResults (pipeline items) in frame order -> those whose 3D is final (all, except seq2seq's held)."""
        ready = []
        for item in items:
            t0 = time.perf_counter()
            x = self._x_of(item)
            ids = self._ids_of(item) if x is not None else None
            if self.mode == "seq2seq":
                ready += self._seq2seq(item, x, ids)
            else:
                if getattr(item, "restart", False):
                    self.reset()
                else:
                    self.drop_tracks(getattr(item, "ended_tracks", ()))
                if x is None:
                    if not getattr(item, "tracked", False) or item.status != "ok":  # tracked: nobody seen, go on
                        self.reset()
                    ready.append(item)
                else:
                    item.result.pose3d = self.step(x, float(item.timestamp), ids, self.frame_extra(item))
                    item.temporal = self.label
                    ready.append(item)
            item.timings["temporal"] = (time.perf_counter() - t0) * 1e3
        return ready

    def _seq2seq(self, item: FrameResult, x: np.ndarray | None, ids: np.ndarray | None) -> list[FrameResult]:
        out = []
        t = float(item.timestamp)
        order = np.argsort(ids, kind="stable") if ids is not None else None
        key = None if x is None else (tuple(ids[order].tolist()) if ids is not None else x.shape[0])
        restart = getattr(item, "restart", False)
        if self._held and (x is None or restart or key != self._key or not self._in_time(self._t, t)):
            out += self.flush()
        if x is None:
            return out + [item]
        self._held.append((item, x if order is None else x[order], order))
        self._key, self._t = key, t
        if len(self._held) == self.frames:
            out += self.flush()
        return out

    def flush(self) -> list[FrameResult]:
        """seq2seq: lift and release the held items (end of stream or a break in it); others: nothing held."""
        held, self._held = self._held, []
        if held:
            poses = self.lift_chunk([x for _, x, _ in held])
            for (item, _, order), pose in zip(held, poses, strict=True):
                if order is not None:  # back from track-id order to the frame's person order
                    pose = pose[np.argsort(order)]
                item.result.pose3d = pose
                item.temporal = self.label
        self.reset()
        return [item for item, _, _ in held]

    def drop(self) -> list[FrameResult]:
        """Release the held items unchanged (their per-frame 3D) and reset: used after a failure."""
        held, self._held = self._held, []
        self.reset()
        return [item for item, _, _ in held]
