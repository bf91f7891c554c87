"""The bundled INT8 calibration set: x_s of training subjects (k-center) plus a held-out validation part for drift.

Shipped as hipart/assets/calib_default_v1.npz (about 0.2 MB) and used by `hipart-export --int8` when no other
calibration data is given. Rebuild it from a `hipart-data build` directory with
`python -m calib.bundled --dataset data/cmu_lab` (the dataset the bundled checkpoint was trained on).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calib.calibration_set import META_PREFIX, CalibrationDataError, greedy_k_center
from hipart.atomic_write import write_bytes_atomic

ASSET_NAME = "calib_default_v1.npz"
CALIB_SIZE = 512
EVAL_SIZE = 256
KEYS = ("x_s", "eval_x_s", "eval_pose3d")


@dataclass
class BundledCalibration:
    """Calibration poses (training subjects, k-center order) and held-out poses with 3D ground truth."""

    x_s: np.ndarray  # [N,17,2] float32, greedy k-center order: every prefix is itself a k-center selection
    eval_x_s: np.ndarray  # [M,17,2] float32, validation subjects (disjoint from the training subjects)
    eval_pose3d: np.ndarray  # [M,17,3] float32, root-relative metres
    meta: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def describe(self) -> str:
        """One line naming the set, its source and its subjects."""
        where = self.path.name if self.path else "bundled set"
        m = self.meta
        return (f"bundled calibration set {where} (training subjects {m.get('train_subjects', '?')}; held out: "
                f"validation subjects {m.get('eval_subjects', '?')}; data {m.get('data_version', '?')})")  # fmt: skip


def asset_path() -> Path:
    """Where the bundled calibration set lives (hipart/assets/, shipped as package data)."""
    import hipart

    return Path(hipart.__file__).parent / "assets" / ASSET_NAME


def bundled_calibration_path() -> Path | None:
    """The bundled calibration npz, or None if this build has none."""
    p = asset_path()
    return p if p.is_file() else None


def load_bundled(path: str | Path | None = None) -> BundledCalibration:
    """Read the bundled (or a same-format) calibration npz; CalibrationDataError if absent or malformed."""
    p = Path(path) if path is not None else bundled_calibration_path()
    if p is None or not p.is_file():
        raise CalibrationDataError(f"bundled calibration set not found ({p or asset_path()})")
    with np.load(p, allow_pickle=False) as z:
        missing = [k for k in KEYS if k not in z.files]
        if missing:
            raise CalibrationDataError(f"{p} lacks {missing} (has {sorted(z.files)})")
        arrays = {k: np.asarray(z[k], np.float32) for k in KEYS}
        meta = {k[len(META_PREFIX) :]: str(z[k]) for k in z.files if k.startswith(META_PREFIX)}
    return BundledCalibration(**arrays, meta=meta, path=p)


def build_bundled(
    dataset: str | Path, out: str | Path, size: int = CALIB_SIZE, eval_size: int = EVAL_SIZE
) -> BundledCalibration:
    """k-center `size` poses of the dataset's train split and `eval_size` evenly spaced val poses, saved as npz."""
    from calib.dataset_poses import split_poses

    root = Path(dataset)
    train_x, _ = split_poses(root, "train")
    val_x, val_p3d = split_poses(root, "val")
    if len(train_x) < size or len(val_x) < eval_size:
        raise CalibrationDataError(f"{root}: too few poses ({len(train_x)} train, {len(val_x)} val)")
    calib = train_x[greedy_k_center(train_x, size)]
    pick = np.linspace(0, len(val_x) - 1, eval_size).round().astype(np.int64)
    subjects = _split_subjects(root)
    version = "sha256:" + hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest()[:16]
    meta = {
        "source": f"hipart-data build {root.name} (data version {version}): k-center over the train split, "
        "held-out poses evenly spaced over the val split",  # fmt: skip
        "data_version": version,
        "train_subjects": ",".join(subjects.get("train", [])),
        "eval_subjects": ",".join(subjects.get("val", [])),
        "method": "greedy k-center (calib.calibration_set.greedy_k_center), ground-truth 2D x_s",
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, x_s=calib, eval_x_s=val_x[pick], eval_pose3d=val_p3d[pick],
                        **{META_PREFIX + k: np.asarray(v) for k, v in meta.items()})  # fmt: skip
    write_bytes_atomic(out, buf.getvalue())
    return load_bundled(out)


def _split_subjects(root: Path) -> dict[str, list[str]]:
    import json

    man = json.loads((root / "manifest.json").read_text())
    out: dict[str, set[str]] = {}
    for clip in man.get("clips", []):
        out.setdefault(clip.get("split"), set()).add(str(clip.get("subject")))
    return {k: sorted(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    """Rebuild the bundled calibration npz from a built dataset."""
    p = argparse.ArgumentParser(prog="python -m calib.bundled", description=__doc__)
    p.add_argument("--dataset", type=Path, required=True, help="`hipart-data build` directory")
    p.add_argument("--out", type=Path, default=asset_path())
    p.add_argument("--size", type=int, default=CALIB_SIZE)
    p.add_argument("--eval-size", type=int, default=EVAL_SIZE)
    args = p.parse_args(argv)
    try:
        b = build_bundled(args.dataset, args.out, args.size, args.eval_size)
    except CalibrationDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): {len(b.x_s)} calibration + {len(b.eval_x_s)} "
          f"held-out poses; {b.describe()}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
