"""Cheap, deterministic companion of sanity_hierarchy.py: closed-form ridge regression from 2D (root-centred,
scale-normalised) to root-relative 3D, sparse-only vs sparse+dense+fine, on the test subjects.

  python benchmarks/sanity_linear.py --data out/cmu_lab
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from hipart.data.dataset import load_manifest, open_arrays


def features(a: dict, idx: np.ndarray, hier: bool) -> np.ndarray:
    """Flattened 2D points relative to the pelvis, divided by the mean joint distance to the pelvis, + bias."""
    xs = np.asarray(a["x_s"][idx], np.float64)
    parts = [xs] + ([np.asarray(a["x_d"][idx], np.float64), np.asarray(a["x_f"][idx], np.float64)] if hier else [])
    x = np.concatenate(parts, 1) - xs[:, :1]
    x /= np.linalg.norm(xs - xs[:, :1], axis=-1).mean(1)[:, None, None]
    return np.concatenate([x.reshape(len(x), -1), np.ones((len(x), 1))], 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--ridge", type=float, default=1e-3)
    args = ap.parse_args()
    man = load_manifest(args.data)
    a = open_arrays(args.data, ["x_s", "x_d", "x_f", "p3d_s", "split"])
    sp = np.asarray(a["split"])
    tr = np.nonzero(sp == man["splits"].index("train"))[0][:: args.stride]
    te = np.nonzero(sp == man["splits"].index("test"))[0][:: args.stride]

    def target(idx):
        p = np.asarray(a["p3d_s"][idx], np.float64)
        return (p - p[:, :1]).reshape(len(idx), -1)

    res = {}
    for hier in (False, True):
        Xtr, Xte = features(a, tr, hier), features(a, te, hier)
        W = np.linalg.solve(Xtr.T @ Xtr + args.ridge * np.eye(Xtr.shape[1]), Xtr.T @ target(tr))
        err = np.linalg.norm((Xte @ W - target(te)).reshape(-1, 17, 3), axis=-1).mean() * 1000
        res["hier" if hier else "sparse"] = round(float(err), 2)
    res["reduction_pct"] = round(100 * (1 - res["hier"] / res["sparse"]), 1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
