"""Human3.6M in the public lifting literature's npz format (for users who hold a Human3.6M licence).

- `data_3d_h36m.npz`: `positions_3d` = {subject: {action: [F, 32, 3] world metres}} (or already per camera:
  a list of 4 arrays [F, 17|32, 3] in camera coordinates);
- `data_2d_h36m_<detector>.npz`: `positions_2d` = {subject: {action: [4 arrays [F, 17, 2] pixels]}} and
  `metadata` (layout, num_joints, keypoints_symmetry);
- camera parameters: a JSON file the user provides (no Human3.6M numbers ship here):
  {"intrinsic": [{"id", "res_w", "res_h", "focal_length": [fx, fy], "center": [cx, cy],
  "radial_distortion": [k1, k2, k3], "tangential_distortion": [p1, p2]} x 4],
  "extrinsic": {subject: [{"orientation": [w, x, y, z], "translation": [x, y, z] (mm)} x 4]}}.
  The orientation quaternion rotates camera to world; X_cam = q^-1 (X_world - t).

No body mesh exists for these poses, so only the sparse level is available: this serves the lifter
baselines and HiPART inference/evaluation, not MSST/HiARM training.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hipart.camera import normalize_screen_coordinates

TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
# 32 -> 17 joints (the standard selection; its order is hipart.skeleton's)
H36M_32_TO_17 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)


class H36MFormatError(ValueError):
    """An npz / camera file that is not in the expected format."""


# The only globals a Human3.6M object array (VideoPose3D's nested dicts of arrays) needs: numpy's array and
# scalar reconstructors. Anything else in the pickle stream (os.system, builtins.eval, ...) is refused.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays only: no other global can be named, so no code runs."""

    def find_class(self, module: str, name: str) -> object:
        """Resolve only numpy's array reconstructors; refuse every other global."""
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise H36MFormatError(f"refused to load {module}.{name} from a data file (only numpy arrays are allowed)")


def _read_object_array(zf: zipfile.ZipFile, member: str) -> np.ndarray:
    """An object-dtype .npy member, unpickled with the array-only unpickler."""
    with zf.open(member) as f:
        version = np.lib.format.read_magic(f)
        shape, _, dtype = (
            np.lib.format.read_array_header_1_0(f) if version == (1, 0) else np.lib.format.read_array_header_2_0(f)
        )
        if not dtype.hasobject:
            raise H36MFormatError(f"{member}: expected an object array")
        obj = _ArrayOnlyUnpickler(f).load()
    if not isinstance(obj, np.ndarray) or obj.shape != shape:
        raise H36MFormatError(f"{member}: the pickled payload is not the declared array")
    return obj


def _load_npz_dict(path: str | Path, key: str) -> dict:
    """Array `key` of an .npz; a 0-d object array (VideoPose3D's nested dicts) is returned as its dict.

    Object arrays are read without np.load(allow_pickle=True): only numpy arrays, dicts, lists, strings and
    numbers may appear, so a crafted file cannot run code (H36MFormatError instead)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"Human3.6M file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            if key not in z.files:
                raise H36MFormatError(f"{p}: missing key {key!r} (has {z.files})")
            try:
                obj = z[key]
            except ValueError as e:
                if "allow_pickle" not in str(e):
                    raise
                with zipfile.ZipFile(p) as zf:
                    obj = _read_object_array(zf, f"{key}.npy")
    except H36MFormatError:
        raise
    except (OSError, ValueError, EOFError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise H36MFormatError(f"{p}: not a readable npz ({type(e).__name__}: {e})") from None
    return obj.item() if obj.dtype == object and obj.shape == () else obj


@dataclass
class H36MCamera:
    """One calibrated camera: intrinsics (+ distortion) and world->camera via quaternion + translation."""

    id: str
    res_w: int
    res_h: int
    focal: np.ndarray  # [2]
    center: np.ndarray  # [2]
    radial: np.ndarray  # [3]
    tangential: np.ndarray  # [2]
    orientation: np.ndarray | None = None  # [4] w, x, y, z (camera -> world)
    translation: np.ndarray | None = None  # [3] metres (camera centre in world)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a unit quaternion (w, x, y, z)."""
    w, x, y, z = np.asarray(q, float) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def load_cameras(path: str | Path) -> dict[str, list[H36MCamera]]:
    """{subject: [4 cameras]} from the camera JSON described in the module docstring."""
    try:
        d = json.loads(Path(path).read_text())
        intr = d["intrinsic"]
        out = {}
        for subj, ext in d["extrinsic"].items():
            cams = []
            for i, e in zip(intr, ext, strict=True):
                cams.append(H36MCamera(
                    id=str(i["id"]), res_w=int(i["res_w"]), res_h=int(i["res_h"]),
                    focal=np.asarray(i["focal_length"], float), center=np.asarray(i["center"], float),
                    radial=np.asarray(i.get("radial_distortion", [0, 0, 0]), float),
                    tangential=np.asarray(i.get("tangential_distortion", [0, 0]), float),
                    orientation=np.asarray(e["orientation"], float),
                    translation=np.asarray(e["translation"], float) / 1000.0,
                ))  # fmt: skip
            out[subj] = cams
        return out
    except FileNotFoundError:
        raise FileNotFoundError(f"camera file not found: {path}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise H36MFormatError(f"{path}: bad camera JSON ({type(e).__name__}: {e})") from None


def world_to_camera_h36m(X: np.ndarray, cam: H36MCamera) -> np.ndarray:
    """World metres [..., 3] -> camera frame: R^T (X - t) with R the camera->world rotation."""
    R = quaternion_to_matrix(cam.orientation)
    return (X - cam.translation) @ R


def project_h36m(Xc: np.ndarray, cam: H36MCamera) -> np.ndarray:
    """Camera-frame points -> pixels with the Brown radial/tangential distortion model."""
    xy = Xc[..., :2] / Xc[..., 2:3]
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    k1, k2, k3 = cam.radial
    p1, p2 = cam.tangential
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([cam.focal[0] * xd + cam.center[0], cam.focal[1] * yd + cam.center[1]], axis=-1)


class H36MData:
    """Human3.6M poses + 2D keypoints (detections or projected ground truth) per subject/action/camera."""

    def __init__(self, path_3d: str | Path, path_2d: str | Path | None = None,
                 cameras: str | Path | dict | None = None):  # fmt: skip
        self.positions_3d = _load_npz_dict(path_3d, "positions_3d")
        if not isinstance(self.positions_3d, dict):
            raise H36MFormatError(f"{path_3d}: positions_3d must be a dict subject -> action -> array")
        self.positions_2d = _load_npz_dict(path_2d, "positions_2d") if path_2d else None
        self.metadata = None
        if path_2d:
            try:
                self.metadata = _load_npz_dict(path_2d, "metadata")
            except H36MFormatError:
                self.metadata = None
        self.cameras = load_cameras(cameras) if isinstance(cameras, (str, Path)) else cameras

    def subjects(self) -> list[str]:
        """Subjects present in the 3D file."""
        return sorted(self.positions_3d)

    def _camera_frame(self, subject: str, action: str) -> list[np.ndarray]:
        v = self.positions_3d[subject][action]
        if isinstance(v, (list, tuple)):  # already per camera, camera frame
            return [np.asarray(a, float)[:, H36M_32_TO_17] if a.shape[1] == 32 else np.asarray(a, float)
                    for a in v]  # fmt: skip
        X = np.asarray(v, float)
        if X.ndim != 3 or X.shape[2] != 3 or X.shape[1] not in (17, 32):
            raise H36MFormatError(f"{subject}/{action}: expected [F, 32|17, 3] positions, got {X.shape}")
        if X.shape[1] == 32:
            X = X[:, H36M_32_TO_17]
        if not self.cameras or subject not in self.cameras:
            raise H36MFormatError(f"no camera extrinsics for {subject}: pass cameras=<json>")
        return [world_to_camera_h36m(X, c) for c in self.cameras[subject]]

    def samples(self, split: str = "train", subjects: list[str] | None = None) -> dict[str, np.ndarray]:
        """Arrays over all frames/cameras of a split ('train' S1,5,6,7,8; 'test' S9,11) or given subjects:
        x_s (normalised 2D), x_s_px, pose3d (root-relative camera frame, m), subject, action, camera, frame."""
        if subjects is None:
            if split not in ("train", "test"):
                raise ValueError("split must be 'train' or 'test' (or pass subjects=[...])")
            subjects = [s for s in (TRAIN_SUBJECTS if split == "train" else TEST_SUBJECTS)
                        if s in self.positions_3d]  # fmt: skip
        out: dict[str, list] = {k: [] for k in ("x_s", "x_s_px", "pose3d", "subject", "action", "camera",
                                                "frame")}  # fmt: skip
        actions: list[str] = []
        for si, subj in enumerate(subjects):
            if subj not in self.positions_3d:
                raise KeyError(f"subject {subj!r} not in the 3D file (has {self.subjects()})")
            for action in sorted(self.positions_3d[subj]):
                cams3d = self._camera_frame(subj, action)
                for ci, Xc in enumerate(cams3d):
                    if self.positions_2d is not None:
                        kp = np.asarray(self.positions_2d[subj][action][ci], float)[..., :2]
                    else:
                        kp = project_h36m(Xc, self.cameras[subj][ci])
                    F = min(len(kp), len(Xc))  # detections can be a frame shorter/longer
                    kp, X = kp[:F], Xc[:F]
                    if self.cameras and subj in self.cameras:
                        w, h = self.cameras[subj][ci].res_w, self.cameras[subj][ci].res_h
                    else:
                        w, h = 1000, 1002 if ci in (0, 2) else 1000
                    out["x_s_px"].append(kp)
                    out["x_s"].append(normalize_screen_coordinates(kp, w, h))
                    out["pose3d"].append(X - X[:, :1])
                    if action not in actions:
                        actions.append(action)
                    out["subject"].append(np.full(F, si))
                    out["action"].append(np.full(F, actions.index(action)))
                    out["camera"].append(np.full(F, ci))
                    out["frame"].append(np.arange(F))
        if not out["x_s"]:
            raise ValueError(f"no Human3.6M data for subjects {subjects}")
        res = {k: np.concatenate(v) for k, v in out.items()}
        for k in ("x_s", "x_s_px", "pose3d"):
            res[k] = res[k].astype(np.float32)
        res["subjects"] = np.array(subjects)
        res["actions"] = np.array(actions)
        return res


class H36MDataset(Dataset):
    """Torch view of `H36MData.samples`: {'x_s', 'pose3d', 'action', 'subject'} (sparse level only)."""

    def __init__(self, data: H36MData, split: str = "train"):
        self.s = data.samples(split)

    def __len__(self) -> int:
        return len(self.s["x_s"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x_s": torch.from_numpy(self.s["x_s"][i]), "pose3d": torch.from_numpy(self.s["pose3d"][i]),
                "action": torch.as_tensor(int(self.s["action"][i])),
                "subject": torch.as_tensor(int(self.s["subject"][i]))}  # fmt: skip
