"""Human3.6M npz loader on a small synthetic file written in the public format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hipart.data.h36m import H36M_32_TO_17, H36MData, H36MDataset, H36MFormatError, quaternion_to_matrix


def _write(tmp_path, with_2d=True):
    rng = np.random.default_rng(0)
    pos3d = {s: {"Walking": rng.normal(size=(5, 32, 3)) + [0, 0, 0], "Sitting 1": rng.normal(size=(3, 32, 3))}
             for s in ("S1", "S9", "S5")}  # fmt: skip
    np.savez(tmp_path / "data_3d_h36m.npz", positions_3d=pos3d)
    cams = {"intrinsic": [{"id": str(54138969 + i), "res_w": 1000, "res_h": 1002 if i % 2 == 0 else 1000,
                           "focal_length": [1000.0, 1000.0], "center": [500.0, 500.0]} for i in range(4)],
            "extrinsic": {s: [{"orientation": [1, 0, 0, 0], "translation": [0, 0, -5000.0 - 1000 * i]}
                              for i in range(4)] for s in ("S1", "S9", "S5")}}  # fmt: skip
    (tmp_path / "cams.json").write_text(json.dumps(cams))
    if with_2d:
        pos2d = {s: {a: [np.full((len(v), 17, 2), 100.0 * (c + 1)) for c in range(4)] for a, v in acts.items()}
                 for s, acts in pos3d.items()}  # fmt: skip
        meta = {"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry": [[4, 5, 6, 11, 12, 13],
                                                                               [1, 2, 3, 14, 15, 16]]}
        np.savez(tmp_path / "data_2d_h36m_cpn_ft_h36m_dbb.npz", positions_2d=pos2d, metadata=meta)
    return pos3d


def test_split_selection_and_camera_frame(tmp_path):
    pos3d = _write(tmp_path)
    d = H36MData(tmp_path / "data_3d_h36m.npz", tmp_path / "data_2d_h36m_cpn_ft_h36m_dbb.npz",
                 cameras=tmp_path / "cams.json")  # fmt: skip
    tr = d.samples("train")
    assert list(tr["subjects"]) == ["S1", "S5"]  # standard split, S6-S8 absent here
    assert len(tr["x_s"]) == 2 * 4 * (5 + 3)
    te = d.samples("test")
    assert list(te["subjects"]) == ["S9"] and len(te["x_s"]) == 4 * 8
    # identity orientation, camera 2 at z = -7 m: X_cam = X - (0, 0, -7); root-relative removes it
    k = np.nonzero((te["camera"] == 2) & (te["frame"] == 1) & (te["actions"][te["action"]] == "Walking"))[0][0]
    X = pos3d["S9"]["Walking"][1][list(H36M_32_TO_17)]
    np.testing.assert_allclose(te["pose3d"][k], X - X[:1], atol=1e-6)
    # stored 2D detections (all 300 px for camera 2) normalised with res 1000 x 1002
    np.testing.assert_allclose(te["x_s_px"][k], 300.0)
    np.testing.assert_allclose(te["x_s"][k][0], [300 / 1000 * 2 - 1, 300 / 1000 * 2 - 1.002], atol=1e-6)
    ds = H36MDataset(d, "test")
    assert len(ds) == 32 and ds[0]["x_s"].shape == (17, 2) and ds[0]["pose3d"].shape == (17, 3)


def test_projected_ground_truth_2d_without_detections(tmp_path):
    pos3d = _write(tmp_path, with_2d=False)
    d = H36MData(tmp_path / "data_3d_h36m.npz", cameras=tmp_path / "cams.json")
    s = d.samples(subjects=["S1"])
    k = np.nonzero((s["camera"] == 0) & (s["frame"] == 0) & (s["actions"][s["action"]] == "Sitting 1"))[0][0]
    X = pos3d["S1"]["Sitting 1"][0][list(H36M_32_TO_17)] + [0, 0, 5.0]
    expect = 1000 * X[:, :2] / X[:, 2:] + 500
    np.testing.assert_allclose(s["x_s_px"][k], expect, rtol=1e-5)


def test_quaternion_and_errors(tmp_path):
    # 90 degrees about z: (cos45, 0, 0, sin45) maps x -> y
    q = [np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)]
    np.testing.assert_allclose(quaternion_to_matrix(q) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    with pytest.raises(FileNotFoundError):
        H36MData(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", something=np.zeros(3))
    with pytest.raises(H36MFormatError, match="missing key 'positions_3d'"):
        H36MData(tmp_path / "bad.npz")
    _write(tmp_path, with_2d=False)
    d = H36MData(tmp_path / "data_3d_h36m.npz")
    with pytest.raises(H36MFormatError, match="no camera extrinsics"):
        d.samples("train")


class _RunsCode:
    """An object whose unpickling would call os.system (what a crafted data file carries)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_crafted_npz_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    arr = np.empty((), dtype=object)
    arr[()] = {"S1": {"Walk": _RunsCode(marker)}}
    np.savez(tmp_path / "evil.npz", positions_3d=arr)
    with pytest.raises(H36MFormatError, match="refused to load posix.system|refused to load os.system"):
        H36MData(tmp_path / "evil.npz")
    assert not marker.exists()


def test_nested_dict_of_arrays_still_loads_without_general_pickle(tmp_path):
    from hipart.data.h36m import _load_npz_dict

    nested = np.empty((), dtype=object)
    nested[()] = {"S9": {"Walk 1": np.arange(6.0).reshape(2, 3)}, "meta": ["a", 1, 2.5]}
    np.savez(tmp_path / "ok.npz", positions_3d=nested)
    d = _load_npz_dict(tmp_path / "ok.npz", "positions_3d")
    np.testing.assert_array_equal(d["S9"]["Walk 1"], np.arange(6.0).reshape(2, 3))
    assert d["meta"] == ["a", 1, 2.5]
