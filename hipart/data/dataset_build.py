"""`hipart-data build`: BVH folder -> hierarchical 2D/3D pose dataset (memory-mappable .npy + manifest).

One sample = one (clip frame, camera). Per clip: read + map the skeleton, sample a body shape, pose the
Anny mesh by bone direction, take the 96 fine / 48 dense cluster means and the 17 sparse joints, place
virtual cameras, project, add detector-like noise to the sparse level. Every random number comes from a
per-clip generator seeded by (seed, clip id), so the output bytes depend only on the inputs and the seed,
not on the worker count or the clip order.
"""

from __future__ import annotations

import csv
import hashlib
import json
import zlib
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from hipart.camera import normalize_screen_coordinates, project_to_pixels, world_to_camera
from hipart.data import body_mesh as bm
from hipart.data.actions import ACTION_CLASSES, action_class
from hipart.data.bvh import BVHError, load_bvh
from hipart.data.cameras import make_cameras
from hipart.data.coarsening import ASSET_PATH, NUM_LANDMARKS, load_clusters
from hipart.data.joint_mapping import UnknownSkeletonError, map_joints
from hipart.data.noise import NoiseConfig, detector_noise
from hipart.skeleton import JOINT_NAMES, NUM_DENSE, NUM_FINE

DATA_FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
# The corpus README's subject-disjoint split (60/61 are salsa partners: both train).
DEFAULT_SPLIT: dict[str, str] = {
    **{s: "train" for s in ("01", "03", "06", "07", "09", "10", "14", "16", "60", "61", "94", "135")},
    **{s: "val" for s in ("02", "12", "131")},
    **{s: "test" for s in ("05", "08", "13")},
}
PHENOTYPE_KEYS = tuple(bm.PHENOTYPE_RANGES)

# name -> (dtype, trailing shape); the per-sample arrays written as <name>.npy
ARRAYS: dict[str, tuple[str, tuple[int, ...]]] = {
    "x_s_px": ("float32", (17, 2)), "x_d_px": ("float32", (NUM_DENSE, 2)),
    "x_f_px": ("float32", (NUM_FINE, 2)),
    "x_s": ("float32", (17, 2)), "x_d": ("float32", (NUM_DENSE, 2)), "x_f": ("float32", (NUM_FINE, 2)),
    "x_s_det_px": ("float32", (17, 2)), "conf_det": ("float32", (17,)),
    "p3d_s": ("float32", (17, 3)), "p3d_d": ("float32", (NUM_DENSE, 3)), "p3d_f": ("float32", (NUM_FINE, 3)),
    "camera": ("int32", ()), "clip": ("int32", ()), "frame": ("int32", ()), "subject": ("int32", ()),
    "action": ("int16", ()), "split": ("int8", ()), "body_shape": ("float32", (len(PHENOTYPE_KEYS),)),
}  # fmt: skip
CAMERA_ARRAYS = ("cam_K", "cam_R", "cam_t", "cam_size", "cam_clip", "cam_kind")


@dataclass
class ClipJob:
    """One BVH file to process."""

    path: str
    clip_id: str
    subject: str
    description: str
    split: str


@dataclass
class BuildResult:
    """What a build produced: output dir, counts per split, skipped files, seconds."""

    out_dir: str
    counts: dict[str, int]
    clips: int
    skipped: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _subject_of(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    if len(rel.parts) > 1:
        return rel.parts[0]
    return path.stem.split("_")[0]


def _fallback_split(subject: str) -> str:
    """Deterministic ~80/10/10 split for subjects the default table does not know."""
    h = zlib.crc32(subject.encode()) % 10
    return "train" if h < 8 else ("val" if h == 8 else "test")


def discover(bvh_dir: str | Path, split: dict[str, str] | None = None) -> list[ClipJob]:
    """List the BVH files of a folder (recursively, sorted) with subject, description and split."""
    root = Path(bvh_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"BVH folder not found: {root}")
    desc: dict[str, str] = {}
    man = root / "MANIFEST.tsv"
    if man.exists():
        with man.open(newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                desc[row.get("clip_id", "")] = row.get("description", "")
    files = sorted(root.rglob("*.bvh"), key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise FileNotFoundError(f"no .bvh files under {root}")
    table = DEFAULT_SPLIT if split is None else split
    jobs = []
    for p in files:
        subj = _subject_of(p, root)
        sp = table.get(subj) or _fallback_split(subj)
        if sp not in SPLITS:
            raise ValueError(f"split for subject {subj!r} must be one of {SPLITS}, got {sp!r}")
        jobs.append(ClipJob(str(p), p.stem, subj, desc.get(p.stem, ""), sp))
    return jobs


def clip_rng(seed: int, clip_id: str) -> np.random.Generator:
    """The per-clip random generator (independent of processing order)."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(clip_id.encode())]))


_STATE: dict = {}
BODIES = ("anny", "mean")


def _worker_init(body: str = "anny") -> None:
    import torch

    torch.set_num_threads(1)
    _STATE.clear()
    _STATE["body"] = body
    if body == "mean":
        _STATE["mean"] = bm.load_mean_body()
        return
    tpl = bm.body_template()
    cl = load_clusters()
    if cl.num_vertices != tpl.num_vertices:
        raise RuntimeError(f"cluster asset has {cl.num_vertices} vertices, Anny mesh {tpl.num_vertices}")
    _STATE.update(tpl=tpl, M=cl.averaging_matrix())


def pose_clip(job: ClipJob, seed: int, body: str = "anny") -> dict:
    """World-frame points of one clip: sparse [F,17,3], dense, fine, the body shape and the rest body.
    body='anny' samples a body shape per clip; 'mean' uses the committed mean-body asset (no anny)."""
    if body not in BODIES:
        raise ValueError(f"unknown body {body!r}; choose one of {BODIES}")
    if _STATE.get("body") != body:
        _worker_init(body)
    clip = load_bvh(job.path)
    mapping = map_joints(clip.names)
    rng = clip_rng(seed, job.clip_id)
    if body == "mean":
        mb = _STATE["mean"]
        tpl, rest, table, phen = mb.template, mb.rest, mb.table, dict(mb.rest.phenotype)
    else:
        tpl = _STATE["tpl"]
        phen = bm.sample_phenotype(rng)
        rest = bm.rest_body(phen)
        table = bm.point_skinning_table(tpl, rest, _STATE["M"])
    mo = bm.mocap_landmarks(clip.positions, clip.rotations, clip.names, mapping, clip.end_sites)
    pose = bm.retarget(tpl, rest, mo)
    pts = bm.skin_points(table, rest, pose)
    fine = pts[:, :NUM_FINE]
    dense = pts[:, NUM_FINE : NUM_FINE + NUM_DENSE]
    lm = pts[:, NUM_FINE + NUM_DENSE : NUM_FINE + NUM_DENSE + NUM_LANDMARKS]
    sparse = bm.sparse_joints(tpl, pose, lm)
    return dict(sparse=sparse, dense=dense, fine=fine, phenotype=phen, rng=rng, mapping=mapping.scheme,
                unit=clip.unit, rest=rest, pose=pose)  # fmt: skip


def _process(args: tuple[ClipJob, int, str, dict, str]) -> dict:
    job, seed, cameras, noise, body = args
    try:
        r = pose_clip(job, seed, body)
    except (BVHError, UnknownSkeletonError) as e:
        return {"error": str(e), "path": job.path}
    rng = r["rng"]
    cams = make_cameras(cameras, r["sparse"][:, 0], rng)
    F = r["sparse"].shape[0]
    out: dict[str, list] = {k: [] for k in ("x_s_px", "x_d_px", "x_f_px", "p3d_s", "p3d_d", "p3d_f",
                                            "x_s_det_px", "conf_det")}  # fmt: skip
    for c in range(len(cams)):
        K, R, t = cams.K[c], cams.R[c], cams.t[c]
        for lvl, name in (("sparse", "s"), ("dense", "d"), ("fine", "f")):
            Xc = world_to_camera(r[lvl], R, t)
            Xc[..., 2] = np.maximum(Xc[..., 2], 0.05)  # never behind the camera (cameras are >= 2.5 m away)
            out[f"p3d_{name}"].append(Xc)
            out[f"x_{name}_px"].append(project_to_pixels(Xc, K))
        det, conf = detector_noise(out["x_s_px"][-1], rng, NoiseConfig(**noise))
        out["x_s_det_px"].append(det)
        out["conf_det"].append(conf)
    res = {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}
    w, h = cams.width, cams.height
    for name in ("s", "d", "f"):
        res[f"x_{name}"] = normalize_screen_coordinates(res[f"x_{name}_px"], w, h).astype(np.float32)
    res["cam_local"] = np.repeat(np.arange(len(cams), dtype=np.int32), F)
    res["frame"] = np.tile(np.arange(F, dtype=np.int32), len(cams))
    res["cams"] = cams
    res["meta"] = dict(phenotype=r["phenotype"], scheme=r["mapping"], unit=r["unit"], frames=F)
    return res


def _anny_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("anny")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_dataset(bvh_dir: str | Path, out_dir: str | Path, cameras: str = "lab", seed: int = 0,
                  workers: int = 2, split: dict[str, str] | None = None, limit: int | None = None,
                  noise: dict | None = None, progress: bool = True, body: str = "anny"
                  ) -> BuildResult:  # fmt: skip
    """Build the dataset; returns counts per split and the skipped files (listed in manifest.json)."""
    import time

    from tqdm import tqdm

    t0 = time.perf_counter()
    if cameras not in ("lab", "wild", "both"):
        raise ValueError(f"unknown camera set {cameras!r}; choose lab, wild or both")
    jobs = discover(bvh_dir, split)
    if limit is not None:
        jobs = jobs[:limit]
    noise_cfg = asdict(NoiseConfig(**(noise or {})))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cl = load_clusters()
    if body not in BODIES:
        raise ValueError(f"unknown body {body!r}; choose one of {BODIES}")
    args = [(j, seed, cameras, noise_cfg, body) for j in jobs]
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in ARRAYS}
    cam_chunks: dict[str, list[np.ndarray]] = {k: [] for k in CAMERA_ARRAYS}
    clips_meta, skipped, subjects = [], [], []
    n_cams = 0
    if workers > 1:
        pool = get_context("fork").Pool(workers, initializer=_worker_init, initargs=(body,))
        it = pool.imap(_process, args, chunksize=1)
    else:
        pool = None
        it = map(_process, args)
    try:
        for job, res in tqdm(zip(jobs, it, strict=True), total=len(jobs), desc="clips", disable=not progress,
                             unit="clip"):  # fmt: skip
            rel = Path(job.path).relative_to(Path(bvh_dir)).as_posix()
            if "error" in res:
                skipped.append({"file": rel, "error": res["error"]})
                continue
            ci = len(clips_meta)
            if job.subject not in subjects:
                subjects.append(job.subject)
            n = len(res["frame"])
            cams = res["cams"]
            for k in ARRAYS:
                if k in res:
                    chunks[k].append(res[k])
            chunks["camera"].append(res["cam_local"] + n_cams)
            chunks["clip"].append(np.full(n, ci, np.int32))
            chunks["subject"].append(np.full(n, subjects.index(job.subject), np.int32))
            act = action_class(job.description)
            chunks["action"].append(np.full(n, act, np.int16))
            chunks["split"].append(np.full(n, SPLITS.index(job.split), np.int8))
            ph = res["meta"]["phenotype"]
            shape_vec = np.array([ph[k] for k in PHENOTYPE_KEYS], np.float32)
            chunks["body_shape"].append(np.tile(shape_vec, (n, 1)))
            cam_chunks["cam_K"].append(cams.K.astype(np.float32))
            cam_chunks["cam_R"].append(cams.R.astype(np.float32))
            cam_chunks["cam_t"].append(cams.t.astype(np.float32))
            size = np.array([cams.width, cams.height], np.int32)
            cam_chunks["cam_size"].append(np.tile(size, (len(cams), 1)))
            cam_chunks["cam_clip"].append(np.full(len(cams), ci, np.int32))
            cam_chunks["cam_kind"].append(np.array([0 if k == "lab" else 1 for k in cams.kind], np.int8))
            n_cams += len(cams)
            clips_meta.append({
                "clip": job.clip_id, "file": rel, "subject": job.subject, "split": job.split,
                "description": job.description, "action": ACTION_CLASSES[act],
                "frames": res["meta"]["frames"],
                "skeleton_scheme": res["meta"]["scheme"], "unit": res["meta"]["unit"],
                "body_shape": ph, "bvh_sha256": _sha256(Path(job.path)),
            })  # fmt: skip
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    if not clips_meta:
        raise ValueError(f"no usable clips in {bvh_dir}: {len(skipped)} skipped, e.g. {skipped[:1]}")
    files = {}
    for k, (dt, shape) in ARRAYS.items():
        arr = np.concatenate(chunks[k]).astype(dt)
        assert arr.shape[1:] == shape, (k, arr.shape)
        np.save(out / f"{k}.npy", arr)
        files[f"{k}.npy"] = {"shape": list(arr.shape), "dtype": dt}
    for k in CAMERA_ARRAYS:
        arr = np.concatenate(cam_chunks[k])
        np.save(out / f"{k}.npy", arr)
        files[f"{k}.npy"] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
    for name in files:
        files[name]["sha256"] = _sha256(out / name)
    split_arr = np.load(out / "split.npy")
    counts = {s: int((split_arr == i).sum()) for i, s in enumerate(SPLITS)}
    manifest = {
        "format_version": DATA_FORMAT_VERSION,
        "source": Path(bvh_dir).name,
        "seed": seed,
        "cameras": cameras,
        "image_size": [int(x) for x in cam_chunks["cam_size"][0][0]],
        "num_samples": int(len(split_arr)),
        "counts": counts,
        "clips": clips_meta,
        "subjects": subjects,
        "skipped": skipped,
        "splits": list(SPLITS),
        "action_classes": list(ACTION_CLASSES),
        "joint_names": list(JOINT_NAMES),
        "phenotype_keys": list(PHENOTYPE_KEYS),
        "noise": noise_cfg,
        "cluster_asset": {"file": ASSET_PATH.name, "sha256": _sha256(ASSET_PATH),
                          "topology": cl.topology_hash},
        "body": body,
        "anny_version": _anny_version(),
        "coordinates": {
            "x_*_px": "pixels (origin top-left, x right, y down)",
            "x_*": "normalised: x_px / w * 2 - [1, h / w]",
            "p3d_*": "camera frame (x right, y down, z forward), metres, absolute (subtract p3d_s[:, :1])",
            "cam_R, cam_t": "X_cam = R @ X_world + t; world Y up, metres",
        },
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return BuildResult(str(out), counts, len(clips_meta), skipped, time.perf_counter() - t0)
