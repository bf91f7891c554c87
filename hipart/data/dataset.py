"""Reading a built dataset: memory-mapped arrays, a torch Dataset with split selection, `info` summary."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hipart.camera import normalize_screen_coordinates
from hipart.data.noise import NoiseConfig, detector_noise
from hipart.data.occlusion import crop_occlusion, mask_joints


class DatasetFormatError(ValueError):
    """A dataset directory is missing files or does not match its manifest."""


def load_manifest(root: str | Path) -> dict:
    """manifest.json of a built dataset."""
    p = Path(root) / "manifest.json"
    if not p.exists():
        raise DatasetFormatError(f"{root}: no manifest.json (not a dataset built by `hipart-data build`)")
    try:
        man = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise DatasetFormatError(f"{p}: not readable JSON ({e})") from None
    missing = [k for k in ("files", "image_size") if not isinstance(man, dict) or k not in man]
    if missing:
        raise DatasetFormatError(f"{p}: lacks {', '.join(missing)} (not a dataset built by `hipart-data build`)")
    return man


def open_arrays(root: str | Path, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Memory-map the dataset's .npy arrays (all, or `names`)."""
    man = load_manifest(root)
    files = man["files"]
    out = {}
    for f in files:
        k = f[: -len(".npy")]
        if names is not None and k not in names:
            continue
        p = Path(root) / f
        if not p.exists():
            raise DatasetFormatError(f"{root}: missing {f} listed in manifest.json")
        out[k] = np.load(p, mmap_mode="r")
    return out


class HierarchicalPoseDataset(Dataset):
    """Samples of one split: x_s/x_d/x_f (normalised), detector-like x_s_det + conf, root-relative 3D of all
    levels (metres, camera frame), action, subject. Optional on-the-fly noise and Table-7 occlusions."""

    def __init__(self, root: str | Path, split: str | list[str] = "train", cameras: str = "all",
                 input_2d: str = "gt", mask_ratio: float = 0.0, crop_ratio: float = 0.0,
                 noise: NoiseConfig | None = None, seed: int = 0):  # fmt: skip
        self.root = Path(root)
        self.manifest = load_manifest(root)
        self.arrays = open_arrays(root)
        splits = [split] if isinstance(split, str) else list(split)
        bad = [s for s in splits if s not in self.manifest["splits"]]
        if bad:
            raise ValueError(f"unknown split(s) {bad}; choose from {self.manifest['splits']}")
        if input_2d not in ("gt", "det", "noisy"):
            raise ValueError(
                "input_2d must be gt (clean), det (stored detector-like) or noisy (resampled)")
        sel = np.isin(self.arrays["split"], [self.manifest["splits"].index(s) for s in splits])
        if cameras != "all":
            kinds = {"lab": 0, "wild": 1}
            if cameras not in kinds:
                raise ValueError("cameras must be all, lab or wild")
            sel &= np.asarray(self.arrays["cam_kind"])[self.arrays["camera"]] == kinds[cameras]
        self.index = np.nonzero(sel)[0]
        self.input_2d, self.mask_ratio, self.crop_ratio = input_2d, mask_ratio, crop_ratio
        self.noise = noise or NoiseConfig()
        self.seed = seed
        self.epoch = 0
        self.w, self.h = self.manifest["image_size"]

    def set_epoch(self, epoch: int) -> None:
        """Change the random stream of the on-the-fly noise/occlusion (same index + epoch = same draw)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        k = int(self.index[i])
        a = self.arrays
        rng = np.random.default_rng([self.seed, self.epoch, k])
        if self.input_2d == "gt":
            xs_px, conf = np.array(a["x_s_px"][k]), np.ones(17, np.float32)
        elif self.input_2d == "det":
            xs_px, conf = np.array(a["x_s_det_px"][k]), np.array(a["conf_det"][k])
        else:
            xs_px, conf = detector_noise(np.array(a["x_s_px"][k], np.float64), rng, self.noise)
        if self.mask_ratio > 0:
            xs_px, conf, _ = mask_joints(xs_px, conf, self.mask_ratio, rng, fill="box")
        if self.crop_ratio > 0:
            xs_px, conf, _ = crop_occlusion(xs_px, conf, self.crop_ratio, rng)
        x_s = normalize_screen_coordinates(xs_px, self.w, self.h)
        p3d = {lvl: np.array(a[f"p3d_{lvl}"][k]) for lvl in ("s", "d", "f")}
        root = p3d["s"][:1]
        return {
            "x_s": torch.as_tensor(x_s, dtype=torch.float32),
            "conf": torch.as_tensor(conf, dtype=torch.float32),
            "x_d": torch.as_tensor(np.array(a["x_d"][k])),
            "x_f": torch.as_tensor(np.array(a["x_f"][k])),
            "pose3d": torch.as_tensor(p3d["s"] - root, dtype=torch.float32),
            "dense3d": torch.as_tensor(p3d["d"] - root, dtype=torch.float32),
            "fine3d": torch.as_tensor(p3d["f"] - root, dtype=torch.float32),
            "action": torch.as_tensor(int(a["action"][k])),
            "subject": torch.as_tensor(int(a["subject"][k])),
            "index": torch.as_tensor(k),
        }


class InMemorySplit(Dataset):
    """One split held in RAM as tensors, batches gathered by index: the training fast path (no per-sample Python).

    Same sample keys as `HierarchicalPoseDataset` (without the dense/fine 3D levels, which no stage trains on).
    `noisy` input resamples the detector noise per batch from (seed, epoch, first index), so a resumed run
    draws the same noise; `extra` arrays (cached tokens or generated poses) are matched by position.
    """

    def __init__(self, root: str | Path, split: str = "train", input_2d: str = "gt", subsample: int = 1,
                 noise: NoiseConfig | None = None, seed: int = 0):  # fmt: skip
        base = HierarchicalPoseDataset(root, split=split, input_2d=input_2d)
        a, k = base.arrays, base.index[::subsample]
        self.input_2d, self.noise, self.seed, self.epoch = input_2d, noise or NoiseConfig(), seed, 0
        self.w, self.h = base.w, base.h
        self.xs_px = np.ascontiguousarray(a["x_s_px"][k], np.float64)
        if input_2d == "det":
            self.det = torch.as_tensor(normalize_screen_coordinates(np.asarray(a["x_s_det_px"][k], np.float32),
                                                                    self.w, self.h))
            self.det_conf = torch.as_tensor(np.asarray(a["conf_det"][k], np.float32))
        p3d = np.asarray(a["p3d_s"][k], np.float32)
        self.t = {
            "x_s": torch.as_tensor(normalize_screen_coordinates(self.xs_px.astype(np.float32), self.w, self.h)),
            "x_d": torch.as_tensor(np.asarray(a["x_d"][k], np.float32)),
            "x_f": torch.as_tensor(np.asarray(a["x_f"][k], np.float32)),
            "pose3d": torch.as_tensor(p3d - p3d[:, :1]),
            "action": torch.as_tensor(np.asarray(a["action"][k], np.int64)),
            "subject": torch.as_tensor(np.asarray(a["subject"][k], np.int64)),
            "index": torch.as_tensor(k.astype(np.int64)),
        }

    def add(self, **extra: np.ndarray) -> InMemorySplit:
        """Attach per-sample arrays (cached tokens, generated poses) by position; returns self."""
        for name, v in extra.items():
            if len(v) != len(self):
                raise ValueError(f"cache {name!r} has {len(v)} rows for a split of {len(self)}")
            self.t[name] = torch.as_tensor(np.asarray(v))
        return self

    def subset(self, idx: np.ndarray) -> InMemorySplit:
        """A view holding only the samples at positions `idx` (same input mode and noise stream)."""
        out = object.__new__(InMemorySplit)
        out.__dict__.update(self.__dict__)
        ti = torch.as_tensor(np.asarray(idx, np.int64))
        out.t = {k: v[ti] for k, v in self.t.items()}
        out.xs_px = self.xs_px[np.asarray(idx)]
        if self.input_2d == "det":
            out.det, out.det_conf = self.det[ti], self.det_conf[ti]
        return out

    def set_epoch(self, epoch: int) -> None:
        """Change the random stream of the noisy input (same batch + epoch = same draw)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.t["x_s"])

    def batch(self, idx: list[int] | np.ndarray) -> dict[str, torch.Tensor]:
        """The samples at positions `idx` as one batch dict."""
        idx = np.asarray(idx, np.int64)
        ti = torch.from_numpy(idx)
        out = {name: v[ti] for name, v in self.t.items()}
        if self.input_2d == "det":
            out["x_s"], out["conf"] = self.det[ti], self.det_conf[ti]
        elif self.input_2d == "noisy":
            rng = np.random.default_rng([self.seed, self.epoch, int(idx[0]) if len(idx) else 0, len(idx)])
            xs, conf = detector_noise(self.xs_px[idx], rng, self.noise)
            out["x_s"] = torch.as_tensor(normalize_screen_coordinates(xs, self.w, self.h), dtype=torch.float32)
            out["conf"] = torch.as_tensor(conf, dtype=torch.float32)
        else:
            out["conf"] = torch.ones(len(idx), out["x_s"].shape[1])
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.batch([i]).items()}


def dataset_summary(root: str | Path, verify: bool = False) -> str:
    """Human-readable counts and sanity checks of a built dataset (`hipart-data info`)."""
    man = load_manifest(root)
    a = open_arrays(root)
    lines = [f"dataset {root} (format v{man['format_version']}, seed {man['seed']}, "
             f"cameras {man['cameras']})"]
    split = np.asarray(a["split"])
    lines.append(f"samples {len(split)}; clips {len(man['clips'])}; subjects {len(man['subjects'])}; "
                 f"cameras {len(a['cam_K'])}; skipped files {len(man['skipped'])}")  # fmt: skip
    for i, s in enumerate(man["splits"]):
        m = split == i
        subj = sorted({c["subject"] for c in man["clips"] if c["split"] == s})
        lines.append(f"  {s:5s}: {int(m.sum()):7d} samples, subjects {','.join(subj) or '-'}")
    act = np.bincount(np.asarray(a["action"]), minlength=len(man["action_classes"]))
    lines.append("actions: " + ", ".join(f"{n} {c}" for n, c in zip(man["action_classes"], act, strict=True)))
    fams: dict[str, int] = {}
    for c in man["clips"]:
        fams[c["skeleton_scheme"]] = fams.get(c["skeleton_scheme"], 0) + 1
    lines.append("skeleton schemes: " + ", ".join(f"{k} {v}" for k, v in sorted(fams.items())))
    # sanity: sample up to 20k rows
    n = len(split)
    idx = np.linspace(0, n - 1, min(n, 20000)).astype(np.int64)
    ps = np.asarray(a["p3d_s"][idx], np.float64)
    xs = np.asarray(a["x_s_px"][idx], np.float64)
    xf = np.asarray(a["x_f_px"][idx], np.float64)
    w, h = man["image_size"]
    inside = ((xs >= 0) & (xs[..., :1] < w) & (xs[..., 1:] < h)).all(axis=-1).mean()
    femur = np.linalg.norm(ps[:, 2] - ps[:, 1], axis=-1)
    height = np.linalg.norm(ps[:, 10] - ps[:, 0], axis=-1)
    det = np.asarray(a["x_s_det_px"][idx], np.float64)
    err = np.linalg.norm(det - xs, axis=-1)
    lines.append(f"depth z: {ps[..., 2].min():.2f}..{ps[..., 2].max():.2f} m; sparse joints inside image "
                 f"{100 * inside:.1f}%; fine points x range "
                 f"{xf[..., 0].min():.0f}..{xf[..., 0].max():.0f} px")  # fmt: skip
    lines.append(f"thigh length {femur.mean():.3f} +- {femur.std():.3f} m; pelvis->head-top "
                 f"{height.mean():.3f} m; detector-noise error median {np.median(err):.1f} px, "
                 f"p95 {np.percentile(err, 95):.1f} px")  # fmt: skip
    finite = all(np.isfinite(np.asarray(a[k][idx])).all() for k in ("x_s", "x_d", "x_f", "p3d_d", "p3d_f"))
    lines.append(f"all sampled values finite: {finite}")
    if verify:
        bad = []
        for f, meta in man["files"].items():
            hsh = hashlib.sha256((Path(root) / f).read_bytes()).hexdigest()
            if hsh != meta["sha256"]:
                bad.append(f)
        lines.append("content hashes: " + ("all match" if not bad else f"MISMATCH in {bad}"))
    return "\n".join(lines)


def open_split(root: str | Path, split: str, input_2d: str = "gt", subsample: int = 1,
               mask_ratio: float = 0.0, crop_ratio: float = 0.0) -> Dataset:  # fmt: skip
    """One split of a built dataset, optionally every `subsample`-th sample only (for CPU budgets, quick looks)."""
    from torch.utils.data import Subset

    ds = HierarchicalPoseDataset(root, split=split, input_2d=input_2d, mask_ratio=mask_ratio, crop_ratio=crop_ratio)
    return Subset(ds, range(0, len(ds), subsample)) if subsample > 1 else ds
