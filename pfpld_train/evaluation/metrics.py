"""Landmark and pose metrics, pure NumPy on batched arrays.

All landmark arrays are ``(N, 98, 2)`` in the same unit (image pixels, usually); ``valid`` is
``(N, 98)`` bool. Only valid points are scored, so 68-point sources mapped into the 98-point layout are
scored on the points that have a counterpart, and nothing else.
"""

from __future__ import annotations

import numpy as np

from landmark_unify.core.layouts import get_layout
from landmark_unify.core.maps import finite_points
from landmark_unify.errors import LandmarkUnifyError

__all__ = [
    "ANGLE_NAMES",
    "MetricsError",
    "auc",
    "failure_rate",
    "nme",
    "point_errors",
    "pose_mae",
    "angle_error",
    "pose_in_range",
    "pose_errors",
    "pose_error_summary",
    "pose_error_mean",
    "POSE_MAX_ANGLE",
    "summarize_nme",
]

#: Pose angle order everywhere in this project.
ANGLE_NAMES = ("pitch", "yaw", "roll")
#: Outer eye corners of the WFLW layout (60 and 72, FACTS section 1), the NME normalisation pair.
DEFAULT_NORM_PAIR = get_layout("wflw98").norm_indices


class MetricsError(LandmarkUnifyError, ValueError):
    """Bad shapes or values given to a metric."""


def _check(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.ndim != 3 or pred.shape[-1] != 2 or pred.shape != gt.shape:
        raise MetricsError(f"pred and gt must both be (N, K, 2); got {pred.shape} and {gt.shape}")
    if valid is None:
        valid = finite_points(gt)
    else:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != gt.shape[:2]:
            raise MetricsError(f"valid must be {gt.shape[:2]}, got {valid.shape}")
        valid = valid & finite_points(gt)
    return pred, gt, valid


def point_errors(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Euclidean error per point ``(N, K)`` float64, NaN where the point is invalid."""
    pred, gt, valid = _check(pred, gt, valid)
    err = np.linalg.norm(pred - gt, axis=-1)
    return np.where(valid, err, np.nan)


def nme(
    pred: np.ndarray,
    gt: np.ndarray,
    valid: np.ndarray | None = None,
    norm_pair: tuple[int, int] = DEFAULT_NORM_PAIR,
    norm_points: np.ndarray | None = None,
) -> np.ndarray:
    """Normalised mean error per face, ``(N,)`` float64 (a fraction; x100 for percent).

    Mean Euclidean error over the face's valid points divided by the ground-truth distance between the
    two ``norm_pair`` points (WFLW 60 and 72, the outer eye corners). NaN for a face with no valid
    point or with an invalid / degenerate normalisation pair (reported, never silently scored).

    ``norm_points``: ``(N, K, 2)`` points to take the normalising distance from instead of ``gt`` (NaN
    where unknown), e.g. the ground truth when ``gt`` is another model's prediction (int8 drift).
    """
    pred, gt, valid = _check(pred, gt, valid)
    i, j = norm_pair
    err = np.where(valid, np.linalg.norm(pred - gt, axis=-1), 0.0)
    count = valid.sum(1)
    if norm_points is None:
        d = np.linalg.norm(gt[:, i] - gt[:, j], axis=-1)
        pair_ok = valid[:, i] & valid[:, j]
    else:
        ref = np.asarray(norm_points, dtype=np.float64)
        if ref.shape != gt.shape:
            raise MetricsError(f"norm_points must be {gt.shape}, got {ref.shape}")
        d = np.linalg.norm(ref[:, i] - ref[:, j], axis=-1)
        pair_ok = np.isfinite(d)
    ok = (count > 0) & pair_ok & (d > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = err.sum(1) / np.maximum(count, 1) / d
    return np.where(ok, out, np.nan)


def _finite(nmes: np.ndarray) -> np.ndarray:
    v = np.asarray(nmes, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def failure_rate(nmes: np.ndarray, threshold: float = 0.1) -> float:
    """Fraction of faces (finite NME only) with ``NME > threshold``. NaN if there is none."""
    v = _finite(nmes)
    return float((v > threshold).mean()) if v.size else float("nan")


def auc(nmes: np.ndarray, threshold: float = 0.1) -> float:
    """Area under the cumulative error distribution on ``[0, threshold]``, divided by ``threshold``.

    Computed exactly: the CED ``F(x) = mean(nme <= x)`` integrates to ``mean(max(0, threshold - nme))``.
    (Discretised versions with a 1e-4 step agree to about 1e-4.) In ``[0, 1]``; NaN if no face.
    """
    v = _finite(nmes)
    if not v.size:
        return float("nan")
    return float(np.clip(threshold - v, 0.0, None).mean() / threshold)


#: The AFLW2000-3D convention: faces with any |angle| above this (degrees) are left out of pose MAE.
POSE_MAX_ANGLE = 99.0


def angle_error(pred_deg, gt_deg) -> np.ndarray:
    """Absolute angle difference in degrees, wrapped to [0, 180] (179 vs -179 is 2, not 358)."""
    d = np.asarray(pred_deg, dtype=np.float64) - np.asarray(gt_deg, dtype=np.float64)
    return np.abs((d + 180.0) % 360.0 - 180.0)


def pose_mae(pred_deg: np.ndarray, gt_deg: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """Mean absolute error per angle ``(3,)`` float64, degrees, over faces whose pose is known; angle
    errors wrap (:func:`angle_error`).

    ``pred_deg``, ``gt_deg``: ``(N, 3)`` (pitch, yaw, roll) degrees; ``known``: ``(N,)`` bool (default:
    ground truth finite). NaN entries where no face has a known pose.
    """
    p = np.asarray(pred_deg, dtype=np.float64)
    g = np.asarray(gt_deg, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or p.shape != g.shape:
        raise MetricsError(f"pose arrays must both be (N, 3); got {p.shape} and {g.shape}")
    k = np.isfinite(g).all(1) if known is None else np.asarray(known, bool) & np.isfinite(g).all(1)
    if not k.any():
        return np.full(3, np.nan)
    return angle_error(p[k], g[k]).mean(0)


def pose_errors(pred_deg, gt_deg, max_angle: float | None = POSE_MAX_ANGLE) -> np.ndarray:
    """The pose error of each face, as training's validation and ``pfpld_train evaluate`` both count it:
    ``(N, 3)`` float64 absolute errors of pitch, yaw, roll in degrees, wrapped (:func:`angle_error`), with
    NaN rows for faces that do not count: ground truth or prediction unknown, or a ground-truth angle
    beyond ``max_angle`` (:func:`pose_in_range`, the AFLW2000-3D convention; None: no limit)."""
    p = np.asarray(pred_deg, dtype=np.float64)
    g = np.asarray(gt_deg, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or p.shape != g.shape:
        raise MetricsError(f"pose arrays must both be (N, 3); got {p.shape} and {g.shape}")
    counted = np.isfinite(g).all(1) & np.isfinite(p).all(1) & pose_in_range(g, max_angle)
    out = np.full(p.shape, np.nan)
    out[counted] = angle_error(p[counted], g[counted])
    return out


def pose_error_summary(errors: np.ndarray) -> dict | None:
    """``{"faces", "pitch", "yaw", "roll", "mean"}`` (degrees) of :func:`pose_errors` rows, over the faces
    that count; None when none does."""
    e = np.asarray(errors, dtype=np.float64)
    counted = np.isfinite(e).all(1)
    if not counted.any():
        return None
    mae = e[counted].mean(0)
    return {"faces": int(counted.sum()), **dict(zip(ANGLE_NAMES, mae.tolist())), "mean": float(mae.mean())}


def pose_error_mean(errors: np.ndarray) -> float:
    """Mean of :func:`pose_errors` rows over the faces that count and the three angles (training's
    ``val_pose_mae``; the ``mean`` of :func:`pose_error_summary`); NaN when no face counts."""
    summary = pose_error_summary(np.asarray(errors, dtype=np.float64).reshape(-1, 3))
    return float("nan") if summary is None else summary["mean"]


def pose_in_range(gt_deg: np.ndarray, max_angle: float | None = POSE_MAX_ANGLE) -> np.ndarray:
    """``(N,)`` bool: every ground-truth angle within ``max_angle`` degrees (None: no limit). With the
    default, the AFLW2000-3D convention (31 of its 2000 faces fall outside)."""
    g = np.asarray(gt_deg, dtype=np.float64)
    if max_angle is None:
        return np.ones(len(g), bool)
    with np.errstate(invalid="ignore"):
        return (np.abs(g) <= float(max_angle)).all(1)


def summarize_nme(nmes: np.ndarray, threshold: float = 0.1) -> dict:
    """``{"faces", "nme", "failure_rate", "auc", "unscored"}`` for one set of faces (fractions)."""
    v = np.asarray(nmes, dtype=np.float64).ravel()
    f = v[np.isfinite(v)]
    return {
        "faces": int(f.size),
        "nme": float(f.mean()) if f.size else float("nan"),
        "failure_rate": failure_rate(f, threshold),
        "auc": auc(f, threshold),
        "unscored": int(v.size - f.size),
    }
