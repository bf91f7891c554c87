"""Dataset build: determinism (same bytes for same inputs + seed), bad files skipped and reported, counts,
the torch Dataset over the arrays, `hipart-data` CLI. Uses the committed mean-body asset (no anny), plus
one slow test of the anny path."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from hipart.cli.data import main as cli_main
from hipart.data.dataset import HierarchicalPoseDataset, dataset_summary
from hipart.data.dataset_build import ARRAYS, build_dataset
from tests.data.conftest import bvh_text, humanoid


def _corpus(root: Path) -> Path:
    src = root / "bvh"
    for subj, fam, seed in (("01", "cgspeed-mb", 0), ("05", "daz", 1), ("02", "asf-names", 2)):
        j, e, m = humanoid(fam, scale=1.0, frames=6, rng_seed=seed)
        m[:, 0] += np.linspace(0, 50, len(m))  # walk 50 cm along x
        (src / subj).mkdir(parents=True, exist_ok=True)
        (src / subj / f"{subj}_01.bvh").write_text(bvh_text(j, e, m))
    (src / "02" / "02_02.bvh").write_text("HIERARCHY\nROOT x\n{\n OFFSET 0 0 0\n")  # malformed
    (src / "MANIFEST.tsv").write_text("clip_id\tdescription\n01_01\twalk\n05_01\tdance - pirouette\n")
    return src


def _hashes(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_build_is_deterministic_and_reports_bad_files(tmp_path):
    src = _corpus(tmp_path)
    r1 = build_dataset(src, tmp_path / "a", cameras="both", seed=7, workers=1, body="mean", progress=False)
    r2 = build_dataset(src, tmp_path / "b", cameras="both", seed=7, workers=2, body="mean", progress=False)
    h1, h2 = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert h1 == h2  # byte-identical, whatever the worker count
    r3 = build_dataset(src, tmp_path / "c", cameras="both", seed=8, workers=1, body="mean", progress=False)
    assert _hashes(tmp_path / "c")["x_s_px.npy"] != h1["x_s_px.npy"]  # the seed matters
    # counts: 3 clips x 6 frames x 8 cameras; default split: 01 train, 02 val, 05 test
    assert r1.counts == {"train": 48, "val": 48, "test": 48} and r1.clips == 3 and r3.clips == 3
    assert r1.skipped == r2.skipped and len(r1.skipped) == 1
    assert r1.skipped[0]["file"] == "02/02_02.bvh" and "02_02.bvh:4: unexpected end of file" in r1.skipped[0]["error"]
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    for name, meta in man["files"].items():
        assert meta["sha256"] == h1[name]
    assert {c["clip"]: c["action"] for c in man["clips"]} == {"01_01": "walk", "02_01": "other", "05_01": "dance"}
    assert {c["clip"]: c["skeleton_scheme"] for c in man["clips"]}["05_01"] == "daz"


def test_arrays_are_consistent(tmp_path):
    src = _corpus(tmp_path)
    build_dataset(src, tmp_path / "d", cameras="lab", seed=0, workers=1, body="mean", progress=False)
    d = tmp_path / "d"
    a = {k: np.load(d / f"{k}.npy", mmap_mode="r") for k in ARRAYS}
    K, R, t = (np.load(d / f"cam_{k}.npy") for k in ("K", "R", "t"))
    n = len(a["split"])
    assert n == 3 * 6 * 4
    for k, (dt, shape) in ARRAYS.items():
        assert a[k].shape == (n, *shape) and a[k].dtype == np.dtype(dt)
    # pixels = projection of the stored camera-frame 3D with the stored intrinsics, for all three levels
    for lvl, P in (("s", 17), ("d", 48), ("f", 96)):
        X = np.asarray(a[f"p3d_{lvl}"], np.float64)
        Kc = K[a["camera"]].astype(np.float64)
        u = Kc[:, None, 0, 0] * X[..., 0] / X[..., 2] + Kc[:, None, 0, 2]
        v = Kc[:, None, 1, 1] * X[..., 1] / X[..., 2] + Kc[:, None, 1, 2]
        np.testing.assert_allclose(np.stack([u, v], -1), a[f"x_{lvl}_px"], rtol=1e-4, atol=1e-2)
        np.testing.assert_allclose(a[f"x_{lvl}"], np.asarray(a[f"x_{lvl}_px"]) / 1000 * 2 - 1, atol=1e-5)
        assert X.shape[1] == P
    # the mean-body skeleton: rigid bones (thigh length constant over frames and cameras)
    thigh = np.linalg.norm(a["p3d_s"][:, 2] - a["p3d_s"][:, 1], axis=-1)
    np.testing.assert_allclose(thigh, thigh[0], atol=1e-4)
    assert 0.3 < thigh[0] < 0.5
    # dense point k is the vertex-count-weighted mean of fine points 2k, 2k+1: it lies between them
    fd = np.asarray(a["p3d_f"][:5], np.float64)
    dd = np.asarray(a["p3d_d"][:5], np.float64)
    seg = fd[:, 1::2] - fd[:, 0::2]
    lam = np.sum((dd - fd[:, 0::2]) * seg, -1) / np.maximum(np.sum(seg * seg, -1), 1e-12)
    assert ((lam > -1e-6) & (lam < 1 + 1e-6)).all()
    # world -> camera extrinsics are rotations
    np.testing.assert_allclose(np.einsum("cij,ckj->cik", R, R), np.broadcast_to(np.eye(3), R.shape), atol=1e-5)
    assert t.shape == (12, 3)
    # torch dataset: split selection, root-relative targets, occlusion
    ds = HierarchicalPoseDataset(d, split="test")
    assert len(ds) == 24
    s = ds[0]
    assert s["x_s"].shape == (17, 2) and s["x_d"].shape == (48, 2) and s["x_f"].shape == (96, 2)
    assert float(s["pose3d"][0].abs().sum()) == 0.0
    k = int(s["index"])
    np.testing.assert_allclose(s["x_s"].numpy(), a["x_s"][k], atol=1e-5)
    occ = HierarchicalPoseDataset(d, split=["train", "val"], mask_ratio=0.4)[3]
    assert len(HierarchicalPoseDataset(d, split=["train", "val"])) == 48
    assert int((occ["conf"] == 0).sum()) == 7
    with pytest.raises(ValueError, match="unknown split"):
        HierarchicalPoseDataset(d, split="nope")
    # detector-like inputs: stored ('det') equal the arrays; resampled ('noisy') change with the epoch only
    det = HierarchicalPoseDataset(d, split="test", input_2d="det")[0]
    np.testing.assert_allclose(det["x_s"].numpy(), np.asarray(a["x_s_det_px"][k]) / 1000 * 2 - 1, atol=1e-5)
    np.testing.assert_allclose(det["conf"].numpy(), a["conf_det"][k])
    noisy = HierarchicalPoseDataset(d, split="test", input_2d="noisy")
    n0, n0b = noisy[0]["x_s"], noisy[0]["x_s"]
    noisy.set_epoch(1)
    assert (n0 == n0b).all() and not (noisy[0]["x_s"] == n0).all() and not (n0 == s["x_s"]).all()
    text = dataset_summary(d, verify=True)
    assert "samples 72" in text and "content hashes: all match" in text


def test_cli_build_info_show_and_errors(tmp_path, capsys):
    src = _corpus(tmp_path)
    out = tmp_path / "cli"
    assert cli_main(["build", "--bvh-dir", str(src), "--out", str(out), "--body", "mean", "--workers", "1",
                     "--quiet", "--split", "train=01,02;test=05"]) == 0  # fmt: skip
    o = capsys.readouterr().out
    assert "train 48, val 0, test 24" in o and "skipped 1 file(s)" in o
    assert cli_main(["info", str(out)]) == 0
    assert "train:      48 samples" in capsys.readouterr().out
    assert cli_main(["show", str(out), "--out", str(tmp_path / "png"), "--n", "2"]) == 0
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == 2 and pngs[0].stat().st_size > 5000
    assert cli_main(["build", "--bvh-dir", str(tmp_path / "none"), "--out", str(out), "--body", "mean"]) == 2
    assert "BVH folder not found" in capsys.readouterr().err


@pytest.mark.slow
def test_anny_body_build_deterministic(tmp_path):
    """The real path (sampled Anny body shapes). Runs when anny's cache exists (ANNY_CACHE_DIR or the repo's
    build/anny_cache) or HIPART_TEST_ANNY=1 (then the first run builds it: ~1-4 min on 2 cores, 0.8 GB)."""
    pytest.importorskip("anny")
    cache = Path(os.environ.get("ANNY_CACHE_DIR", Path(__file__).resolve().parents[2] / "build" / "anny_cache"))
    if not (cache.is_dir() and any(cache.rglob("*.safetensors"))) and os.environ.get("HIPART_TEST_ANNY") != "1":
        pytest.skip(f"no anny cache at {cache} (set HIPART_TEST_ANNY=1 to build it, ~0.8 GB)")
    os.environ["ANNY_CACHE_DIR"] = str(cache)
    src = _corpus(tmp_path)
    build_dataset(src, tmp_path / "a", cameras="lab", seed=3, workers=1, limit=2, progress=False)
    build_dataset(src, tmp_path / "b", cameras="lab", seed=3, workers=1, limit=2, progress=False)
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    shapes = [c["body_shape"] for c in man["clips"]]
    assert shapes[0] != shapes[1]  # one body shape per clip
    for sh in shapes:
        assert 0.5 <= sh["age"] <= 0.85 and 0.25 <= sh["height"] <= 0.8
