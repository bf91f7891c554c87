"""Generic ONNX 2D-pose detector plug-in: bring an RTMPose (top-down) or YOLO-pose (one-stage) model.

layout='topdown': each person box (the whole frame when no boxes are given) is warped to the model's
    input size; outputs are either SimCC (two outputs [N,17,Wx], [N,17,Hy]) or heatmaps [N,17,h,w].
layout='yolo': one pass over the letterboxed frame; output [1, 5 + 17*3, A] (cx, cy, w, h, score,
    then x, y, score per COCO keypoint) -> score threshold + NMS; or already decoded [N, 17, 3].
Keypoints are COCO-17 (the order every public model uses) and converted to the 17-joint order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edge.detectors.base import Detections, Detector, DetectorError
from edge.detectors.coco import to_h36m

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0..255 (RTMPose)
IMAGENET_STD = (58.395, 57.12, 57.375)


def decode_heatmaps(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N,17,h,w] heatmaps -> argmax keypoints [N,17,2] in heatmap pixels + peak values [N,17]."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx = flat.argmax(-1)
    score = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    return np.stack([idx % w, idx // w], -1).astype(np.float32), score.astype(np.float32)


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, split_ratio: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """SimCC [N,17,Wx], [N,17,Hy] -> keypoints [N,17,2] in input pixels + confidence [N,17]."""
    x = simcc_x.argmax(-1).astype(np.float32) / split_ratio
    y = simcc_y.argmax(-1).astype(np.float32) / split_ratio
    score = np.minimum(simcc_x.max(-1), simcc_y.max(-1)).astype(np.float32)
    return np.stack([x, y], -1), score


def box_transform(box: np.ndarray, size: tuple[int, int], padding: float = 1.25) -> np.ndarray:
    """2x3 affine mapping the (padded, aspect-corrected) box [x0,y0,x1,y1] onto an input of size (w, h)."""
    w_in, h_in = size
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    bw, bh = (box[2] - box[0]) * padding, (box[3] - box[1]) * padding
    if bw / max(bh, 1e-6) > w_in / h_in:
        bh = bw * h_in / w_in
    else:
        bw = bh * w_in / h_in
    s = w_in / max(bw, 1e-6)
    return np.array([[s, 0, w_in / 2 - s * cx], [0, s, h_in / 2 - s * cy]], np.float32)


def invert_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map [...,2] points from the warped input back to the image through the inverse of affine m."""
    a = np.vstack([m, [0, 0, 1]]).astype(np.float64)
    inv = np.linalg.inv(a)[:2]
    return (pts @ inv[:, :2].T + inv[:, 2]).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.5) -> list[int]:
    """Greedy non-maximum suppression over [N,4] xyxy boxes; indices kept, best first."""
    order = list(np.argsort(-scores))
    keep = []
    area = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if not order:
            break
        rest = np.array(order)
        xx0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = (xx1 - xx0).clip(0) * (yy1 - yy0).clip(0)
        ov = inter / (area[i] + area[rest] - inter + 1e-9)
        order = [int(j) for j, o in zip(rest, ov, strict=True) if o <= iou]
    return keep


def _dims(shape: Any) -> list[int | None]:
    """An ONNX shape with symbolic dimensions as None."""
    return [d if isinstance(d, int) else None for d in (shape or [])]


def _check_pose_model(path: Path, layout: str, inp: Any, outs: list[Any]) -> None:
    """DetectorError unless the model has an image input and 17-keypoint outputs of `layout`'s form."""
    i = _dims(inp.shape)
    o = [_dims(x.shape) for x in outs]
    about = f"input {inp.name} {inp.shape}, outputs {[list(x.shape or []) for x in outs]}"
    if len(i) != 4 or i[1] not in (3, None) or "float" not in str(inp.type):
        raise DetectorError(f"{path} is not an image pose model: expected one float [N,3,H,W] input ({about})")
    if layout == "topdown":
        simcc = len(o) >= 2 and len(o[0]) == 3 and len(o[1]) == 3 and o[0][1] in (17, None)
        heatmaps = len(o) >= 1 and len(o[0]) == 4 and o[0][1] in (17, None)
        if not (simcc or heatmaps):
            raise DetectorError(f"{path} is not a top-down 17-keypoint model: expected SimCC [N,17,W] x 2 or "
                                f"heatmaps [N,17,h,w] ({about})")  # fmt: skip
    else:
        ok = len(o) >= 1 and len(o[0]) == 3 and (o[0][-2:] in ([17, 3], [17, None]) or 56 in o[0] or None in o[0][1:])
        if not ok:
            raise DetectorError(f"{path} is not a YOLO-pose model: expected [N,56,A], [N,A,56] or [N,17,3] ({about})")


class OnnxPoseDetector(Detector):
    """A user's ONNX pose model behind the Detector interface (see module docstring for layouts)."""

    name = "onnx"

    def __init__(
        self,
        model: str | os.PathLike,
        layout: str = "topdown",
        keypoint_format: str = "coco17",
        score_threshold: float = 0.3,
        box_detector: Any = None,
        threads: int | None = None,
    ):
        try:
            import onnxruntime as ort
        except ImportError:
            raise DetectorError("the ONNX detector needs onnxruntime") from None
        if layout not in ("topdown", "yolo"):
            raise DetectorError(f"unknown ONNX detector layout {layout!r}; choose 'topdown' or 'yolo'")
        path = Path(model)
        if not path.is_file():
            raise DetectorError(f"detector model not found: {path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise DetectorError(f"cannot load detector model {path} (corrupt or not ONNX): {str(e)[:200]}") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        _check_pose_model(path, layout, inp, self.session.get_outputs())
        shape = inp.shape
        h = shape[2] if isinstance(shape[2], int) else 256
        w = shape[3] if isinstance(shape[3], int) else 192
        self.input_size = (int(w), int(h))
        self.layout, self.format, self.threshold = layout, keypoint_format, score_threshold
        self.box_detector = box_detector  # callable image -> [N,4] xyxy boxes; None = whole frame

    def _blob(self, img: np.ndarray, mean: tuple | None, std: tuple | None) -> np.ndarray:
        x = img[..., ::-1].astype(np.float32)  # BGR -> RGB
        if mean is not None:
            x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        else:
            x = x / 255.0
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def _topdown(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        h, w = image.shape[:2]
        boxes = self.box_detector(image) if self.box_detector is not None else np.array([[0, 0, w, h]], np.float32)
        kps, confs = [], []
        for box in np.asarray(boxes, np.float32).reshape(-1, 4):
            m = box_transform(box, self.input_size, padding=1.25 if self.box_detector is not None else 1.0)
            crop = cv2.warpAffine(image, m, self.input_size, flags=cv2.INTER_LINEAR)
            outs = self.session.run(None, {self.input_name: self._blob(crop, IMAGENET_MEAN, IMAGENET_STD)})
            if len(outs) >= 2 and outs[0].ndim == 3:
                split = outs[0].shape[-1] / self.input_size[0]
                pts, sc = decode_simcc(outs[0], outs[1], split)
            elif outs[0].ndim == 4:
                hm = outs[0]
                pts, sc = decode_heatmaps(hm)
                pts = pts * np.array([self.input_size[0] / hm.shape[3], self.input_size[1] / hm.shape[2]], np.float32)
            else:
                raise DetectorError(f"unsupported top-down output shapes {[o.shape for o in outs]}")
            kps.append(invert_affine(m, pts[0]))
            confs.append(sc[0])
        if not kps:
            return np.zeros((0, 17, 2), np.float32), np.zeros((0, 17), np.float32)
        return np.stack(kps), np.stack(confs)

    def _yolo(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        h, w = image.shape[:2]
        w_in, h_in = self.input_size
        s = min(w_in / w, h_in / h)
        m = np.array([[s, 0, (w_in - s * w) / 2], [0, s, (h_in - s * h) / 2]], np.float32)
        img = cv2.warpAffine(image, m, (w_in, h_in), borderValue=(114, 114, 114))
        out = self.session.run(None, {self.input_name: self._blob(img, None, None)})[0]
        if out.ndim == 3 and out.shape[-2:] == (17, 3):  # already decoded [N,17,3]
            kps = out
        else:
            pred = out[0].T if out.shape[1] < out.shape[2] else out[0]  # -> [A, 56]
            pred = pred[pred[:, 4] >= self.threshold]
            if len(pred) == 0:
                return np.zeros((0, 17, 2), np.float32), np.zeros((0, 17), np.float32)
            cx, cy, bw, bh = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
            boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
            keep = nms(boxes, pred[:, 4])
            kps = pred[keep, 5 : 5 + 51].reshape(-1, 17, 3)
        pts = invert_affine(m, kps[..., :2].astype(np.float32))
        return pts, kps[..., 2].astype(np.float32)

    def __call__(self, image: np.ndarray) -> Detections:
        """BGR image -> persons in the 17-joint order."""
        pts, conf = self._topdown(image) if self.layout == "topdown" else self._yolo(image)
        k, c = to_h36m(pts, conf, self.format)
        return Detections(k, c)
