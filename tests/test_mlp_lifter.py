"""The edge model's residual-MLP lifter: pose normalisation against numpy, invariances, checkpoint, export."""

from __future__ import annotations

import numpy as np
import torch

from hipart.checkpoint import load_checkpoint, save_checkpoint
from hipart.models.config import HiPARTConfig, LifterConfig
from hipart.models.hipart import HiPART
from hipart.models.lifter import MLPLifter, build_lifter, pose_normalise


def test_pose_normalise_matches_numpy():
    x = np.random.default_rng(0).normal(size=(5, 161, 2)).astype(np.float32)
    root = x[:, :1]
    s = np.mean([[np.hypot(*(p - r[0])) for p in pts[:17]] for pts, r in zip(x, root, strict=True)], 1)
    want = np.concatenate([((x - root) / s[:, None, None]).reshape(5, -1), root[:, 0], s[:, None]], 1)
    np.testing.assert_allclose(pose_normalise(torch.from_numpy(x)).numpy(), want, rtol=1e-5, atol=1e-6)


def test_translation_and_scale_reach_the_trunk_only_through_root_and_scale():
    torch.manual_seed(0)
    lf = MLPLifter(LifterConfig(kind="mlp", num_points=17, dim=8, width=32, blocks=1, dropout=0.0)).eval()
    x = torch.randn(3, 17, 2)
    a, b = pose_normalise(x), pose_normalise(x * 2.0 + 0.5)
    torch.testing.assert_close(a[:, :34], b[:, :34])  # relative shape identical
    torch.testing.assert_close(b[:, 34:36], a[:, 34:36] * 2.0 + 0.5)
    torch.testing.assert_close(b[:, 36], a[:, 36] * 2.0)
    assert lf(x).shape == (3, 17, 3) and lf.joint_features(x).shape == (3, 17, 8)


def test_edge_config_builds_mlp_and_round_trips(tmp_path):
    cfg = HiPARTConfig.edge()
    assert cfg.lifter.kind == "mlp" and isinstance(build_lifter(cfg.lifter), MLPLifter)
    small = HiPARTConfig.tiny().to_dict()
    small["lifter"].update(kind="mlp", width=48, dim=8, blocks=1)
    model = HiPART(HiPARTConfig.from_dict(small)).eval()
    save_checkpoint(tmp_path / "m.pt", model)
    back, _ = load_checkpoint(tmp_path / "m.pt")
    x = torch.rand(2, 17, 2) - 0.5
    torch.testing.assert_close(back(x)["pose3d"], model(x)["pose3d"])
    assert isinstance(back.lifter, MLPLifter)


def test_mlp_lifter_model_exports_with_parity(tmp_path):
    from export.artifacts import export_all

    small = HiPARTConfig.tiny().to_dict()
    small["lifter"].update(kind="mlp", width=48, dim=8, blocks=2)
    model = HiPART(HiPARTConfig.from_dict(small)).eval()
    arts = export_all(model, tmp_path, "test", ("lift", "hipart"), parity=True)
    assert {a.name for a in arts} == {"lift", "hipart"}
    assert all(a.parity is not None and a.parity.ok() for a in arts), [a.parity for a in arts]


def test_lift_feeds_follow_the_lifter_input():
    from export.artifact_feeds import lift_points

    x = (torch.rand(3, 17, 2) - 0.5).numpy()
    for inp, n in (("sparse", 17), ("dense", 65), ("hierarchy", 161)):
        model = HiPART(HiPARTConfig.tiny(inp)).eval()
        pts = lift_points(model, x)
        assert pts.shape == (3, n, 2)
        np.testing.assert_array_equal(pts[:, :17], x)
