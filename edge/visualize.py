"""Drawing with OpenCV only (no matplotlib in the frame loop): 2D overlay, 3D panel, HUD, side-by-side.

3D view (fixed, so videos are comparable): camera-frame pose (x right, y down, z forward, metres,
root-relative) rotated by azimuth 45° about the vertical axis and elevation 15°, orthographic,
1 m = 40% of the panel height, pelvis at the panel centre; a floor grid at the lowest joint.
Colours: right side red, left side blue, centre grey (BGR). Tracked frames (`edge.tracking`): one colour per
track id (`track_colour`, a golden-ratio hue walk: stable across frames and runs, neighbouring ids far apart) for
the skeleton and the dense / fine points, the id drawn above each person, and every person in the 3D panel, side
by side (the poses are root-relative: no camera-space position is known), ordered left to right as in the image.
"""

from __future__ import annotations

import math

import numpy as np

from edge.occlusion import DEFAULT_MIN_CONF
from hipart import skeleton

RIGHT, LEFT, CENTRE = (60, 60, 230), (230, 140, 40), (200, 200, 200)
DENSE_COLOUR, FINE_COLOUR = (80, 220, 80), (0, 200, 255)
AZIMUTH_DEG, ELEVATION_DEG, METRES_TO_PANEL = 45.0, 15.0, 0.4


def _bone_colour(child: int) -> tuple[int, int, int]:
    if child in skeleton.RIGHT_JOINTS:
        return RIGHT
    if child in skeleton.LEFT_JOINTS:
        return LEFT
    return CENTRE


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A distinct, stable BGR colour for a track id (hue = id x golden ratio; full saturation and value)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((int(track_id) * 0.6180339887) % 1.0, 0.8, 1.0)
    return int(255 * b), int(255 * g), int(255 * r)


def _shade(colour: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * f)) for c in colour)  # type: ignore[return-value]


def draw_overlay(
    image: np.ndarray,
    kpts: np.ndarray,
    conf: np.ndarray | None = None,
    dense: np.ndarray | None = None,
    fine: np.ndarray | None = None,
    min_conf: float = DEFAULT_MIN_CONF,
    colour: tuple[int, int, int] | None = None,
    label: str | None = None,
) -> np.ndarray:
    """Draw one person's sparse skeleton (+ dense and fine points) in pixels onto image, in place; `colour` (a
    track's) replaces the left/right colours, `label` (its id) is drawn above the head."""
    import cv2

    if fine is not None:
        fc = FINE_COLOUR if colour is None else _shade(colour, 0.6)
        for x, y in np.asarray(fine).reshape(-1, 2):
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(image, (int(x), int(y)), 1, fc, -1, cv2.LINE_AA)
    if dense is not None:
        dc = DENSE_COLOUR if colour is None else colour
        for x, y in np.asarray(dense).reshape(-1, 2):
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(image, (int(x), int(y)), 2, dc, -1, cv2.LINE_AA)
    c = np.ones(17) if conf is None else conf
    for p, j in skeleton.BONES:
        a, b = kpts[p], kpts[j]
        if min(c[p], c[j]) < min_conf or not (np.isfinite(a).all() and np.isfinite(b).all()):
            continue
        bc = _bone_colour(j) if colour is None else colour
        cv2.line(image, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), bc, 2, cv2.LINE_AA)
    for j, (x, y) in enumerate(kpts):
        if c[j] >= min_conf and np.isfinite(x) and np.isfinite(y):
            cv2.circle(image, (int(x), int(y)), 3, (255, 255, 255), -1, cv2.LINE_AA)
    if label:
        seen = (np.asarray(c) >= min_conf) & np.isfinite(kpts).all(-1)
        if seen.any():
            pts = np.asarray(kpts)[seen]
            x, y = int(pts[:, 0].min()), int(pts[:, 1].min()) - 8
            org = (max(x, 2), max(y, 14))
            cv2.putText(image, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 4, cv2.LINE_AA)
            cv2.putText(image, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour or (255, 255, 255), 2, cv2.LINE_AA)
    return image


def view_rotation(azimuth_deg: float = AZIMUTH_DEG, elevation_deg: float = ELEVATION_DEG) -> np.ndarray:
    """3x3 rotation of the fixed 3D view (about the vertical y axis, then the horizontal x axis)."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(e), -math.sin(e)], [0, math.sin(e), math.cos(e)]])
    return (rx @ ry).astype(np.float32)


def project_view(points: np.ndarray, size: int) -> np.ndarray:
    """[...,3] root-relative metres -> [...,2] panel pixels of the fixed view."""
    p = np.asarray(points, np.float32) @ view_rotation().T
    s = METRES_TO_PANEL * size
    return np.stack([size / 2 + s * p[..., 0], size / 2 + s * p[..., 1]], -1)


def render_3d_panel(
    poses3d: np.ndarray,
    size: int,
    banner: str | None = None,
    colours: list[tuple[int, int, int]] | None = None,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """A size x size BGR panel with every [P,17,3] pose in the fixed view: side by side when P > 1 (slot by
    `order`, e.g. the persons' left-to-right rank in the image; scaled down to fit), each in `colours[p]` if given."""
    import cv2

    panel = np.full((size, size, 3), 30, np.uint8)
    poses = np.asarray(poses3d, np.float32).reshape(-1, 17, 3)
    floor_y = float(np.nanmax(poses[..., 1])) if poses.size and np.isfinite(poses).any() else 0.9
    for g in np.linspace(-1.0, 1.0, 5):
        for seg in (([g, floor_y, -1.0], [g, floor_y, 1.0]), ([-1.0, floor_y, g], [1.0, floor_y, g])):
            a, b = project_view(np.array(seg), size)
            cv2.line(panel, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), (70, 70, 70), 1, cv2.LINE_AA)
    n = len(poses)
    slots = np.arange(n) if order is None else np.argsort(np.argsort(np.asarray(order)))
    scale = 1.0 if n <= 1 else min(1.0, 2.0 / n)
    for k, pose in enumerate(poses):
        if not np.isfinite(pose).all():
            continue
        pts = project_view(pose - pose[skeleton.ROOT], size)
        if n > 1:  # side by side: slot centres spread over the panel width
            dx = (slots[k] + 0.5) * size / n - size / 2
            pts = (pts - size / 2) * scale + size / 2 + [dx, 0.0]
        pts = np.clip(pts, -4 * size, 5 * size)
        for p, j in skeleton.BONES:
            a, b = pts[p], pts[j]
            bc = _bone_colour(j) if colours is None else colours[k]
            cv2.line(panel, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), bc, 3, cv2.LINE_AA)
    cv2.putText(panel, "3D (az 45, el 15)", (8, size - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (160, 160, 160), 1)
    if banner:
        draw_banner(panel, "UNTRAINED")
    return panel


def draw_banner(image: np.ndarray, text: str) -> None:
    """A red warning strip across the top of the image, in place."""
    import cv2

    cv2.rectangle(image, (0, 0), (image.shape[1], 22), (0, 0, 170), -1)
    cv2.putText(image, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


def draw_hud(image: np.ndarray, fps: float, stage_ms: dict[str, float], extra: str = "") -> None:
    """FPS and per-stage milliseconds in the bottom-left corner, in place."""
    import cv2

    lines = [f"{fps:5.1f} FPS"] + [f"{k}: {v:6.1f} ms" for k, v in stage_ms.items()]
    if extra:
        lines.append(extra)
    y0 = image.shape[0] - 10 - 18 * (len(lines) - 1)
    for i, line in enumerate(lines):
        y = y0 + 18 * i
        cv2.putText(image, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


def compose(frame: np.ndarray, panel: np.ndarray) -> np.ndarray:
    """Frame and 3D panel side by side (the panel is square, as tall as the frame)."""
    return np.concatenate([frame, panel], 1)


def render_frame(item: object, stage_ms: dict[str, float], fps: float, banner: str | None = None) -> np.ndarray:
    """The output video frame of a pipeline item: overlay | 3D panel, HUD and (if untrained) a banner."""
    f = item.frame  # type: ignore[attr-defined]
    w, h = (f.width, f.height) if f.width and f.height else (640, 480)
    canvas = f.image.copy() if f.image is not None else np.full((h, w, 3), 16, np.uint8)
    res = item.result  # type: ignore[attr-defined]
    poses = np.zeros((0, 17, 3), np.float32)
    tracked = bool(getattr(item, "tracked", False))
    colours: list[tuple[int, int, int]] | None = [] if tracked else None
    n = 0 if res is None else len(res)
    for p in range(n):
        tid = item.track_id(p) if hasattr(item, "track_id") else p  # type: ignore[attr-defined]
        colour = track_colour(tid) if tracked else None
        if colours is not None:
            colours.append(colour)  # type: ignore[arg-type]
        draw_overlay(canvas, item.kpts[p], item.conf[p], item.dense[p], item.fine[p],  # type: ignore[attr-defined]
                     colour=colour, label=f"#{tid}" if tracked else None)  # fmt: skip
    if res is not None:
        poses = res.pose3d
    order = None
    if n > 1:  # 3D panel slots follow the persons' left-to-right order in the image
        order = np.nan_to_num(np.asarray(item.kpts, np.float32)[:n, skeleton.ROOT, 0])  # type: ignore[attr-defined]
    shown = {k: v for k, v in stage_ms.items() if k in ("detect", "hipart", "render", "write")}
    status = item.status  # type: ignore[attr-defined]
    notes = [f"persons tracked: {n}" if tracked else f"persons: {n}"]
    if status != "ok":
        notes.append(status[:60])
    if getattr(item, "temporal", None):
        notes.append(item.temporal)  # type: ignore[attr-defined]
        shown["temporal"] = stage_ms.get("temporal", 0.0)
    draw_hud(canvas, fps, shown, "  ".join(notes))
    if banner:
        draw_banner(canvas, banner.encode("ascii", "replace").decode().replace("?", "-"))
    return compose(canvas, render_3d_panel(poses, canvas.shape[0], banner, colours, order))
