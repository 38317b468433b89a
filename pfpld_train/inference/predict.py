"""Find faces, predict 98 landmarks and head pose, draw overlays.

Pipeline per image:

1. faces come from the bundled RetinaFace detector (:class:`RetinaFaceDetector`, OpenCV dnn, anchors and
   boxes decoded here) or from given boxes ``x_min, y_min, x_max, y_max`` (pixels);
2. the model runs on the crop of the box (same rule as the standard crop, :func:`~pfpld_train.data.crop.box_crop_params`),
   then ``refine`` more times on the standard crop of its own landmarks, so the final pass sees the
   landmark-defined framing the network was trained and evaluated on;
3. landmarks are mapped back to image pixels (``p * S + top-left``); pose is pitch, yaw, roll in degrees
   (the project's convention, see ``docs/guides/training.md``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landmark_unify.core.layouts import get_layout
from landmark_unify.core.pose import matrix_from_euler
from landmark_unify.errors import LandmarkUnifyError
from landmark_unify.io import write_text_atomic
from landmark_unify.report.colors import (
    AXIS_COLOURS,
    axis_legend_items,
    draw_axis,
    group_legend_items,
    point_colours,
    with_legend,
)

from ..data.crop import box_crop_params, crop_image, crop_to_image, standard_crop_params

__all__ = ["DETECTOR_DIR", "Face", "PredictError", "RetinaFaceDetector", "draw_overlay", "pose_axes",
           "predict_image"]

DETECTOR_DIR = Path(__file__).resolve().parents[1] / "assets" / "retinaface_mnet025"

#: BGR colour of the detector's face boxes in overlays (the landmark and axis colours come from
#: landmark_unify.report.colors)
BOX_COLOUR = (200, 200, 200)

#: Anchor sides (pixels of the network input) per stride, in output-channel order.
_ANCHORS = {32: (512.0, 256.0), 16: (128.0, 64.0), 8: (32.0, 16.0)}


class PredictError(LandmarkUnifyError):
    """An image, a box or the detector cannot be used."""


def _cv_reason(exc) -> str:
    """The reason of an OpenCV error, without its source-file preamble."""
    text = str(exc).strip()
    return text.split("error: ", 1)[-1].split(") ", 1)[-1] if "error: " in text else text


class RetinaFaceDetector:
    """RetinaFace MobileNet-0.25 (Caffe, BSD-2) run with OpenCV's dnn module.

    :meth:`detect` takes an RGB ``(H, W, 3) uint8`` image and returns ``boxes (M, 4) float32`` (x_min, y_min,
    x_max, y_max, image pixels), ``scores (M,) float32`` and ``keypoints (M, 5, 2) float32`` (eyes, nose,
    mouth corners), sorted by score.
    """

    def __init__(self, folder: str | os.PathLike = DETECTOR_DIR, input_size: int = 640,
                 threshold: float = 0.6, nms: float = 0.4) -> None:
        import cv2

        folder = Path(folder)
        proto, weights = folder / "mnet.prototxt", folder / "mnet.caffemodel"
        if not proto.is_file() or not weights.is_file():
            raise PredictError(f"{folder}: detector files mnet.prototxt / mnet.caffemodel not found")
        try:
            self.net = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
        except cv2.error as exc:
            raise PredictError(f"{folder}: OpenCV cannot load the detector from mnet.prototxt and mnet.caffemodel "
                               f"(damaged or not a Caffe model): {_cv_reason(exc)}") from None
        self.input_size, self.threshold, self.nms = int(input_size), float(threshold), float(nms)
        self.outputs = [f"face_rpn_{k}_stride{s}" for s in _ANCHORS for k in ("cls_prob_reshape", "bbox_pred",
                                                                              "landmark_pred")]
        missing = [o for o in self.outputs if self.net.getLayerId(o) < 0]
        if missing:
            raise PredictError(f"{folder / 'mnet.prototxt'}: not the RetinaFace detector this command runs: no "
                               f"layer {missing[0]!r} ({len(missing)} of its {len(self.outputs)} outputs missing)")
        self.folder = folder
        try:  # weights that parse but do not fit the layers fail only when run: try it once, on a small blank
            self.net.setInput(np.zeros((1, 3, 32, 32), np.float32))
            self.net.forward(self.outputs)
        except cv2.error as exc:
            raise PredictError(f"{folder}: OpenCV cannot load the detector from mnet.prototxt and mnet.caffemodel "
                               f"(its weights do not fit its layers): {_cv_reason(exc)}") from None

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import cv2

        h, w = image.shape[:2]
        scale = self.input_size / max(h, w)
        rw, rh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        resized = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_LINEAR)
        ph, pw = -(-rh // 32) * 32, -(-rw // 32) * 32
        canvas = np.zeros((ph, pw, 3), np.float32)
        canvas[:rh, :rw] = resized
        self.net.setInput(canvas.transpose(2, 0, 1)[None])
        try:
            outs = self.net.forward(self.outputs)
        except cv2.error as exc:
            raise PredictError(f"{self.folder}: the detector failed to run: {_cv_reason(exc)}") from None
        boxes, scores, kps = [], [], []
        for k, stride in enumerate(_ANCHORS):
            cls, reg, lmk = outs[3 * k : 3 * k + 3]
            a = len(_ANCHORS[stride])
            fh, fw = cls.shape[2:]
            score = cls[0, a:].transpose(1, 2, 0).reshape(-1)
            delta = reg[0].transpose(1, 2, 0).reshape(-1, 4)
            ldelta = lmk[0].transpose(1, 2, 0).reshape(-1, 5, 2)
            ys, xs = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
            ctr = np.stack([xs, ys], -1).reshape(-1, 1, 2) * stride + 7.5
            ctr = np.repeat(ctr, a, axis=1).reshape(-1, 2)
            side = np.tile(np.asarray(_ANCHORS[stride]), fh * fw)
            keep = score >= self.threshold
            if not keep.any():
                continue
            c, s, d, ld = ctr[keep], side[keep][:, None], delta[keep], ldelta[keep]
            pc = c + d[:, :2] * s
            ps = np.exp(np.clip(d[:, 2:], -10, 10)) * s
            boxes.append(np.concatenate([pc - 0.5 * (ps - 1), pc + 0.5 * (ps - 1)], 1))
            kps.append(c[:, None, :] + ld * s[:, None, :])
            scores.append(score[keep])
        if not boxes:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        b = np.concatenate(boxes) / scale
        s = np.concatenate(scores)
        kp = np.concatenate(kps) / scale
        order = _nms(b, s, self.nms)
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, w - 1)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, h - 1)
        return b[order].astype(np.float32), s[order].astype(np.float32), kp[order].astype(np.float32)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    order = np.argsort(-scores)
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(boxes[i, 0], boxes[order[1:], 0])
        yy1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[i, 2], boxes[order[1:], 2])
        yy2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.clip(xx2 - xx1 + 1, 0, None) * np.clip(yy2 - yy1 + 1, 0, None)
        ov = inter / (area[i] + area[order[1:]] - inter)
        order = order[1:][ov <= iou]
    return np.asarray(keep, np.int64)


@dataclass
class Face:
    """One face: ``box`` (4,) pixels, ``score`` (detector, or None for a given box), ``landmarks`` (98, 2)
    image pixels, ``pose`` (3,) pitch, yaw, roll degrees (None if the model has no pose output),
    ``crop`` (3,) the final standard crop ``x0, y0, S``."""

    box: np.ndarray
    score: float | None
    landmarks: np.ndarray
    pose: np.ndarray | None
    crop: np.ndarray

    def to_dict(self) -> dict:
        d = {
            "box": [round(float(v), 2) for v in self.box],
            "score": None if self.score is None else round(float(self.score), 4),
            "landmarks": np.round(self.landmarks.astype(np.float64), 2).tolist(),
            "crop": [int(v) for v in self.crop],
            "pose": None,
        }
        if self.pose is not None:
            d["pose"] = {k: round(float(v), 2) for k, v in zip(("pitch", "yaw", "roll"), self.pose)}
        return d


def predict_image(model, image: np.ndarray, boxes: np.ndarray | None = None, detector: RetinaFaceDetector | None = None,
                  refine: int = 1, max_faces: int | None = None) -> list[Face]:
    """Faces in one RGB ``(H, W, 3) uint8`` image (see the module docstring).

    ``model``: callable as in :func:`pfpld_train.evaluation.evaluate.load_model`. Either ``boxes`` ``(M, 4)`` or a
    ``detector`` must be given.
    """
    if boxes is None:
        if detector is None:
            raise PredictError("give boxes or a detector")
        boxes, scores, _ = detector.detect(image)
    else:
        boxes = np.asarray(boxes, np.float64)
        if boxes.ndim == 1 and boxes.size == 4:
            boxes = boxes[None]
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise PredictError(f"boxes must be (M, 4) x_min, y_min, x_max, y_max; got shape {boxes.shape}")
        scores = np.full(len(boxes), np.nan)
    if max_faces is not None:
        boxes, scores = boxes[:max_faces], scores[:max_faces]
    if not len(boxes):
        return []
    params = box_crop_params(boxes)
    pose = None
    for _ in range(1 + max(0, refine)):
        crops = np.stack([crop_image(image, p) for p in params])
        lm, pose = model(crops)
        pts = crop_to_image(lm, params)
        last = params
        params = standard_crop_params(pts)
    return [
        Face(box=np.asarray(boxes[i], np.float32), score=None if np.isnan(scores[i]) else float(scores[i]),
             landmarks=pts[i], pose=None if pose is None else np.asarray(pose[i], np.float32), crop=last[i])
        for i in range(len(boxes))
    ]


def pose_axes(pose_deg: Sequence[float], length: float) -> np.ndarray:
    """Image-plane directions ``(3, 2)`` of the head's x (subject's left, image right when frontal), y (up)
    and z (toward the camera) axes, scaled by ``length`` pixels.

    Convention (FACTS section 4): ``R = Rz(roll) Ry(yaw) Rx(pitch)``; a model point ``X`` projects to
    ``(R^T X)[:2]`` with the image row axis flipped.
    """
    v = matrix_from_euler(np.asarray(pose_deg, np.float64)[None])[0].T  # columns: rotated unit axes
    return np.stack([v[0], -v[1]], 1) * length


def label_position(size: tuple[int, int], box, segments, image_hw: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of a text label of ``size`` (w, h) pixels near a face ``box`` (x1, y1, x2, y2) that no
    drawn line segment ``((x, y), (x, y))`` (the pose axes) crosses and that stays in the image: above the
    box, then below it, then right-aligned above it, then inside its top; the first inside the image when
    every place is crossed."""
    w, h = size
    x1, y1, x2, y2 = box
    height, width = image_hw
    places = [(x1, y1 - 4 - h), (x1, y2 + 4), (x2 - w, y1 - 4 - h), (x1 + 4, y1 + 4)]
    inside = [(min(max(int(x), 0), max(width - w, 0)), min(max(int(y), 0), max(height - h, 0))) for x, y in places]
    t = np.linspace(0.0, 1.0, 64)[:, None]

    def crossed(x, y):
        for a, b in segments:
            p = np.asarray(a, np.float64) + t * (np.asarray(b, np.float64) - np.asarray(a, np.float64))
            if ((p[:, 0] >= x - 2) & (p[:, 0] <= x + w + 2) & (p[:, 1] >= y - 2) & (p[:, 1] <= y + h + 2)).any():
                return True
        return False

    for (x, y), (cx, cy) in zip(places, inside):
        if (x, y) == (cx, cy) and not crossed(x, y):
            return cx, cy
    return next(((cx, cy) for cx, cy in inside if not crossed(cx, cy)), inside[0])


def draw_overlay(image: np.ndarray, faces: Sequence[Face], legend: bool = True) -> np.ndarray:
    """BGR ``uint8`` copy of the RGB ``image`` with boxes, landmarks coloured by group and pose axes (the
    project's one colour scheme, :mod:`landmark_unify.report.colors`, as in ``landmark_unify render``) and
    the angles written above each face; with faces and ``legend``, a legend band naming the colours is
    stacked under the photo (the photo's pixels keep their coordinates)."""
    import cv2

    out = np.ascontiguousarray(image[..., ::-1]).copy()
    colours = point_colours("wflw98")
    nose_tip = get_layout("wflw98").index("nose_bridge_3")
    scale = max(1.0, max(image.shape[:2]) / 640)
    t = max(1, int(round(scale)))
    for f in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in f.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOUR, t)
        for k, (x, y) in enumerate(f.landmarks):
            cv2.circle(out, (int(round(x)), int(round(y))), t, tuple(int(c) for c in colours[k]), -1, cv2.LINE_AA)
        if f.pose is not None:
            origin = f.landmarks[nose_tip]
            size = float(np.ptp(f.landmarks[:, 0]))
            ends = origin + pose_axes(f.pose, 0.5 * size)
            for end, colour in zip(ends, AXIS_COLOURS):
                draw_axis(out, origin, end, colour, t)
            text = "p{:+d} y{:+d} r{:+d}".format(*(round(float(a)) for a in f.pose))  # +0, never -0
            font, fs = cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale
            (tw, th), base = cv2.getTextSize(text, font, fs, t)
            x, y = label_position((tw, th + base), (x1, y1, x2, y2), [(origin, e) for e in ends], out.shape[:2])
            cv2.putText(out, text, (x, y + th), font, fs, (0, 0, 0), t + 2, cv2.LINE_AA)  # a dark outline
            cv2.putText(out, text, (x, y + th), font, fs, (255, 255, 255), t, cv2.LINE_AA)
    if faces and legend:
        posed = any(f.pose is not None for f in faces)
        rows = [("landmarks:", group_legend_items())] + ([("pose axes:", axis_legend_items())] if posed else [])
        rows.append(("", [("box", BOX_COLOUR, "detected face")]
                     + ([(None, (0, 0, 0), "text: pitch p, yaw y, roll r in degrees")] if posed else [])))
        out = with_legend(out, rows)
    return out


def write_predictions(results: list[dict], out_dir: Path) -> Path:
    """``out_dir/predictions.json`` (atomic): a list of ``{"image", "width", "height", "faces": [...]}``."""
    return write_text_atomic(json.dumps(results, indent=1) + "\n", out_dir / "predictions.json")
