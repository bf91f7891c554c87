"""Reference row for docs/RESULTS.md: MPJPE / PA-MPJPE of always predicting the mean training pose.

Usage: python benchmarks/mean_pose_baseline.py --data data/cmu_lab [--subsample 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hipart.data.dataset import load_manifest, open_arrays
from hipart.metrics import mpjpe, p_mpjpe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--subsample", type=int, default=4)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    man = load_manifest(a.data)
    arr = open_arrays(a.data, ["p3d_s", "split"])
    split = np.asarray(arr["split"])
    root_rel = lambda idx: np.asarray(arr["p3d_s"][idx]) - np.asarray(arr["p3d_s"][idx])[:, :1]  # noqa: E731
    train = np.nonzero(split == man["splits"].index("train"))[0]
    test = np.nonzero(split == man["splits"].index(a.split))[0][:: a.subsample]
    mean_pose = root_rel(train).mean(0)
    gt = root_rel(test)
    pred = np.broadcast_to(mean_pose, gt.shape)
    res = {"split": a.split, "subsample": a.subsample, "n": len(test), "mpjpe_mm": float(mpjpe(pred, gt).mean() * 1000),
           "pa_mpjpe_mm": float(p_mpjpe(pred, gt).mean() * 1000)}
    print(json.dumps(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
