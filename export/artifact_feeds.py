"""Inputs of each exported artifact derived from 2D poses x_s, by running the FP32 PyTorch model."""

from __future__ import annotations

import numpy as np
import torch

from calib.quantize import Feeds
from export.hipart_graphs import DecodeStepGraph, empty_cache
from hipart.models.hipart import HiPART


@torch.no_grad()
def lift_points(model: HiPART, x_s: np.ndarray, batch: int = 256) -> np.ndarray:
    """The lifter's input for each pose, [N, 17 | 65 | 161, 2] as the model's lifter_input says (`HiPART.lift`)."""
    if model.config.lifter_input == "sparse":
        return np.ascontiguousarray(x_s, np.float32)  # no densify needed: the lifter sees the 17 joints only
    out = []
    for i in range(0, len(x_s), batch):
        x = torch.from_numpy(x_s[i : i + batch])
        d = model.densify(x)
        pts = [x, d["dense"]] if model.config.lifter_input == "dense" else [x, d["dense"], d["fine"]]
        out.append(torch.cat(pts, 1).numpy())
    return np.concatenate(out)


@torch.no_grad()
def detokenize_feeds(model: HiPART, x_s: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
    """The token ids the model decodes for each pose (canonical order), as the step loop hands them to detokenize."""
    qs, qd = [], []
    for i in range(0, len(x_s), batch):
        d = model.densify(torch.from_numpy(np.ascontiguousarray(x_s[i : i + batch], np.float32)))
        qs.append(d["q_s"].numpy())
        qd.append(d["q_d"].numpy())
    return {"q_s": np.concatenate(qs), "q_d": np.concatenate(qd)}


@torch.no_grad()
def decode_step_feeds(model: HiPART, x_s: np.ndarray) -> list[dict[str, np.ndarray]]:
    """One feed dict per decode step (all poses as one batch), as a looping runtime would feed them."""
    step_graph = DecodeStepGraph(model).eval()
    gen = model.generator
    x = torch.from_numpy(x_s)
    k, v = empty_cache(gen, len(x_s), x)
    q_s = torch.zeros(len(x_s), dtype=torch.long)
    q_d = torch.zeros(len(x_s), gen.r, dtype=torch.long)
    feeds = []
    for i in range(gen.num_parts):
        step = torch.tensor([i])
        feeds.append({"x_s": x_s, "step": step.numpy(), "prev_q_s": q_s.numpy(), "prev_q_d": q_d.numpy(),
                      "past_k": k.numpy(), "past_v": v.numpy()})  # fmt: skip
        q_s, q_d, _, _, k, v = step_graph(x, step, q_s, q_d, k, v)
    return feeds


def feeds_for(model: HiPART, artifact: str, x_s: np.ndarray) -> Feeds:
    """The artifact's input feeds for poses x_s [N, 17, 2]."""
    if artifact in ("densify", "hipart"):
        return {"x_s": x_s}
    if artifact == "lift":
        return {"points": lift_points(model, x_s)}
    if artifact == "decode_step":
        return decode_step_feeds(model, x_s)
    if artifact == "detokenize":
        return detokenize_feeds(model, x_s)
    raise ValueError(f"unknown artifact {artifact!r}")
