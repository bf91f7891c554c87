"""CPU rendering with numpy + OpenCV: a z-sorted (painter's) triangle rasteriser with Lambert shading,
the cluster picture, `hipart-data show` sample panels and the bundled sample video with ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from hipart.camera import look_at, project_to_pixels, world_to_camera
from hipart.skeleton import BONES, NUM_DENSE, NUM_FINE

# clothing colours (BGR) per bone part: legs = trousers, torso/upper arms = shirt, head/forearms = skin
_SKIN, _SHIRT, _PANTS = (125, 160, 215), (165, 95, 45), (60, 50, 45)
PART_COLOURS = [_PANTS] * 6 + [_SHIRT, _SHIRT, _SKIN, _SKIN, _SHIRT, _SHIRT, _SKIN, _SHIRT, _SHIRT, _SKIN]


def rasterize(verts_cam: np.ndarray, faces: np.ndarray, K: np.ndarray, image: np.ndarray,
              face_colours: np.ndarray, light_cam: np.ndarray = (0.3, -0.6, -0.75),
              ambient: float = 0.35) -> np.ndarray:  # fmt: skip
    """Draw a mesh (camera-frame vertices [V,3]) into `image` (BGR uint8, in place): back-face culling,
    far-to-near painter's order, Lambert shading with a directional light given in camera coordinates."""
    tri = verts_cam[faces]  # [T, 3, 3]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    centre = tri.mean(axis=1)
    visible = (np.sum(n * centre, axis=1) < 0) & (tri[:, :, 2] > 0.05).all(axis=1)
    L = np.asarray(light_cam, float)
    L = -L / np.linalg.norm(L)  # direction towards the light
    shade = ambient + (1 - ambient) * np.clip(n @ L, 0, 1)
    px = project_to_pixels(np.where(tri[..., 2:3] > 0.05, tri, 1.0), K)
    order = np.nonzero(visible)[0]
    order = order[np.argsort(-centre[order, 2], kind="stable")]
    pts = np.round(px * 4).astype(np.int32)  # 2 bits of sub-pixel precision
    cols = np.clip(face_colours[order] * shade[order, None], 0, 255).astype(np.uint8)
    for k, f in enumerate(order):
        cv2.fillConvexPoly(image, pts[f], tuple(int(c) for c in cols[k]), lineType=cv2.LINE_AA, shift=2)
    return image


def _background(w: int, h: int) -> np.ndarray:
    """A plain studio backdrop: vertical grey gradient."""
    g = np.linspace(205, 150, h, dtype=np.float32)[:, None, None]
    return np.broadcast_to(g, (h, w, 3)).astype(np.uint8).copy()


def part_face_colours(faces: np.ndarray, fine_of_vertex: np.ndarray) -> np.ndarray:
    """Clothing colour per face from the bone part of its first vertex."""
    part = fine_of_vertex[faces[:, 0]] // (NUM_FINE // 16)
    return np.asarray(PART_COLOURS, float)[part]


def _palette(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hsv = np.stack([rng.permutation(np.linspace(0, 179, n, endpoint=False)), np.full(n, 200), np.full(n, 230)], 1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2BGR)[0].astype(float)


def render_cluster_picture(path: str | Path, size: int = 520) -> Path:
    """PNG of the 96 fine (left pair) and 48 dense (right pair) clusters on the mean Anny body, front and
    back, with each cluster's mean point."""
    from hipart.data import body_mesh as bm
    from hipart.data.coarsening import load_clusters

    tpl = bm.body_template()
    rest = bm.rest_body(bm.MEAN_PHENOTYPE)
    cl = load_clusters()
    M = cl.averaging_matrix()
    means = M @ rest.vertices
    K = np.array([[1.8 * size, 0, size / 2], [0, 1.8 * size, size / 2], [0, 0, 1]])
    panels = []
    for level, lab, n, off in (("fine", cl.fine_of_vertex, NUM_FINE, 0),
                               ("dense", cl.dense_of_vertex, NUM_DENSE, NUM_FINE)):  # fmt: skip
        cols = _palette(n)[lab[tpl.faces[:, 0]]]
        for az in (0.0, np.pi):
            c = np.array([0.0, 0.5 * float(rest.vertices[:, 1].min() + rest.vertices[:, 1].max()), 0.0])
            eye = c + 3.4 * np.array([np.sin(az), 0.0, np.cos(az)])
            R, t = look_at(eye, c)
            img = np.full((size, size, 3), 255, np.uint8)
            rasterize(world_to_camera(rest.vertices, R, t), tpl.faces, K, img, cols, ambient=0.55)
            p = project_to_pixels(world_to_camera(means[off : off + n], R, t), K)
            for q in p:
                cv2.circle(img, (int(q[0]), int(q[1])), 3, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.putText(img, f"{level} {n} ({'front' if az == 0 else 'back'})", (10, 24),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
            panels.append(img)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.concatenate(panels, axis=1))
    return out


def draw_levels(img: np.ndarray, xs: np.ndarray, xd: np.ndarray | None = None, xf: np.ndarray | None = None,
                scale: float = 1.0) -> np.ndarray:  # fmt: skip
    """Draw fine (small grey), dense (blue) points and the sparse skeleton (green/red sides) on img."""
    s = scale
    if xf is not None:
        for q in xf:
            cv2.circle(img, (int(q[0] * s), int(q[1] * s)), 2, (150, 150, 150), -1, cv2.LINE_AA)
    if xd is not None:
        for q in xd:
            cv2.circle(img, (int(q[0] * s), int(q[1] * s)), 3, (200, 90, 20), -1, cv2.LINE_AA)
    for p, c in BONES:
        col = (40, 160, 40) if c in (4, 5, 6, 11, 12, 13) else ((40, 40, 200) if c in (1, 2, 3, 14, 15, 16)
                                                                else (20, 20, 20))  # fmt: skip
        a, b = xs[p] * s, xs[c] * s
        cv2.line(img, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), col, 2, cv2.LINE_AA)
    return img


def _view3d(p3d_s: np.ndarray, p3d_d: np.ndarray, size: int) -> np.ndarray:
    """A simple 3D view: root-relative points seen from 45 degrees to the side (orthographic)."""
    img = np.full((size, size, 3), 255, np.uint8)
    root = p3d_s[:1]
    a = np.deg2rad(45)
    Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    f = size / 2.4

    def pr(x):
        y = (x - root) @ Ry.T
        return np.stack([y[:, 0] * f + size / 2, y[:, 1] * f + size / 2], 1)

    cv2.putText(img, "3D (camera frame, rotated 45 deg)", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    return draw_levels(img, pr(p3d_s), pr(p3d_d))


def show_samples(root: str | Path, out_dir: str | Path, n: int = 4, split: str = "test", seed: int = 0
                 ) -> list[Path]:  # fmt: skip
    """Render n random samples of a split: the three 2D levels over a blank frame + a 3D view, one PNG each."""
    from hipart.data.dataset import load_manifest, open_arrays

    man = load_manifest(root)
    a = open_arrays(root)
    idx = np.nonzero(np.asarray(a["split"]) == man["splits"].index(split))[0]
    if len(idx) == 0:
        raise ValueError(f"split {split!r} of {root} is empty")
    pick = np.sort(np.random.default_rng(seed).choice(idx, size=min(n, len(idx)), replace=False))
    w, h = man["image_size"]
    size = 500
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in pick:
        img = np.full((size, size, 3), 255, np.uint8)
        cv2.rectangle(img, (0, 0), (size - 1, size - 1), (0, 0, 0), 1)
        draw_levels(img, a["x_s_px"][k], a["x_d_px"][k], a["x_f_px"][k], scale=size / w)
        clip = man["clips"][int(a["clip"][k])]
        cv2.putText(img, f"{clip['clip']} f{int(a['frame'][k])} cam{int(a['camera'][k])} {clip['action']}",
                    (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)  # fmt: skip
        v3 = _view3d(np.asarray(a["p3d_s"][k]), np.asarray(a["p3d_d"][k]), size)
        p = out / f"sample_{split}_{k}.png"
        cv2.imwrite(str(p), np.concatenate([img, v3], axis=1))
        paths.append(p)
    return paths


def _framing(uv: np.ndarray, size: int, fill: float) -> np.ndarray:
    """Intrinsics K that frame normalised image points uv [..., 2] (x/z, y/z) in a size x size image, the larger
    extent (width counted at 0.8) filling `fill` of it, centred."""
    ext = max(float(np.ptp(uv[..., 1])), float(np.ptp(uv[..., 0])) * 0.8)
    f = fill * size / max(ext, 1e-6)
    mid = 0.5 * (uv.reshape(-1, 2).min(0) + uv.reshape(-1, 2).max(0))
    return np.array([[f, 0, size / 2 - f * mid[0]], [0, f, size / 2 - f * mid[1]], [0, 0, 1.0]])


def _mp4_writer(out_stem: str | Path, fps: int, size: int) -> tuple[Path, Path, cv2.VideoWriter]:
    """(stem, <stem>.mp4, an open OpenCV mp4v writer) for a square video; RuntimeError when OpenCV cannot."""
    out = Path(out_stem)
    out.parent.mkdir(parents=True, exist_ok=True)
    mp4 = out.with_suffix(".mp4")
    vw = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    if not vw.isOpened():
        raise RuntimeError("OpenCV cannot write MP4 (mp4v) on this system")
    return out, mp4, vw


def render_sample_video(bvh_dir: str | Path, clip_id: str, out_stem: str | Path, seconds: float = 8.0,
                        seed: int = 0, size: int = 640, fps: int = 30) -> dict:  # fmt: skip
    """Render the Anny mesh performing a clip (lab camera 0 of the build) to <out>.mp4 with its 3D/2D ground
    truth in <out>_gt.npz (pixels of the video, camera-frame metres, intrinsics/extrinsics)."""
    from hipart.data import body_mesh as bm
    from hipart.data.cameras import make_cameras
    from hipart.data.coarsening import load_clusters
    from hipart.data.dataset_build import discover, pose_clip

    jobs = {j.clip_id: j for j in discover(bvh_dir)}
    if clip_id not in jobs:
        raise ValueError(f"clip {clip_id!r} not found in {bvh_dir}")
    job = jobs[clip_id]
    r = pose_clip(job, seed)
    cams = make_cameras("lab", r["sparse"][:, 0], r["rng"])
    tpl = bm.body_template()
    cl = load_clusters()
    F = min(r["sparse"].shape[0], int(seconds * fps))
    R, t = cams.R[0], cams.t[0]
    # same viewpoint as the build's lab camera 0, focal chosen so that the body fills ~60 % of the frame
    Xc = world_to_camera(r["fine"][:F], R, t)
    uv = Xc[..., :2] / Xc[..., 2:3]
    K = _framing(uv, size, 0.6)
    cols = part_face_colours(tpl.faces, cl.fine_of_vertex)
    out, mp4, vw = _mp4_writer(out_stem, fps, size)
    bg = _background(size, size)
    # floor: a darker band below the feet's image row is drawn by the gradient; no extra geometry
    for f in range(F):
        v = bm.skin_vertices(tpl, r["rest"], _frame_pose(r["pose"], f), 0)
        img = bg.copy()
        rasterize(world_to_camera(v, R, t), tpl.faces, K, img, cols)
        vw.write(img)
    vw.release()
    gt = {}
    for lvl, name in (("sparse", "s"), ("dense", "d"), ("fine", "f")):
        Xc = world_to_camera(r[lvl][:F], R, t)
        gt[f"p3d_{name}"] = Xc.astype(np.float32)
        gt[f"x_{name}_px"] = project_to_pixels(Xc, K).astype(np.float32)
    np.savez_compressed(out.with_name(out.name + "_gt.npz"), K=K, R=R, t=t, width=size, height=size, fps=fps,
                        clip=clip_id, body_shape=json.dumps(r["phenotype"]), **gt)  # fmt: skip
    return {"video": str(mp4), "ground_truth": str(out.with_name(out.name + "_gt.npz")), "frames": F,
            "fps": fps, "size": size, "clip": clip_id, "bytes": mp4.stat().st_size}  # fmt: skip


def render_multi_person_video(bvh_dir: str | Path, clip_ids: list[str], out_stem: str | Path, seconds: float = 5.0,
                              seed: int = 0, size: int = 640, fps: int = 30, spacing: float = 1.1,
                              solo: int | None = None) -> dict:  # fmt: skip
    """Several Anny bodies (one per clip, each its own sampled shape and shirt colour) side by side, `spacing` m
    apart at the start, each moving as its clip does (so they may cross and occlude each other), rendered from one
    lab camera into <out>.mp4, with per-person ground truth in <out>_gt.npz: p3d_s [F, P, 17, 3] camera-frame
    metres, x_s_px [F, P, 17, 2] pixels (and dense / fine), `ids` [P] (the clip of each person), K, R, t.
    `solo=i` draws only person i (same camera, same ground truth for all): the single-person baseline on the same
    body and view."""
    from hipart.data import body_mesh as bm
    from hipart.data.cameras import make_cameras
    from hipart.data.coarsening import load_clusters
    from hipart.data.dataset_build import discover, pose_clip

    if not 2 <= len(clip_ids) <= 6:
        raise ValueError(f"give 2 to 6 clips for a multi-person video, got {len(clip_ids)}")
    jobs = {j.clip_id: j for j in discover(bvh_dir)}
    missing = [c for c in clip_ids if c not in jobs]
    if missing:
        raise ValueError(f"clip(s) {missing} not found in {bvh_dir}")
    people = [pose_clip(jobs[c], seed + i) for i, c in enumerate(clip_ids)]
    F = min(min(p["sparse"].shape[0] for p in people), int(seconds * fps))
    n = len(people)
    starts = [np.array([-p["sparse"][0, 0, 0], 0.0, -p["sparse"][0, 0, 2]]) for p in people]  # each starts at 0
    centre = np.mean([p["sparse"][:F, 0] + s for p, s in zip(people, starts, strict=True)], axis=0)
    cams = make_cameras("lab", centre, people[0]["rng"])
    R, t = cams.R[0], cams.t[0]
    right = np.array([R[0, 0], 0.0, R[0, 2]])  # the camera's right, on the ground plane (world y is up)
    right /= max(np.linalg.norm(right), 1e-9)
    # side by side across the view (so nobody starts hidden behind another), each clip's own motion kept
    shifts = [s + (i - (n - 1) / 2) * spacing * right for i, s in enumerate(starts)]
    fine = np.stack([p["fine"][:F] + s for p, s in zip(people, shifts, strict=True)], 1)  # [F, P, 96, 3]
    uv = world_to_camera(fine, R, t)
    uv = uv[..., :2] / uv[..., 2:3]
    K = _framing(uv, size, 0.85)
    tpl = bm.body_template()
    cl = load_clusters()
    base = part_face_colours(tpl.faces, cl.fine_of_vertex)
    shirts = _palette(n, seed=11)
    colours = []
    for i in range(n):
        c = base.copy()
        c[np.all(base == np.asarray(_SHIRT, base.dtype), axis=1)] = shirts[i]  # a shirt colour per person
        colours.append(c)
    out, mp4, vw = _mp4_writer(out_stem, fps, size)
    bg = _background(size, size)
    for fr in range(F):
        drawn = range(n) if solo is None else [solo]
        verts = [bm.skin_vertices(tpl, people[i]["rest"], _frame_pose(people[i]["pose"], fr), 0) + shifts[i]
                 for i in drawn]  # fmt: skip
        nv = verts[0].shape[0]
        all_faces = np.concatenate([tpl.faces + k * nv for k in range(len(verts))])
        cols = np.concatenate([colours[i] for i in drawn])
        img = bg.copy()
        rasterize(world_to_camera(np.concatenate(verts), R, t), all_faces, K, img, cols)  # one depth order
        vw.write(img)
    vw.release()
    gt = {}
    for lvl, name in (("sparse", "s"), ("dense", "d"), ("fine", "f")):
        pts = np.stack([p[lvl][:F] + s for p, s in zip(people, shifts, strict=True)], 1)
        Xc = world_to_camera(pts, R, t)
        gt[f"p3d_{name}"] = Xc.astype(np.float32)
        gt[f"x_{name}_px"] = project_to_pixels(Xc, K).astype(np.float32)
    gt_path = out.with_name(out.name + "_gt.npz")
    np.savez_compressed(gt_path, K=K, R=R, t=t, width=size, height=size, fps=fps, ids=np.asarray(clip_ids),
                        body_shapes=np.asarray([json.dumps(p["phenotype"]) for p in people]), **gt)  # fmt: skip
    return {"video": str(mp4), "ground_truth": str(gt_path), "frames": F, "persons": n, "fps": fps, "size": size,
            "clips": list(clip_ids), "bytes": mp4.stat().st_size}  # fmt: skip


def _frame_pose(pose, f: int):
    from hipart.data.body_mesh import BonePose

    return BonePose(pose.G[f : f + 1], pose.heads[f : f + 1])
