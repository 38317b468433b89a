"""The copies the duplicate finder must see through: one image transformed, its faces' points with it.

Shared by ``benchmarks/bench_duplicates.py`` and the property tests. Every transform takes a BGR image,
the faces' points ``(F, 98, 2)`` (NaN where invalid) and boxes ``(F, 4)``, and a parameter, and returns
the new image, points and boxes. ``mirror`` applies the layout's mirror permutation to the points.
"""
from __future__ import annotations

import cv2
import numpy as np

from landmark_unify.core.layouts import get_layout


def _affine(img, pts, box, m, size):
    out = cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    p = pts @ m[:, :2].T + m[:, 2]
    corners = np.stack([box[:, [0, 1]], box[:, [2, 1]], box[:, [0, 3]], box[:, [2, 3]]], 1) @ m[:, :2].T + m[:, 2]
    b = np.concatenate([corners.min(1), corners.max(1)], 1)
    return out, p, b


def jpeg(img, pts, box, quality):
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR), pts.copy(), box.copy()


def resize(img, pts, box, factor):
    h, w = img.shape[:2]
    nw, nh = max(int(round(w * factor)), 8), max(int(round(h * factor)), 8)
    sx, sy = nw / w, nh / h
    out = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    scale = np.array([sx, sy])
    # pixel centres: x' = (x + 0.5) * s - 0.5
    return out, (pts + 0.5) * scale - 0.5, (box + 0.5) * np.tile(scale, 2) - 0.5


def stretch(img, pts, box, factor):
    """Resize the width alone by ``factor`` (another aspect ratio)."""
    h, w = img.shape[:2]
    nw = max(int(round(w * factor)), 8)
    out = cv2.resize(img, (nw, h), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    scale = np.array([nw / w, 1.0])
    return out, (pts + 0.5) * scale - 0.5, (box + 0.5) * np.tile(scale, 2) - 0.5


def crop(img, pts, box, fraction, rng=None):
    """Cut ``fraction`` of the width and of the height away, split between the sides at random, but never
    into the faces' boxes where the image leaves room (a crop that removes the face leaves nothing to pair)."""
    rng = np.random.default_rng(0) if rng is None else rng
    h, w = img.shape[:2]
    lo = np.floor(np.nanmin(box[:, :2], 0)).astype(int)
    hi = np.ceil(np.nanmax(box[:, 2:], 0)).astype(int)
    cut = [int(round(w * fraction)), int(round(h * fraction))]
    start = []
    for ax, size in enumerate((w, h)):
        room_lo = max(lo[ax], 0)
        room_hi = max(size - 1 - hi[ax], 0)
        first = int(rng.integers(max(cut[ax] - room_hi, 0), min(cut[ax], room_lo) + 1)) \
            if min(cut[ax], room_lo) >= max(cut[ax] - room_hi, 0) else cut[ax] // 2
        start.append(first)
    x0, y0 = start
    out = img[y0:h - (cut[1] - y0), x0:w - (cut[0] - x0)]
    off = np.array([x0, y0], np.float64)
    return np.ascontiguousarray(out), pts - off, box - np.tile(off, 2)


def brightness(img, pts, box, factor):
    return np.clip(img.astype(np.float32) * factor, 0, 255).astype(np.uint8), pts.copy(), box.copy()


def contrast(img, pts, box, factor):
    x = img.astype(np.float32)
    mean = x.mean()
    return np.clip((x - mean) * factor + mean, 0, 255).astype(np.uint8), pts.copy(), box.copy()


def rotate(img, pts, box, degrees):
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), float(degrees), 1.0)
    return _affine(img, pts, box, m, (w, h))


def mirror(img, pts, box, _=None):
    w = img.shape[1]
    flip = get_layout("wflw98").flip_indices
    p = pts[:, flip].copy()
    p[..., 0] = w - 1 - p[..., 0]
    b = box.copy()
    b[:, 0], b[:, 2] = w - 1 - box[:, 2], w - 1 - box[:, 0]
    return np.ascontiguousarray(img[:, ::-1]), p, b


def relabel(img, pts, box, sigma, rng=None):
    """Another annotation of the same face: every point moved by Gaussian noise of ``sigma`` times the
    inter-ocular distance (outer eye corners)."""
    rng = np.random.default_rng(0) if rng is None else rng
    lay = get_layout("wflw98")
    a, b = lay.norm_indices
    iod = np.linalg.norm(pts[:, a] - pts[:, b], axis=-1)
    iod = np.where(np.isfinite(iod), iod, np.nanmax(box[:, 2:] - box[:, :2], 1) / 3)
    return img.copy(), pts + rng.normal(0, 1, pts.shape) * sigma * iod[:, None, None], box.copy()


TRANSFORMS = {"jpeg": jpeg, "resize": resize, "stretch": stretch, "crop": crop, "brightness": brightness, "contrast": contrast,
              "rotate": rotate, "mirror": mirror, "relabel": relabel}


def apply(steps, img, pts, box, rng=None):
    """Apply ``steps``, a sequence of ``(name, parameter)``, in order."""
    for name, param in steps:
        fn = TRANSFORMS[name]
        if name in ("crop", "relabel"):
            img, pts, box = fn(img, pts, box, param, rng)
        else:
            img, pts, box = fn(img, pts, box, param)
    return img, pts, box
