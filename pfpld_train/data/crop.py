"""The one standard face crop, shared by training, evaluation and prediction.

Coordinates are image pixels, 0-based, integer values at pixel centres (the manifest convention).

The standard crop (FACTS section 8), from the ground-truth (or predicted) landmarks of one face:

- ``xy = floor(min)``, ``zz = floor(max)`` over the valid points (per axis), ``wh = zz - xy + 1``;
- ``centre = int(xy + wh / 2)`` (``int`` truncates toward zero, as the reference does);
- side ``S = int(1.2 * max(wh))``, top-left ``(x0, y0) = centre - S // 2``;
- the ``S x S`` window ``[x0, x0 + S) x [y0, y0 + S)`` is cut out, zero outside the image, and resized
  bilinearly (``cv2.INTER_LINEAR``) to ``112 x 112``.

A crop is described by ``params = (x0, y0, S)`` (int64). Landmarks in *crop units* are
``p = (x - (x0, y0)) / S`` (0 = top/left edge of the window, 1 = bottom/right), which is what the
network predicts; a prediction maps back as ``x = p * S + (x0, y0)``.

**The same face, the same frame, whatever the source layout.** A strict 68-point face has no contour (its
jaw is only approximately WFLW's), a 21-point AFLW face a handful of points: the extent of the valid points
alone would frame such a face tighter and cut the chin. :func:`face_crop_params` therefore completes the
canonical points first (:func:`complete_points`: the missing ones from the shipped mean 3D face, turned
by the head pose fitted to the valid ones) and takes the standard crop of the completed extent; a face with all
its points is unchanged. Training, the crop cache and evaluation use it.

For a detector box (prediction without landmarks) :func:`box_crop_params` applies the same rule to the
box corners, and :mod:`pfpld_train.inference.predict` re-crops from the first prediction's landmarks, so the
network always sees the landmark-defined crop it was trained on.
"""

from __future__ import annotations

import numpy as np

from landmark_unify.core.layouts import get_layout
from landmark_unify.core.maps import finite_points
from landmark_unify.errors import LandmarkUnifyError
from landmark_unify.face_models import default_face_model
from landmark_unify.face_models.fit import estimate_pose

__all__ = [
    "CROP_SCALE",
    "CROP_SIZE",
    "CropError",
    "box_crop_params",
    "complete_points",
    "crop_image",
    "face_crop_params",
    "crop_to_image",
    "image_to_crop",
    "resize_matrix",
    "standard_crop_params",
    "warp_crop",
]

CROP_SIZE = 112
CROP_SCALE = 1.2


class CropError(LandmarkUnifyError, ValueError):
    """A crop cannot be computed (no valid point, bad shape, bad image)."""


def _check_points(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[-1] != 2:
        raise CropError(f"points must have shape (N, K, 2), got {pts.shape}")
    return pts


def standard_crop_params(
    points: np.ndarray, valid: np.ndarray | None = None, scale: float = CROP_SCALE
) -> np.ndarray:
    """Standard crop windows from landmarks.

    Args:
        points: ``(N, K, 2)`` float, image pixels; NaN points are ignored.
        valid: optional ``(N, K)`` bool; points with ``False`` are ignored too.
        scale: side of the window over the landmark extent (1.2 for the standard crop).

    Returns:
        ``(N, 3) int64``: ``x0, y0, S`` (top-left corner and side in pixels).

    Raises:
        CropError: a face has no usable point.
    """
    pts = _check_points(points)
    ok = finite_points(pts)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != pts.shape[:2]:
            raise CropError(f"valid must have shape {pts.shape[:2]}, got {valid.shape}")
        ok &= valid
    empty = ~ok.any(1)
    if empty.any():
        raise CropError(f"no valid landmark for face(s) {np.flatnonzero(empty)[:10].tolist()}")
    lo = np.where(ok[..., None], pts, np.inf).min(1)
    hi = np.where(ok[..., None], pts, -np.inf).max(1)
    return _params_from_extent(lo, hi, scale)


def complete_points(points: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Canonical points with the missing ones filled in from the shipped mean 3D face.

    Args:
        points: ``(N, 98, 2)`` image pixels, NaN where missing; valid: optional ``(N, 98)`` bool.

    Per face that lacks points, the head pose is fitted to its usable points
    (:func:`landmark_unify.estimate_pose`), the mean face is projected with that rotation, and a scale and
    shift (least squares on the usable points) place it on the face; its points fill the missing ones.
    A contour point between two usable contour points (the odd points of a 17-point jaw) is their
    midpoint instead. Usable points are kept as they are; a face whose pose cannot be fitted (too few
    points, no nose) is completed by the midpoint rule only.
    Returns ``(points (N, 98, 2) float64, known (N, 98) bool)`` (``known``: usable or filled in).
    """
    pts = _check_points(points)
    if pts.shape[1] != 98:
        raise CropError(f"complete_points needs the canonical 98 points, got {pts.shape[1]}")
    ok = finite_points(pts)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    out = np.where(ok[..., None], pts, np.nan)
    model = default_face_model()
    todo = np.flatnonzero((~ok & model.has_point[None]).any(1))
    if todo.size:
        _, rot = estimate_pose(out[todo], ok[todo], model=model, return_rotation=True)
        fitted = np.isfinite(rot).all((1, 2))
        todo, rot = todo[fitted], rot[fitted]
        proj = np.einsum("nji,kj->nki", rot, model.points)[..., :2] * np.array([1.0, -1.0])  # image y down
        w = (ok[todo] & model.has_point[None]).astype(np.float64)[..., None]
        obs = np.nan_to_num(pts[todo])
        wsum = w.sum(1, keepdims=True)
        pm, om = (w * proj).sum(1, keepdims=True) / wsum, (w * obs).sum(1, keepdims=True) / wsum
        scale = (w * (proj - pm) * (obs - om)).sum((1, 2)) / np.maximum((w * (proj - pm) ** 2).sum((1, 2)), 1e-12)
        placed = scale[:, None, None] * (proj - pm) + om
        missing = ~ok[todo] & model.has_point[None]
        sub = out[todo]
        sub[missing] = placed[missing]
        out[todo] = sub
    c = _contour_order()
    mid = ~ok[:, c[1:-1]] & ok[:, c[:-2]] & ok[:, c[2:]]
    out[:, c[1:-1]] = np.where(mid[..., None], (pts[:, c[:-2]] + pts[:, c[2:]]) / 2, out[:, c[1:-1]])
    return out, finite_points(out)


def face_crop_params(points: np.ndarray, valid: np.ndarray | None = None, scale: float = CROP_SCALE) -> np.ndarray:
    """:func:`standard_crop_params` of the completed canonical points (:func:`complete_points`): the same
    window for a face whatever points its source layout (or policy) left valid. ``(N, 3) int64``."""
    done, known = complete_points(points, valid)
    return standard_crop_params(done, known, scale)


def _contour_order() -> np.ndarray:
    return get_layout("wflw98").group_indices("contour")


def box_crop_params(boxes: np.ndarray, scale: float = CROP_SCALE) -> np.ndarray:
    """Crop windows from boxes ``(N, 4)`` ``x_min, y_min, x_max, y_max`` (pixels), same rule as landmarks.

    Returns ``(N, 3) int64`` ``x0, y0, S``.
    """
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
        raise CropError(f"boxes must be finite with shape (N, 4), got {b.shape}")
    if (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
        raise CropError("boxes must have x_max >= x_min and y_max >= y_min")
    return _params_from_extent(b[:, :2], b[:, 2:], scale)


def _params_from_extent(lo: np.ndarray, hi: np.ndarray, scale: float) -> np.ndarray:
    xy = np.floor(lo)
    zz = np.floor(hi)
    wh = zz - xy + 1
    centre = np.trunc(xy + wh / 2)
    side = np.trunc(scale * wh.max(1))
    side = np.maximum(side, 1)
    top_left = centre - (side // 2)[:, None]
    return np.concatenate([top_left, side[:, None]], 1).astype(np.int64)


def image_to_crop(points: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Image pixels ``(N, K, 2)`` -> crop units ``(N, K, 2)`` float32: ``(x - (x0, y0)) / S``. NaN stays NaN."""
    pts = _check_points(points)
    prm = np.asarray(params, dtype=np.float64).reshape(-1, 3)
    return ((pts - prm[:, None, :2]) / prm[:, None, 2:3]).astype(np.float32)


def crop_to_image(points: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Crop units ``(N, K, 2)`` (e.g. network output reshaped) -> image pixels ``(N, K, 2)`` float32."""
    pts = _check_points(points)
    prm = np.asarray(params, dtype=np.float64).reshape(-1, 3)
    return (pts * prm[:, None, 2:3] + prm[:, None, :2]).astype(np.float32)


def crop_image(image: np.ndarray, params: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Cut one standard crop window out of ``image`` and resize it.

    Args:
        image: ``(H, W, C)`` or ``(H, W)`` uint8 (any channel order; kept).
        params: ``(3,)`` ``x0, y0, S``.
        size: output side (112).

    Returns:
        ``(size, size[, C])`` array of ``image``'s dtype; zero where the window leaves the image.
    """
    import cv2

    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise CropError(f"image must be (H, W[, C]) and non-empty, got {img.shape}")
    x0, y0, s = (int(v) for v in np.asarray(params).reshape(3))
    if s < 1:
        raise CropError(f"crop side must be >= 1, got {s}")
    h, w = img.shape[:2]
    window = np.zeros((s, s) + img.shape[2:], dtype=img.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + s, w), min(y0 + s, h)
    if sx1 > sx0 and sy1 > sy0:
        window[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return cv2.resize(window, (size, size), interpolation=cv2.INTER_LINEAR)


def resize_matrix(params: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """``(2, 3)`` affine taking image pixels to output pixels the way :func:`crop_image` samples.

    ``cv2.resize`` maps output pixel ``u`` to window pixel ``(u + 0.5) * S / size - 0.5``; this is its
    inverse with the window offset added. ``cv2.warpAffine(image, resize_matrix(p), (size, size))``
    reproduces :func:`crop_image` up to interpolation rounding.
    """
    x0, y0, s = (float(v) for v in np.asarray(params).reshape(3))
    k = size / s
    return np.array([[k, 0.0, (0.5 - x0) * k - 0.5], [0.0, k, (0.5 - y0) * k - 0.5]], dtype=np.float64)


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """``cv2.warpAffine`` with bilinear sampling and zero border: ``(size, size[, C])`` uint8."""
    import cv2

    return cv2.warpAffine(
        np.asarray(image), np.asarray(matrix, dtype=np.float64), (size, size),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
