"""Score a multi-person hipart-run against a rendered clip's per-person ground truth.

  hipart-data video --bvh-dir ../shared/data/cmu_bvh --clip 08_01,05_01,08_02 --seconds 5 --out runs/multi/m3
  hipart-run --source runs/multi/m3.mp4 --detector blazepose-multi --poses runs/multi/m3.jsonl
  python benchmarks/multi_person.py --gt runs/multi/m3_gt.npz --poses runs/multi/m3.jsonl --out result.json

Per frame, detected persons are matched to ground-truth persons by the Hungarian method on the mean 2D distance
of their 17 joints (a match needs < 15 % of the person's height). Reported: recall over the ground-truth persons
at least `--min-height` px tall, precision over all detections, 2D joint error of matches, per-person MPJPE and
PA-MPJPE of the 3D (root-relative), overall and per ground-truth person, and, where the records carry `track_id`,
identity switches (a ground-truth person whose matched track id changes) per 1,000 matched person-frames. Speed
is hipart-run's own summary line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from hipart.metrics import mpjpe, p_mpjpe


def load_records(path: Path) -> list[dict]:
    """hipart-run JSONL records, in frame order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def score(gt: dict, records: list[dict], min_height: float = 120.0, match_frac: float = 0.15) -> dict:
    """Detection, 2D, 3D and identity scores of `records` against the ground truth arrays `gt`."""
    x_gt, p_gt = gt["x_s_px"], gt["p3d_s"]  # [F, P, 17, 2], [F, P, 17, 3]
    n_frames = min(len(records), len(x_gt))
    heights = x_gt[..., 1].max(-1) - x_gt[..., 1].min(-1)  # [F, P]
    tp = fp = fn = 0
    err2d, pred3d, true3d, who = [], [], [], []
    last_track: dict[int, int] = {}
    switches = matched = 0
    for f in range(n_frames):
        dets = records[f]["persons"]
        k = np.array([d["keypoints_2d"] for d in dets], np.float64).reshape(-1, 17, 2)
        cost = np.linalg.norm(k[:, None] - x_gt[f][None], axis=-1).mean(-1) if len(dets) else np.zeros((0, 0))
        rows, cols = linear_sum_assignment(cost) if cost.size else (np.array([], int), np.array([], int))
        ok = [(r, c) for r, c in zip(rows, cols, strict=True) if cost[r, c] < match_frac * max(heights[f, c], 1.0)]
        big = heights[f] >= min_height
        hit = {c for _, c in ok}
        tp += sum(1 for c in hit if big[c])
        fn += sum(1 for c in np.nonzero(big)[0] if c not in hit)
        fp += len(dets) - len(ok)
        for r, c in ok:
            err2d.append(cost[r, c])
            pred3d.append(np.asarray(dets[r]["pose_3d"], np.float64))
            true3d.append(p_gt[f, c] - p_gt[f, c, :1])
            who.append(c)
            tid = dets[r].get("track_id")
            if tid is not None and tid >= 0:
                matched += 1
                if c in last_track and last_track[c] != tid:
                    switches += 1
                last_track[c] = tid
    pred, true, who_a = np.stack(pred3d), np.stack(true3d), np.asarray(who)
    per_person = {
        int(c): {"matched_frames": int((who_a == c).sum()),
                 "mpjpe_mm": float(mpjpe(pred[who_a == c], true[who_a == c]).mean() * 1000)}
        for c in np.unique(who_a)
    }  # fmt: skip
    return {
        "frames": n_frames,
        "persons_in_gt": int(x_gt.shape[1]),
        "min_height_px": min_height,
        "recall": tp / max(tp + fn, 1),
        "precision": (len(err2d)) / max(len(err2d) + fp, 1),
        "true_pos": tp,
        "false_neg": fn,
        "false_pos": fp,
        "joint_err_px_mean": float(np.mean(err2d)),
        "mpjpe_mm": float(mpjpe(pred, true).mean() * 1000),
        "pa_mpjpe_mm": float(p_mpjpe(pred, true).mean() * 1000),
        "per_person": per_person,
        "id_switches": switches,
        "id_switches_per_1000": switches / max(matched, 1) * 1000 if matched else None,
        "tracked_person_frames": matched,
        "timed_frames": len(records),
    }


def main(argv: list[str] | None = None) -> dict:
    """CLI: print and optionally write the scores."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gt", type=Path, required=True, help="<clip>_gt.npz from hipart-data video --clip A,B[,C...]")
    p.add_argument("--poses", type=Path, required=True, help="hipart-run --poses JSONL of that clip")
    p.add_argument("--min-height", type=float, default=120.0, help="persons counted for recall (px, default 120)")
    p.add_argument("--person", type=int, help="score against this ground-truth person only (a --solo render)")
    p.add_argument("--out", type=Path, help="write the scores as JSON here")
    a = p.parse_args(argv)
    with np.load(a.gt, allow_pickle=False) as z:
        gt = {k: z[k] for k in z.files}
    if a.person is not None:
        for k in ("x_s_px", "p3d_s"):
            gt[k] = gt[k][:, a.person : a.person + 1]
    res = {"gt": str(a.gt), "poses": str(a.poses), **score(gt, load_records(a.poses), a.min_height)}
    print(json.dumps(res, indent=1))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
