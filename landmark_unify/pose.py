"""Head pose from 2D landmarks: a batched, weighted, robust fit of a mean 3D face.

Convention (the 300W-LP / AFLW2000-3D ``Pose_Para`` one, see ``docs/pose.md``)
------------------------------------------------------------------------------
Angles are ``(pitch, yaw, roll)`` in degrees, in that order. With ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``
and a model frame with x to the image right, y up and z toward the camera, a model point ``X``
projects to ``(u, v) = s * (R.T @ X)[:2] + t`` with ``v`` pointing up, i.e. image ``y = const - v``.
A horizontal flip of the image negates yaw and roll and keeps pitch.

Method (:func:`estimate_pose`)
------------------------------
1. The mean 3D face (``mean3d_68.npz``, by default the ``3ddfa_bfm_raw`` shape: the same model that
   produced the 300W-LP labels) is brought into the canonical 98-point layout with the iBUG-68 map,
   made exactly left-right symmetric, centred and scaled to unit RMS radius (:class:`FaceModel`).
2. Per face, a weighted affine camera is solved in closed form and projected to the nearest scaled
   orthographic camera (initialisation).
3. Gauss-Newton on a scaled-orthographic camera (rotation, scale, 2D shift) plus six regularised
   expression modes (vertical shifts of the lower lip, the upper lip, each brow and each upper eyelid
   in the face frame, Gaussian prior with sigma 0.1 face radii), with iteratively reweighted least
   squares (Huber, threshold 5 % of the face radius) against a few bad points. Only valid points with a
   model point take part; a per-point prior weight (:data:`DEFAULT_POINT_WEIGHTS`) halves the contour.
4. Faces with fewer than ``min_points`` usable points, or none on the nose, get NaN: an unknown pose,
   never a made-up one.

:func:`estimate_pose_pnp` is a per-face ``cv2.solvePnP`` baseline with a pixel-space pinhole camera.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import LandmarkUnifyError, MappingError
from .layouts import get_layout
from .maps import compile_map

#: Default location of the mean shapes: ``../shared/data/mean3d_68/mean3d_68.npz`` beside the project
#: root; the environment variable ``LANDMARK_UNIFY_MEAN3D`` overrides it.
DEFAULT_MEAN3D = Path(__file__).resolve().parents[2] / "shared" / "data" / "mean3d_68" / "mean3d_68.npz"
DEFAULT_SHAPE_KEY = "3ddfa_bfm_raw"
#: Axis signs that bring each published shape into the model frame (x right, y up, z toward camera).
SHAPE_AXES = {
    "3ddfa_bfm_raw": (1.0, 1.0, 1.0),
    "prnet_raw": (1.0, -1.0, 1.0),
    "insightface_raw": (1.0, -1.0, 1.0),
    "yinguobing_raw": (1.0, -1.0, -1.0),
}

#: Expression modes: name -> canonical indices shifted vertically (model y) together.
EXPRESSION_MODES = {
    "lower_lip": (83, 84, 85, 86, 87, 93, 94, 95),
    "upper_lip": (76, 77, 78, 79, 80, 81, 82, 88, 89, 90, 91, 92),
    "brow_l": (33, 34, 35, 36, 37),
    "brow_r": (42, 43, 44, 45, 46),
    "lid_l": (61, 62, 63),
    "lid_r": (69, 70, 71),
}
MODE_SIGMA = 0.1  # prior sigma of a mode coefficient, in face radii
NOISE_SIGMA = 0.03  # landmark noise the prior is weighed against, in face radii
HUBER = 0.05  # Huber threshold, in face radii
ITERATIONS = 12
MIN_POINTS = 8
NOSE = np.arange(51, 60)
CHUNK = 4096

_layout = get_layout("wflw98")
#: Prior weight per canonical point: 0.5 on the contour (a 2D outline is not the model's fixed 3D
#: contour on a turned face), 1 elsewhere. Points without a model point never take part.
DEFAULT_POINT_WEIGHTS = np.where(np.array(_layout.groups) == "contour", 0.5, 1.0)


class PoseModelError(LandmarkUnifyError):
    """The mean 3D face could not be found or read."""


# --- the 3D face in the canonical layout ------------------------------------------------------------------

@dataclass(frozen=True)
class FaceModel:
    """A mean 3D face in the canonical layout.

    ``points``: ``(98, 3)`` float64 in the model frame (x right, y up, z toward the camera), centred
    and scaled to unit RMS radius, zeros where ``has_point`` is False. ``raw_points``: the same before
    normalisation, in the source's units (used by the solvePnP baseline). ``modes``: ``(G, 98, 3)``
    expression modes (unit vertical shifts). ``source``: where the shape came from.
    """

    points: np.ndarray
    raw_points: np.ndarray
    has_point: np.ndarray
    modes: np.ndarray
    mode_names: tuple[str, ...]
    source: str


def _interp_polyline(p: np.ndarray, ts) -> np.ndarray:
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    cum = np.r_[0.0, np.cumsum(seg)] / seg.sum()
    return np.stack([[np.interp(t, cum, p[:, d]) for d in range(p.shape[1])] for t in ts])


def canonical_model_points(x68: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Place a 68-point 3D shape ``(68, 3)`` on the canonical 98 points.

    Points the iBUG-68 map defines exactly take their iBUG point (jaw ``i`` -> contour ``2i``, brow,
    nose, eye corners, lips). The odd contour points are midpoints of neighbouring jaw points, and
    WFLW's eyelid points (quarters of a lid) are interpolated along the iBUG lid polyline by arc length.
    Lower brow edges and pupils have no model point. Returns ``(points (98, 3), has_point (98,))``.
    """
    x68 = np.asarray(x68, dtype=np.float64)
    if x68.shape != (68, 3):
        raise PoseModelError(f"a 68-point 3D shape must be (68, 3); got {x68.shape}")
    out = np.zeros((98, 3))
    has = np.zeros(98, bool)
    cmap = compile_map("ibug68_3d", "strict", projected_contour=True)
    exact = np.array([k in ("exact", "projected") for k in cmap.kinds])
    out[exact] = x68[cmap.a[exact]]
    has[exact] = True
    for i in range(16):
        out[2 * i + 1] = (x68[i] + x68[i + 1]) / 2
        has[2 * i + 1] = True
    lids = {  # canonical lid indices <- iBUG polyline from corner to corner
        (61, 62, 63): (36, 37, 38, 39), (65, 66, 67): (39, 40, 41, 36),
        (69, 70, 71): (42, 43, 44, 45), (73, 74, 75): (45, 46, 47, 42),
    }
    for dst, src in lids.items():
        out[list(dst)] = _interp_polyline(x68[list(src)], (0.25, 0.5, 0.75))
        has[list(dst)] = True
    return out, has


def build_face_model(x68: np.ndarray, source: str = "custom") -> FaceModel:
    """A :class:`FaceModel` from a 68-point shape already in the model frame (x right, y up, z toward
    the camera). The shape is symmetrised (mean of it and its mirror image) so that the fit of a
    mirrored face is exactly the mirrored fit."""
    raw, has = canonical_model_points(x68)
    flip = _layout.flip_indices
    if not np.array_equal(has, has[flip]):
        raise PoseModelError("model points are not closed under the mirror")
    sym = (raw + raw[flip] * np.array([-1.0, 1.0, 1.0])) / 2
    centre = sym[has].mean(0)
    radius = np.sqrt(((sym[has] - centre) ** 2).sum(1).mean())
    pts = np.where(has[:, None], (sym - centre) / radius, 0.0)
    names = tuple(EXPRESSION_MODES)
    modes = np.zeros((len(names), 98, 3))
    for g, name in enumerate(names):
        modes[g, list(EXPRESSION_MODES[name]), 1] = 1.0
    for a in (pts, raw, has, modes):
        a.setflags(write=False)
    return FaceModel(pts, np.where(has[:, None], sym, 0.0), has, modes, names, source)


def resolve_mean3d_path(path: str | os.PathLike | None = None) -> Path:
    """The mean-shape file: ``path``, else ``$LANDMARK_UNIFY_MEAN3D``, else :data:`DEFAULT_MEAN3D`."""
    chosen = path or os.environ.get("LANDMARK_UNIFY_MEAN3D") or DEFAULT_MEAN3D
    return Path(chosen)


@lru_cache(maxsize=8)
def _load_model(path: str, key: str) -> FaceModel:
    p = Path(path)
    if not p.is_file():
        raise PoseModelError(
            f"mean 3D face not found at {p}; pass --mean-shape PATH (a mean3d_68.npz, or a (68, 3) .npy in "
            "the model frame) or set LANDMARK_UNIFY_MEAN3D. The project ships no mean shape: the published "
            "ones derive from the Basel Face Model, whose licence does not allow redistribution."
        )
    try:
        if p.suffix == ".npy":
            return build_face_model(np.load(p), f"{p}")
        with np.load(p) as data:
            if key not in data.files:
                raise PoseModelError(f"{p}: no shape {key!r}; it holds {data.files}")
            x68 = np.asarray(data[key], dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise PoseModelError(f"{p}: cannot read the mean 3D face: {exc}") from None
    if key not in SHAPE_AXES:
        raise PoseModelError(f"{p}: unknown axes for shape {key!r}; known: {sorted(SHAPE_AXES)}")
    return build_face_model(x68 * np.array(SHAPE_AXES[key]), f"{p}:{key}")


def load_face_model(path: str | os.PathLike | None = None, key: str = DEFAULT_SHAPE_KEY) -> FaceModel:
    """Load (cached) the mean 3D face; see :func:`resolve_mean3d_path` for where it is looked for."""
    return _load_model(str(resolve_mean3d_path(path).resolve()), key)


# --- rotations ----------------------------------------------------------------------------------------

def _hat(v: np.ndarray) -> np.ndarray:
    z = np.zeros(v.shape[:-1])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([np.stack([z, -w, y], -1), np.stack([w, z, -x], -1), np.stack([-y, x, z], -1)], -2)


def _expm_so3(w: np.ndarray) -> np.ndarray:
    th = np.linalg.norm(w, axis=-1)[..., None, None]
    k = _hat(w)
    small = th < 1e-8
    th_safe = np.where(small, 1.0, th)
    a = np.where(small, 1.0, np.sin(th_safe) / th_safe)
    b = np.where(small, 0.5, (1.0 - np.cos(th_safe)) / th_safe**2)
    return np.eye(3) + a * k + b * (k @ k)


def euler_from_matrix(r: np.ndarray) -> np.ndarray:
    """``(N, 3, 3)`` rotations ``R = Rz(roll) Ry(yaw) Rx(pitch)`` -> ``(N, 3)`` pitch, yaw, roll degrees."""
    pitch = np.arctan2(r[:, 2, 1], r[:, 2, 2])
    yaw = np.arctan2(-r[:, 2, 0], np.hypot(r[:, 2, 1], r[:, 2, 2]))
    roll = np.arctan2(r[:, 1, 0], r[:, 0, 0])
    return np.degrees(np.stack([pitch, yaw, roll], 1))


def matrix_from_euler(angles: np.ndarray) -> np.ndarray:
    """``(N, 3)`` pitch, yaw, roll degrees -> ``(N, 3, 3)`` ``R = Rz(roll) Ry(yaw) Rx(pitch)``."""
    a = np.radians(np.asarray(angles, dtype=np.float64).reshape(-1, 3))
    cp, sp, cy, sy, cr, sr = (f(a[:, i]) for i in range(3) for f in (np.cos, np.sin))
    one, zero = np.ones(len(a)), np.zeros(len(a))
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1), np.stack([zero, sp, cp], -1)], -2)
    ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1), np.stack([-sy, zero, cy], -1)], -2)
    rz = np.stack([np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1), np.stack([zero, zero, one], -1)], -2)
    return rz @ ry @ rx


# --- the batched fit ------------------------------------------------------------------------------------

def _check_inputs(points98, valid98) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(points98)
    if pts.ndim == 2:
        pts = pts[None]
    if pts.ndim != 3 or pts.shape[1:] != (98, 2):
        raise MappingError(f"points98 must be (N, 98, 2) or (98, 2); got {np.shape(points98)}")
    if not np.issubdtype(pts.dtype, np.number):
        raise MappingError(f"points98 must be numeric; got dtype {pts.dtype}")
    pts = pts.astype(np.float64)
    ok = np.isfinite(pts).all(-1)
    if valid98 is not None:
        v = np.asarray(valid98, dtype=bool)
        if v.ndim == 1:
            v = v[None]
        if v.shape != ok.shape:
            raise MappingError(f"valid98 must be (N, 98) matching points98 {ok.shape}; got {np.shape(valid98)}")
        ok &= v
    return pts, ok


def _affine_init(x: np.ndarray, X: np.ndarray, w: np.ndarray):
    """Weighted affine camera x ~ A X + t per face; returns nearest scaled-orthographic (Q, s, t)."""
    n = len(x)
    h = np.concatenate([np.broadcast_to(X, (n,) + X.shape), np.ones((n, X.shape[0], 1))], -1)
    hw = h * w[..., None]
    g = np.einsum("nki,nkj->nij", hw, h) + 1e-9 * np.eye(4)
    b = np.einsum("nki,nkj->nij", hw, x)
    sol = np.linalg.solve(g, b)  # (N, 4, 2)
    a = sol[:, :3].transpose(0, 2, 1)
    u, sv, vt = np.linalg.svd(a)
    q2 = u @ vt[:, :2]
    q = np.concatenate([q2, np.cross(q2[:, 0], q2[:, 1])[:, None]], 1)
    return q, sv.mean(1), sol[:, 3]


def _fit_chunk(x: np.ndarray, w: np.ndarray, model: FaceModel, iterations: int, huber: float | None):
    """x: (N, K, 2) normalised, y up; w: (N, K) weights. Returns Q (N, 3, 3) = R^T and mode coefficients."""
    n, k = w.shape
    X = model.points
    B = model.modes
    g = len(B)
    q, s, t = _affine_init(x, X, w)
    c = np.zeros((n, g))
    ww = w
    eye6g = np.eye(6 + g)
    for it in range(iterations):
        xc = X[None] + np.einsum("ng,gkd->nkd", c, B)
        p = np.einsum("nij,nkj->nki", q[:, :2], xc)
        r = x - (s[:, None, None] * p + t[:, None])
        if huber is not None and it >= 2:
            e = np.linalg.norm(r, axis=-1) / np.maximum(np.abs(s), 1e-12)[:, None]
            ww = w * np.where(e <= huber, 1.0, huber / np.maximum(e, 1e-12))
        jw = -s[:, None, None, None] * np.einsum("nij,nkjl->nkil", q[:, :2], _hat(xc))
        jc = s[:, None, None, None] * np.einsum("nij,gkj->nkig", q[:, :2], B)
        j = np.concatenate([jw, p[..., None], np.broadcast_to(np.eye(2), (n, k, 2, 2)), jc], -1)
        jtj = np.einsum("nkia,nkib,nk->nab", j, j, ww)
        jtr = np.einsum("nkia,nki,nk->na", j, r, ww)
        reg = np.zeros((n, 6 + g))
        reg[:, 6:] = (NOISE_SIGMA * s / MODE_SIGMA)[:, None] ** 2
        jtj = jtj + reg[:, :, None] * eye6g + 1e-10 * eye6g
        jtr = jtr - reg * np.concatenate([np.zeros((n, 6)), c], 1)
        d = np.linalg.solve(jtj, jtr[..., None])[..., 0]
        q = q @ _expm_so3(d[:, :3])
        s = s + d[:, 3]
        t = t + d[:, 4:6]
        c = c + d[:, 6:]
    return q, c


def estimate_pose(
    points98,
    valid98=None,
    *,
    model: FaceModel | None = None,
    point_weights=None,
    min_points: int = MIN_POINTS,
    iterations: int = ITERATIONS,
    huber: float | None = HUBER,
    return_rotation: bool = False,
):
    """Head pose of each face from its canonical landmarks.

    points98: ``(N, 98, 2)`` (or ``(98, 2)``) pixels, image y down, NaN where invalid.
    valid98: optional ``(N, 98)`` bool; only valid, finite points that have a model point are used.
    model: the mean 3D face (default :func:`load_face_model`). point_weights: ``(98,)`` or ``(N, 98)``
    prior weights (default :data:`DEFAULT_POINT_WEIGHTS`). min_points: faces with fewer usable points, or
    with no nose point, get NaN.
    Returns ``(N, 3)`` float32 pitch, yaw, roll in degrees (300W-LP ``Pose_Para`` convention, see the
    module docstring); with ``return_rotation`` also ``(N, 3, 3)`` float64 rotations R (NaN rows where
    unknown).
    """
    pts, ok = _check_inputs(points98, valid98)
    model = model or load_face_model()
    pw = DEFAULT_POINT_WEIGHTS if point_weights is None else np.asarray(point_weights, dtype=np.float64)
    if pw.shape not in ((98,), (len(pts), 98)):
        raise MappingError(f"point_weights must be (98,) or (N, 98); got {pw.shape}")
    if (pw < 0).any() or not np.isfinite(pw).all():
        raise ValueError("point_weights must be finite and >= 0")
    use = ok & model.has_point[None] & (pw > 0)
    enough = (use.sum(1) >= max(int(min_points), 6)) & use[:, NOSE].any(1)
    n = len(pts)
    out = np.full((n, 3), np.nan)
    rot = np.full((n, 3, 3), np.nan)
    idx = np.flatnonzero(enough)
    for start in range(0, len(idx), CHUNK):
        sel = idx[start:start + CHUNK]
        w = np.where(use[sel], np.broadcast_to(pw, use.shape)[sel], 0.0)
        x = np.where(use[sel][..., None], pts[sel], 0.0)
        x[..., 1] = -x[..., 1]  # y up
        # normalise each face: weighted centroid at the origin, unit RMS radius
        wsum = w.sum(1, keepdims=True)
        centre = (x * w[..., None]).sum(1, keepdims=True) / wsum[..., None]
        xc = (x - centre) * (w > 0)[..., None]
        radius = np.sqrt((w * (xc**2).sum(-1)).sum(1) / wsum[:, 0])
        xn = xc / np.maximum(radius, 1e-12)[:, None, None]
        q, _ = _fit_chunk(xn, w, model, iterations, huber)
        r = q.transpose(0, 2, 1)
        good = np.isfinite(r).all((1, 2)) & (radius > 0)
        out[sel[good]] = euler_from_matrix(r[good])
        rot[sel[good]] = r[good]
    out = out.astype(np.float32)
    return (out, rot) if return_rotation else out


# --- the solvePnP baseline --------------------------------------------------------------------------------

def estimate_pose_pnp(points98, valid98=None, image_size=None, *, model: FaceModel | None = None,
                      min_points: int = MIN_POINTS) -> np.ndarray:
    """Per-face ``cv2.solvePnP`` baseline, same convention and output as :func:`estimate_pose`.

    The real 3D mean face (model units) is placed in OpenCV's camera frame (x right, y down, z away
    from the camera) and matched to the pixel landmarks with a pinhole camera: focal length = image
    width, principal point = image centre. ``image_size``: ``(W, H)`` or ``(N, 2)``; when None the
    principal point is the landmarks' centre and the focal length the largest image extent implied by
    them (twice the landmark span). Solver: ``SOLVEPNP_SQPNP`` then Levenberg-Marquardt refinement
    (SQPnP is globally optimal; the iterative solver
    lands in a wrong minimum on some faces). Solutions with the face behind the camera are rejected (NaN).
    """
    import cv2

    pts, ok = _check_inputs(points98, valid98)
    model = model or load_face_model()
    use = ok & model.has_point[None]
    n = len(pts)
    if image_size is not None:
        size = np.broadcast_to(np.asarray(image_size, dtype=np.float64).reshape(-1, 2), (n, 2))
    flip = np.diag([1.0, -1.0, -1.0])  # model frame -> OpenCV camera axes (a proper rotation)
    obj_all = model.raw_points @ flip.T
    out = np.full((n, 3), np.nan)
    for i in range(n):
        m = use[i]
        if m.sum() < max(min_points, 6) or not m[NOSE].any():
            continue
        img = np.ascontiguousarray(pts[i, m])
        if image_size is not None:
            w_img, h_img = size[i]
            f, cx, cy = w_img, (w_img - 1) / 2, (h_img - 1) / 2
        else:
            span = np.ptp(img, 0).max()
            f, (cx, cy) = 2 * span, img.mean(0)
        cam = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], dtype=np.float64)
        obj = np.ascontiguousarray(obj_all[m])
        okk, rvec, tvec = cv2.solvePnP(obj, img, cam, None, flags=cv2.SOLVEPNP_SQPNP)
        if okk:
            rvec, tvec = cv2.solvePnPRefineLM(obj, img, cam, None, rvec, tvec)
        if not okk or tvec[2, 0] <= 0:
            continue
        r_cv, _ = cv2.Rodrigues(rvec)
        # camera = R_cv F X; flipping camera y, z back: F R_cv F X = R^T X  =>  R = F R_cv^T F
        r = flip @ r_cv.T @ flip
        out[i] = euler_from_matrix(r[None])[0]
    return out.astype(np.float32)


# --- manifests ------------------------------------------------------------------------------------------------

def relabel_dataframe(df, *, model: FaceModel | None = None, **fit_options):
    """A copy of manifest DataFrame ``df`` with fitted poses.

    Rows without a pose get ``pitch``, ``yaw``, ``roll`` from the fit and ``pose_source = "fit"`` (or
    stay null when the fit is unknown). Rows with a dataset pose keep it; the fit goes to ``fit_pitch``,
    ``fit_yaw``, ``fit_roll`` beside it. Returns ``(df, counts)`` with counts of filled, kept, unknown rows.
    """
    import pandas as pd

    from .manifest import landmarks_array, valid_array

    out = df.copy()
    out.attrs = dict(df.attrs)
    n = len(df)
    fit = estimate_pose(landmarks_array(df), valid_array(df), model=model, **fit_options) if n else np.zeros((0, 3), np.float32)
    known_fit = np.isfinite(fit).all(1)
    src = df["pose_source"].astype(object).where(df["pose_source"].notna(), None).to_numpy() if n else np.array([], object)
    has_dataset = np.array([s is not None for s in src], bool)
    for j, name in enumerate(("pitch", "yaw", "roll")):
        col = pd.to_numeric(df[name], errors="coerce").to_numpy(np.float64) if n else np.zeros(0)
        out[f"fit_{name}"] = np.where(has_dataset & known_fit, fit[:, j], np.nan).astype(np.float32)
        out[name] = np.where(has_dataset, col, fit[:, j]).astype(np.float32)
    new_src = np.where(has_dataset, src, np.where(known_fit, "fit", None)).astype(object)
    out["pose_source"] = [None if v is None else str(v) for v in new_src]
    counts = {"filled": int((~has_dataset & known_fit).sum()), "kept": int(has_dataset.sum()),
              "unknown": int((~has_dataset & ~known_fit).sum())}
    return out, counts


def relabel_manifest_file(in_path, out_path, *, mean_shape=None, shape_key: str = DEFAULT_SHAPE_KEY, **fit_options) -> dict:
    """Read manifest ``in_path``, fit poses (:func:`relabel_dataframe`) and write ``out_path``. Returns the counts."""
    from .manifest import read_manifest, write_manifest
    from .merge import derived_metadata

    model = load_face_model(mean_shape, shape_key)
    df = read_manifest(in_path)
    out, counts = relabel_dataframe(df, model=model, **fit_options)
    meta = derived_metadata(df.attrs["manifest"], in_path, out_path, "relabel-pose",
                            pose_fit={"model": model.source, "method": "scaled-orthographic fit with expression modes",
                                      **counts})
    write_manifest(out, out_path, meta)
    return counts
