"""Camera-space root positions: recovered exactly from a noise-free projection, and robust to 2D noise."""

from __future__ import annotations

import numpy as np
import pytest

from edge.camera_space import Intrinsics, root_translation
from hipart.camera import project_to_pixels


def _scene(seed: int):
    """Two root-relative poses, their true roots and their projections under K."""
    rng = np.random.default_rng(seed)
    pose = rng.normal(0, 0.3, (2, 17, 3))
    pose -= pose[:, :1]
    roots = np.array([[0.4, 0.1, 4.0], [-1.2, 0.3, 7.5]])
    k = Intrinsics(900.0, 880.0, 330.0, 250.0)
    px = project_to_pixels(pose + roots[:, None], k.K)
    return pose, roots, px, k


def test_exact_on_noise_free_projections():
    pose, roots, px, k = _scene(0)
    np.testing.assert_allclose(root_translation(pose, px, None, k), roots, atol=1e-6)


def test_two_pixel_noise_keeps_depth_within_a_few_percent():
    pose, roots, px, k = _scene(1)
    noisy = px + np.random.default_rng(2).normal(0, 2.0, px.shape)
    t = root_translation(pose, noisy, np.ones(px.shape[:2]), k)
    assert np.all(np.abs(t[:, 2] - roots[:, 2]) / roots[:, 2] < 0.05)


def test_low_confidence_joints_are_left_out_and_too_few_give_nan():
    pose, roots, px, k = _scene(3)
    conf = np.ones(px.shape[:2])
    px[0, 5] = [1e4, -1e4]  # a wild joint ...
    conf[0, 5] = 0.01  # ... that the detector doubted
    conf[1, 2:] = 0.0  # second person: 2 joints left -> still solvable (4 equations, 3 unknowns)
    t = root_translation(pose, px, conf, k, min_conf=0.3)
    np.testing.assert_allclose(t, roots, atol=1e-6)
    conf[1, 1:] = 0.0
    assert np.isnan(root_translation(pose, px, conf, k, min_conf=0.3)[1]).all()


def test_intrinsics_parse():
    assert Intrinsics.parse("800", 640, 480) == Intrinsics(800.0, 800.0, 320.0, 240.0)
    assert Intrinsics.parse("800,810,300,200") == Intrinsics(800.0, 810.0, 300.0, 200.0)
    for bad in ("", "a,b", "1,2,3", "-5,5,1,1"):
        with pytest.raises(ValueError):
            Intrinsics.parse(bad, 640, 480)


def test_hipart_run_places_the_clip_walker_in_camera_space(tmp_path, monkeypatch):
    """--intrinsics with the bundled clip's K: root_cam within 10 % of the true depth; without: 'root-relative'."""
    import json

    from edge import cli_run
    from edge.sources import sample_path

    monkeypatch.setenv("HIPART_ARTIFACTS", str(tmp_path / "none"))
    gt = np.load(sample_path(clip=True).with_name("sample_05_01_gt.npz"))
    k = gt["K"]
    out = tmp_path / "o.jsonl"
    args = ["--source", "sample-clip", "--backend", "torch", "--max-frames", "12", "--quiet", "--poses", str(out)]
    assert cli_run.main([*args, "--intrinsics", f"{k[0, 0]},{k[1, 1]},{k[0, 2]},{k[1, 2]}"]) == 0
    recs = [json.loads(line) for line in open(out)]
    assert all(r["space"] == "camera" for r in recs)
    got = np.array([r["persons"][0]["root_cam"] for r in recs if r["persons"]])
    true = gt["p3d_s"][[r["frame"] for r in recs if r["persons"]], 0]
    assert len(got) >= 10 and np.mean(np.linalg.norm(got - true, axis=-1) / true[:, 2]) < 0.10
    assert cli_run.main([*args[:-1], str(tmp_path / "p.jsonl")]) == 0
    assert json.loads(open(tmp_path / "p.jsonl").readline())["space"] == "root-relative"
    assert cli_run.main([*args, "--intrinsics", "nonsense"]) == 2
