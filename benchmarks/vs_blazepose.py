"""HiPART end to end against BlazePose's own 3D on the same frames: the bundled clip (or any `hipart-data video` clip).

  python benchmarks/vs_blazepose.py --out benchmarks/results/vs_blazepose_sample_clip.json
  python benchmarks/vs_blazepose.py --video my.mp4 --gt my_gt.npz --checkpoint runs/x/hipart.pt

Per frame: BlazePose (the runtime's detector, video mode) gives 2D keypoints and `pose_world_landmarks`; the
2D goes through HiPART exactly as `hipart-run` sends it (normalised, low-confidence joints masked). Both 3D
poses are scored on the 12 limb joints, mid-hip centred, against the clip's ground truth: MPJPE and PA-MPJPE
(mm). HiPART's dense/fine points are scored in pixels against the mesh-derived ground truth. With the clip's
intrinsics K, HiPART's root position in camera space (edge/camera_space.py, from its 3D and BlazePose's 2D) is
scored against the true pelvis: metres and % of depth. Frames where BlazePose finds no person are counted and left
out of all.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from edge.camera_space import Intrinsics, root_translation
from edge.detectors.blazepose import BLAZEPOSE_OF_LIMB, LIMB_JOINTS, BlazePoseDetector
from edge.sources import sample_path
from hipart.camera import image_coordinates, normalize_screen_coordinates
from hipart.metrics import mpjpe, p_mpjpe


def limb_centred(p: np.ndarray) -> np.ndarray:
    """[N, 12, 3] limb joints (hips first: right hip 0, left hip 3) -> mid-hip centred."""
    return p - 0.5 * (p[:, 0:1] + p[:, 3:4])


def main(argv: list[str] | None = None) -> dict:
    import cv2
    import torch

    from edge.backends.torch_backend import TorchBackend
    from hipart.checkpoint import bundled_checkpoint, load_checkpoint

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video", type=Path, help="video (default: the bundled sample clip)")
    p.add_argument("--gt", type=Path, help="its ground truth npz from `hipart-data video` (default: the bundled one)")
    p.add_argument("--checkpoint", type=Path, help="HiPART checkpoint (default: the bundled model)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    video = a.video or sample_path(clip=True)
    gt_path = a.gt or video.with_name(video.stem + "_gt.npz")
    gt = np.load(gt_path)
    ckpt = a.checkpoint or bundled_checkpoint()
    model, _ = load_checkpoint(ckpt)
    backend = TorchBackend(model)
    det = BlazePoseDetector(video=True)
    cap = cv2.VideoCapture(str(video))
    w, h = int(gt["width"]), int(gt["height"])
    hip3d, bp3d, keep, dense_err, fine_err, roots = [], [], [], [], [], []
    k = Intrinsics(gt["K"][0, 0], gt["K"][1, 1], gt["K"][0, 2], gt["K"][1, 2])
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok or i >= len(gt["p3d_s"]):
            break
        d = det(frame)
        if len(d.keypoints) and det.world is not None:
            x = normalize_screen_coordinates(d.keypoints[:1].astype(np.float32), w, h)
            r = backend.run(x, d.conf[:1])
            hip3d.append(r.pose3d[0][list(LIMB_JOINTS)])
            bp3d.append(det.world[list(BLAZEPOSE_OF_LIMB)])
            dense_err.append(np.linalg.norm(image_coordinates(r.dense[0], w, h) - gt["x_d_px"][i], axis=-1).mean())
            fine_err.append(np.linalg.norm(image_coordinates(r.fine[0], w, h) - gt["x_f_px"][i], axis=-1).mean())
            roots.append(root_translation(r.pose3d[:1], d.keypoints[:1], d.conf[:1], k, min_conf=0.3)[0])
            keep.append(i)
        i += 1
    det.close()
    truth = limb_centred(gt["p3d_s"][keep][:, list(LIMB_JOINTS)])
    rows = {}
    for name, pred in (("hipart", np.stack(hip3d)), ("blazepose_world", np.stack(bp3d))):
        pred = limb_centred(pred)
        rows[name] = {"mpjpe_mm": float(mpjpe(pred, truth).mean() * 1000),
                      "pa_mpjpe_mm": float(p_mpjpe(pred, truth).mean() * 1000)}
    rows["hipart"].update(dense_px=float(np.mean(dense_err)), fine_px=float(np.mean(fine_err)))
    true_root = gt["p3d_s"][keep][:, 0]  # the ground truth is in camera space; joint 0 is the pelvis
    err = np.linalg.norm(np.stack(roots) - true_root, axis=-1)
    depth_pct = np.abs(np.stack(roots)[:, 2] - true_root[:, 2]) / true_root[:, 2] * 100
    rows["hipart"].update(root_err_m_mean=float(np.nanmean(err)), root_err_m_median=float(np.nanmedian(err)),
                          root_depth_err_pct_mean=float(np.nanmean(depth_pct)),
                          root_err_pct_of_depth_mean=float(np.nanmean(err / true_root[:, 2] * 100)),
                          true_depth_m_mean=float(true_root[:, 2].mean()))  # fmt: skip
    res = {"video": str(video), "checkpoint": str(ckpt), "frames": i, "frames_scored": len(keep),
           "joints": "12 limb joints, mid-hip centred", "rows": rows,
           "pa_ratio_hipart_vs_blazepose": rows["hipart"]["pa_mpjpe_mm"] / rows["blazepose_world"]["pa_mpjpe_mm"],
           "machine": platform.machine(), "command": "python benchmarks/vs_blazepose.py " + " ".join(argv or [])}
    for name, r in rows.items():
        extra = (f", dense {r['dense_px']:.1f} px, fine {r['fine_px']:.1f} px; root {r['root_err_m_mean']:.2f} m "
                 f"({r['root_err_pct_of_depth_mean']:.1f} % of depth)") if "dense_px" in r else ""  # fmt: skip
        print(f"{name:16s} MPJPE {r['mpjpe_mm']:6.1f} mm  PA-MPJPE {r['pa_mpjpe_mm']:6.1f} mm{extra}")
    print(f"{len(keep)}/{i} frames scored; HiPART PA-MPJPE = {res['pa_ratio_hipart_vs_blazepose']:.2f} x BlazePose's")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":

    main()
