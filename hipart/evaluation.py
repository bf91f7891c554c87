"""Evaluation of a HiPART model on a dataset split: 3D errors, 2D densification errors, token accuracy, speed."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from hipart.metrics import mean_error_2d, mpjpe, p_mpjpe
from hipart.models.hipart import HiPART
from hipart.models.tokenizer import MSSTokenizer
from hipart.training.loop import collate


@torch.no_grad()
def evaluate(
    model: HiPART,
    dataset: Dataset,
    image_width: float,
    batch_size: int = 256,
    action_names: list[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Metrics over every sample: MPJPE / PA-MPJPE (mm), dense/fine 2D error (px), token accuracy, poses/s."""
    model.eval()
    px = image_width / 2  # normalised units -> pixels
    e1, e2, ed, ef, acc_s, acc_d, actions = [], [], [], [], [], [], []
    t_model = 0.0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    for b in tqdm(loader, desc="evaluate", disable=not progress, dynamic_ncols=True):
        t0 = time.perf_counter()
        out = model(b["x_s"])
        t_model += time.perf_counter() - t0
        pred, gt = out["pose3d"].numpy(), b["pose3d"].numpy()
        e1.append(mpjpe(pred, gt) * 1000)
        e2.append(p_mpjpe(pred, gt) * 1000)
        ed.append(mean_error_2d(out["dense"], b["x_d"]) * px)
        ef.append(mean_error_2d(out["fine"], b["x_f"]) * px)
        q_s, q_d = model.tokenizer.encode(b["x_f"])  # the tokens the ground-truth fine pose maps to
        acc_s.append((out["q_s"] == q_s).float().mean(1).numpy())
        acc_d.append((out["q_d"] == q_d).float().mean(1).numpy())
        actions.append(b["action"].numpy() if "action" in b else np.zeros(len(pred), np.int64))
    e1, e2, ed, ef = map(np.concatenate, (e1, e2, ed, ef))
    actions = np.concatenate(actions)
    per_action: dict[str, dict[str, float]] = defaultdict(dict)
    for a in np.unique(actions):
        m = actions == a
        name = action_names[a] if action_names and a < len(action_names) else str(int(a))
        per_action[name] = {"n": int(m.sum()), "mpjpe_mm": float(e1[m].mean()), "pa_mpjpe_mm": float(e2[m].mean())}
    n = len(e1)
    return {
        "n": n,
        "mpjpe_mm": float(e1.mean()),
        "pa_mpjpe_mm": float(e2.mean()),
        "dense_2d_px": float(ed.mean()),
        "fine_2d_px": float(ef.mean()),
        "token_acc_sparse": float(np.concatenate(acc_s).mean()),
        "token_acc_dense": float(np.concatenate(acc_d).mean()),
        "poses_per_s": n / t_model if t_model else float("nan"),
        "per_action": dict(per_action),
    }


@torch.no_grad()
def evaluate_tokenizer(
    tok: MSSTokenizer, dataset: Dataset, image_width: float, batch_size: int = 512, progress: bool = True
) -> dict[str, Any]:
    """Tokenizer-only metrics (paper Table 3 view): dense/fine reconstruction error (px) of encode -> decode on
    ground-truth fine poses, and code perplexity / distinct codes used over the whole split."""
    tok.eval()
    px = image_width / 2
    ed, ef, qs, qd = [], [], [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    for b in tqdm(loader, desc="tokenizer", disable=not progress, dynamic_ncols=True):
        q_s, q_d = tok.encode(b["x_f"])
        x_d, x_f = tok.decode(q_s, q_d)
        ed.append(mean_error_2d(x_d, b["x_d"]) * px)
        ef.append(mean_error_2d(x_f, b["x_f"]) * px)
        qs.append(q_s)
        qd.append(q_d)
    qs, qd = torch.cat(qs), torch.cat(qd)
    return {
        "n": int(len(qs)),
        "recon_dense_px": float(np.concatenate(ed).mean()),
        "recon_fine_px": float(np.concatenate(ef).mean()),
        "perplexity_sparse": float(tok.sparse_quantizer.perplexity(qs)),
        "perplexity_dense": float(tok.dense_quantizer.perplexity(qd)),
        "codes_used_sparse": int(qs.unique().numel()),
        "codes_used_dense": int(qd.unique().numel()),
    }


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A Markdown table of `columns` over `rows` (floats to 1 decimal, token accuracies to 3)."""

    def fmt(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 1 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
