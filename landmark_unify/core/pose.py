"""Head pose from 2D landmarks: a batched, weighted, robust fit of a mean 3D face.

Convention (the 300W-LP / AFLW2000-3D ``Pose_Para`` one, see ``docs/guides/pose.md``)
------------------------------------------------------------------------------
Angles are ``(pitch, yaw, roll)`` in degrees, in that order. With ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``
and a model frame with x to the image right, y up and z toward the camera, a model point ``X``
projects to ``(u, v) = s * (R.T @ X)[:2] + t`` with ``v`` pointing up, i.e. image ``y = const - v``.
A horizontal flip of the image negates yaw and roll and keeps pitch.

Method (:func:`estimate_pose`)
------------------------------
1. A mean 3D face in the canonical 98-point layout (:class:`FaceModel`), made exactly left-right
   symmetric, centred and scaled to unit RMS radius. The caller passes it (``model=``;
   :func:`landmark_unify.load_face_model` gives the shipped MediaPipe face, or a published 68-point shape
   placed on the 98 points with the iBUG-68 map). Faces flagged ``projected`` (points projected from a
   fitted 3D face model) are fitted with the model's face for such points (``FaceModel.projected``).
2. Per face, a weighted affine camera is solved in closed form and projected to the nearest scaled
   orthographic camera (initialisation).
3. Gauss-Newton on a scaled-orthographic camera (rotation, scale, 2D shift) plus six regularised
   expression modes (vertical shifts of the lower lip, the upper lip, each brow and each upper eyelid
   in the face frame, Gaussian prior with sigma 0.1 face radii), with iteratively reweighted least
   squares (Huber weights at 1.345 robust residual scales) against a few bad points. Only valid points
   with a model point take part; a per-point prior weight (:data:`DEFAULT_POINT_WEIGHTS`) leaves out the
   sides of a 2D outline contour (:data:`PROJECTED_CONTOUR_WEIGHTS` for a projected 3D contour).
4. Faces with fewer than ``min_points`` usable points, or none on the nose, get NaN: an unknown pose,
   never a made-up one.

:func:`estimate_pose_pnp` is a per-face ``cv2.solvePnP`` baseline with a pixel-space pinhole camera.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import LandmarkUnifyError, MappingError
from .layouts import get_layout
from .maps import canonical_batch, compile_map

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
HUBER = 1.345  # Huber threshold, in robust residual scales (MAD) of the face
MIN_SCALE = 0.01  # lower bound of that scale, in face radii
ITERATIONS = 4  # Gauss-Newton steps (the dev-set accuracy is the same from 4 to 8, see docs/guides/pose.md)
REFIT_ITERATIONS = 2  # steps of the occlusion refit, started from the first fit's rotation
MIN_POINTS = 8
CHUNK = 512

_layout = get_layout("wflw98")
NOSE = _layout.group_indices("nose")  # a face needs one of these to be fitted
_contour = np.array(_layout.groups) == "contour"
_chin = np.zeros(98, bool)
_chin[14:19] = True
#: Prior weight per canonical point for a face whose contour is the visible outline (WFLW, LaPa, 300W,
#: COFW / AFLW chin): the contour is not used except around the chin (points 14-18, weight 0.5). On a
#: turned face the far side of a 2D outline is the cheek's silhouette, wider than the model's fixed 3D
#: contour, and pulls yaw toward zero (by about a third on WFLW's turned faces, see docs/guides/pose.md).
#: 1 elsewhere. Points without a model point never take part.
DEFAULT_POINT_WEIGHTS = np.where(_contour, np.where(_chin, 0.5, 0.0), 1.0)
#: Prior weights for a face whose contour is the projection of the model's 3D contour points (300W-LP
#: ``pt2d``, AFLW2000-3D ``pt3d_68``, i.e. schema ``ibug68_3d`` with ``projected_contour=True``).
PROJECTED_CONTOUR_WEIGHTS = np.ones(98)
#: Source schemas whose contour (when valid) is a projected 3D contour.
PROJECTED_CONTOUR_SCHEMAS = ("ibug68_3d",)


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

    Calibration carried by the model (the shipped MediaPipe face has it; a bare 68-point shape has none):
    ``group_weights``: ``(98,)`` factors on :data:`DEFAULT_POINT_WEIGHTS` for 2D (outline) sources, or None.
    ``normals``: ``(98, 3)`` unit surface normals in the model frame, or None. ``occluded_weight``: with
    normals, a point whose normal faces away from the camera at the first fit's pose (self-occluded:
    annotators put such a point on the visible outline) has its weight multiplied by this and the face is
    fitted again; 1 turns that off. ``projected``: the face fitted to points projected from a 3D face model
    (``estimate_pose(..., projected=True)``; the shipped face has one), or None to use this one for them too.
    """

    points: np.ndarray
    raw_points: np.ndarray
    has_point: np.ndarray
    modes: np.ndarray
    mode_names: tuple[str, ...]
    source: str
    group_weights: np.ndarray | None = None
    normals: np.ndarray | None = None
    occluded_weight: float = 1.0
    projected: FaceModel | None = None

    def default_weights(self, projected_contour: bool = False) -> np.ndarray:
        """The prior point weights of the fit: :data:`PROJECTED_CONTOUR_WEIGHTS` for points projected
        from a 3D model (no calibration: they are model points), else :data:`DEFAULT_POINT_WEIGHTS` times
        the model's ``group_weights``."""
        if projected_contour:
            return PROJECTED_CONTOUR_WEIGHTS
        return DEFAULT_POINT_WEIGHTS if self.group_weights is None else DEFAULT_POINT_WEIGHTS * self.group_weights


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
    out[1:32:2] = (x68[:16] + x68[1:17]) / 2
    has[1:32:2] = True
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
    return build_face_model_98(raw, has, source=source)


def build_face_model_98(points98: np.ndarray, has_point: np.ndarray, *, source: str = "custom",
                        group_weights=None, normals=None, occluded_weight: float = 1.0,
                        projected: FaceModel | None = None) -> FaceModel:
    """A :class:`FaceModel` from ``(98, 3)`` points in the model frame (``has_point`` marks the defined
    ones), e.g. the shipped MediaPipe face. Points and normals are symmetrised (mean of them and their
    mirror images) so that the fit of a mirrored face is exactly the mirrored fit; see :class:`FaceModel`
    for the calibration arguments and ``projected``."""
    raw = np.asarray(points98, dtype=np.float64)
    has = np.asarray(has_point, dtype=bool)
    if raw.shape != (98, 3) or has.shape != (98,) or not np.isfinite(raw[has]).all():
        raise PoseModelError(f"a 98-point 3D face must be finite (98, 3) with a (98,) mask; got {raw.shape}, {has.shape}")
    flip = _layout.flip_indices
    if not np.array_equal(has, has[flip]):
        raise PoseModelError("model points are not closed under the mirror")
    if has.sum() < 6:
        raise PoseModelError(f"a face model needs at least 6 points; got {int(has.sum())}")
    mirror = np.array([-1.0, 1.0, 1.0])
    raw = np.where(has[:, None], raw, 0.0)
    sym = (raw + raw[flip] * mirror) / 2
    centre = sym[has].mean(0)
    radius = np.sqrt(((sym[has] - centre) ** 2).sum(1).mean())
    pts = np.where(has[:, None], (sym - centre) / radius, 0.0)
    names = tuple(EXPRESSION_MODES)
    modes = np.zeros((len(names), 98, 3))
    for g, name in enumerate(names):
        modes[g, list(EXPRESSION_MODES[name]), 1] = 1.0
    gw = None
    if group_weights is not None:
        gw = np.asarray(group_weights, dtype=np.float64)
        if gw.shape != (98,) or (gw < 0).any() or not np.isfinite(gw).all():
            raise PoseModelError(f"group_weights must be (98,) finite and >= 0; got {gw.shape}")
        gw = (gw + gw[flip]) / 2
    nrm = None
    if normals is not None:
        nrm = np.asarray(normals, dtype=np.float64)
        if nrm.shape != (98, 3) or not np.isfinite(nrm[has]).all():
            raise PoseModelError(f"normals must be finite (98, 3); got {nrm.shape}")
        nrm = np.where(has[:, None], (nrm + nrm[flip] * mirror) / 2, 0.0)
        nrm[has] /= np.maximum(np.linalg.norm(nrm[has], axis=1, keepdims=True), 1e-12)
    if not 0.0 <= float(occluded_weight) <= 1.0:
        raise PoseModelError(f"occluded_weight must be in [0, 1]; got {occluded_weight}")
    sym = np.where(has[:, None], sym, 0.0)
    for a in (pts, sym, has, modes, gw, nrm):
        if a is not None:
            a.setflags(write=False)
    if projected is not None and projected.projected is not None:
        raise PoseModelError("the face for projected points cannot have one of its own")
    return FaceModel(pts, sym, has, modes, names, source, gw, nrm, float(occluded_weight), projected)


# --- rotations ----------------------------------------------------------------------------------------

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

@lru_cache(maxsize=1)
def _openblas_thread_api():
    """``(get, set)`` of the OpenBLAS bundled with numpy, or None. The fit's matrix products are small
    (a chunk's points times a few dozen features): with several BLAS threads on a busy machine they
    run several times slower, so the fit holds BLAS to one thread while it runs."""
    import ctypes
    import glob

    folder = os.path.dirname(np.__file__) + ".libs"
    for path in sorted(glob.glob(os.path.join(folder, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", ""):
            get = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None) or getattr(lib, f"openblas_get_num_threads{suffix}", None)
            put = getattr(lib, f"scipy_openblas_set_num_threads{suffix}", None) or getattr(lib, f"openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype = ctypes.c_int
                put.argtypes = [ctypes.c_int]
                return get, put
    return None


class _SingleThreadBLAS:
    """Context manager: numpy's OpenBLAS on one thread inside, as before outside (no-op where numpy's
    OpenBLAS is not found). The thread count is process-wide, so entries from several threads (a threaded
    dask worker) are counted: the first saves the count and the last restores it."""

    _lock = threading.Lock()
    _depth = 0
    _saved: int | None = None

    def __enter__(self):
        api = _openblas_thread_api()
        if api is not None:
            cls = type(self)
            with cls._lock:
                if cls._depth == 0:
                    old = api[0]()
                    cls._saved = old if old >= 1 else None
                    api[1](1)
                cls._depth += 1
        return self

    def __exit__(self, *exc):
        api = _openblas_thread_api()
        if api is not None:
            cls = type(self)
            with cls._lock:
                cls._depth -= 1
                if cls._depth == 0 and cls._saved is not None:
                    api[1](cls._saved)
        return False


def _nearest_scaled_rotation(a: np.ndarray):
    """Nearest scaled-orthographic camera to affine cameras ``a`` (2, 3, N), batch-last: rows
    ``Q2 = (a a^T)^(-1/2) a`` (the polar factor) completed to a rotation ``Q`` (3, 3, N), and the mean
    singular value ``s`` (N,)."""
    m00, m01, m11 = (a[0] * a[0]).sum(0), (a[0] * a[1]).sum(0), (a[1] * a[1]).sum(0)
    sd = np.sqrt(np.maximum(m00 * m11 - m01 * m01, 0.0))
    root = np.sqrt(np.maximum(m00 + m11 + 2 * sd, 1e-300))
    s = root / 2  # (sigma1 + sigma2) / 2, since (sigma1 + sigma2)^2 = tr + 2 sqrt(det)
    # (a a^T)^(1/2) = (m + sd I) / root; its inverse for a 2 x 2 matrix
    h00, h01, h11 = (m00 + sd) / root, m01 / root, (m11 + sd) / root
    q = np.empty((3,) + a.shape[1:])
    with np.errstate(divide="ignore", invalid="ignore"):
        hdet = h00 * h11 - h01 * h01
        q[0] = (h11 * a[0] - h01 * a[1]) / hdet
        q[1] = (h00 * a[1] - h01 * a[0]) / hdet
    q[2] = np.cross(q[0], q[1], axis=0)
    return q, s


#: Index pairs of the six distinct products of a point's coordinates (a symmetric 3 x 3 moment).
_PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def _moment_features(xs: np.ndarray) -> np.ndarray:
    """``(K, 10)`` per model point ``xs`` (3, K): 1, x, y, z and the products of :data:`_PAIRS`; a
    weights matrix (N, K) times it gives each face's weighted zeroth, first and second moments."""
    return np.concatenate([np.ones((1, xs.shape[1])), xs, np.stack([xs[a] * xs[b] for a, b in _PAIRS])]).T


def _affine_init(x: np.ndarray, X: np.ndarray, w: np.ndarray):
    """Weighted affine camera x ~ A X + t per face, from weighted moments; returns the nearest
    scaled-orthographic camera, batch-last: ``(Q (3, 3, N), s (N,))``."""
    feats = _moment_features(X.T)
    mo = (w @ feats).T  # (10, N)
    g = np.empty((4, 4, len(w)))
    for j, (r, t) in enumerate(_PAIRS):
        g[r, t] = g[t, r] = mo[4 + j]
    g[:3, 3] = g[3, :3] = mo[1:4]
    g[3, 3] = mo[0]
    g[np.arange(4), np.arange(4)] += 1e-9
    lin = feats[:, :4][:, [1, 2, 3, 0]]  # (K, 4): X, 1
    b = np.stack([(w * x[..., 0]) @ lin, (w * x[..., 1]) @ lin]).transpose(2, 0, 1)  # (4, 2, N)
    sol = _solve_spd(g, b)  # (4, 2, N): rows of A (and t) per image axis
    return _nearest_scaled_rotation(sol[:3].transpose(1, 0, 2))


def _solve_spd(at: np.ndarray, bt: np.ndarray) -> np.ndarray:
    """Solve ``a x = b`` for a batch of symmetric positive definite matrices in batch-last layout:
    ``at`` (D, D, N), ``bt`` (D, N) or (D, M, N) -> ``x`` like ``bt``. Gaussian elimination without
    pivoting (stable for SPD matrices), each step one operation on all faces. NaN or inf where a matrix
    is singular (the caller drops those faces). The inputs are not modified."""
    at, bt = at.copy(), bt.copy()
    dim = at.shape[0]
    extra = (slice(None),) + (None,) * (bt.ndim - 2)  # f (D', N) against bt's (D', M..., N)
    with np.errstate(divide="ignore", invalid="ignore"):
        for j in range(dim - 1):
            f = at[j + 1:, j] / at[j, j]
            at[j + 1:, j:] -= f[:, None] * at[None, j, j:]
            bt[j + 1:] -= f[extra] * bt[j]
        x = np.empty_like(bt)
        for j in range(dim - 1, -1, -1):
            x[j] = (bt[j] - (at[j, j + 1:][extra] * x[j + 1:]).sum(0)) / at[j, j]
    return x


def _diag_rank1_solve(dm: np.ndarray, v: np.ndarray, alpha: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Solve ``(diag(dm) - alpha v v^T) y = x`` per face (Sherman-Morrison), batch-last.

    dm, v: (G, N); alpha: (N,); x: (G, M, N). Returns y (G, M, N).
    """
    xd = x / dm[:, None]
    vd = v / dm
    denom = 1.0 - alpha * (v * vd).sum(0)
    vx = (v[:, None] * xd).sum(0)  # (M, N)
    return xd + vd[:, None] * ((alpha / denom) * vx)[None]


def _rotate_by(q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``q @ expm([w]x)`` for batch-last rotations ``q`` (3, 3, N) and rotation vectors ``w`` (3, N)
    (Rodrigues: ``expm = cos t I + sin t / t [w]x + (1 - cos t) / t^2 w w^T``)."""
    x, y, z = w
    th2 = x * x + y * y + z * z
    th = np.sqrt(th2)
    small = th < 1e-8
    ths = np.where(small, 1.0, th)
    a = np.where(small, 1.0, np.sin(ths) / ths)
    b = np.where(small, 0.5, (1.0 - np.cos(ths)) / ths**2)
    c0 = 1.0 - b * th2
    bx, by, bz = b * x, b * y, b * z
    ax, ay, az = a * x, a * y, a * z
    bxy, bxz, byz = bx * y, bx * z, by * z
    r = np.empty((3, 3, len(th)))
    r[0, 0], r[1, 1], r[2, 2] = c0 + bx * x, c0 + by * y, c0 + bz * z
    r[0, 1], r[1, 0] = bxy - az, bxy + az
    r[0, 2], r[2, 0] = bxz + ay, bxz - ay
    r[1, 2], r[2, 1] = byz - ax, byz + ax
    return np.einsum("ijn,jkn->ikn", q, r)


def _robust_scale(e: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per face, 1.4826 x the median of the residual norms ``e`` (N, K) over points with ``w > 0``,
    at least :data:`MIN_SCALE` (face radii). (A sort per row: ``np.nanmedian`` takes a slow path for
    rows with NaN.)"""
    used = w > 0
    k = used.sum(1)
    s = np.sort(np.where(used, e, np.inf), axis=1)
    lo = np.take_along_axis(s, np.maximum((k - 1) // 2, 0)[:, None], 1)[:, 0]
    hi = np.take_along_axis(s, np.maximum(k // 2, 0)[:, None], 1)[:, 0]
    with np.errstate(all="ignore"):
        med = np.where(k > 0, (lo + hi) / 2, np.nan)
    return np.maximum(np.nan_to_num(1.4826 * med, nan=MIN_SCALE), MIN_SCALE)


def _fit_chunk(x: np.ndarray, w: np.ndarray, X: np.ndarray, masks: np.ndarray, iterations: int,
               huber: float | None, init_q: np.ndarray | None = None):
    """Gauss-Newton + IRLS for one chunk, on weighted moments (no per-point Jacobian is formed).

    x: (N, K, 2) normalised image points, y up; w: (N, K) prior weights; X: (K, 3) model points;
    masks: (G, K) 0/1, the points each expression mode shifts along model y (disjoint groups).
    Parameters per face: rotation increment (3), scale, mode coefficients (G); the 2D shift is
    eliminated exactly (weighted centroids). With per-point Jacobian rows ``J_ik = A_i Y_k + s q_i1 m_k``
    (``Y`` the centred model, ``m`` the centred mode masks), ``J^T W J`` and ``J^T W r`` follow from the
    weighted moments ``sum w Y Y^T``, ``sum w Y m^T``, ``sum w m m^T``, ``sum w Y z^T``, ``sum w m z^T``,
    which come from a few (N, K) x (K, F) products per iteration.
    The first two iterations are plain least squares (one for a refit); then Huber weights with a robust
    residual scale estimated then and two iterations later. ``init_q``: start from these rotations (a
    refit) instead of the affine camera's. Returns Q (N, 3, 3) = R^T and the mode coefficients (N, G).
    """
    n, k = w.shape
    g = len(masks)
    # Per-face parameters and the small matrices of the step are kept batch-last ((..., N), faces on the
    # contiguous axis): each small product is then one pass over all faces, not N tiny matrix products.
    q, s = _affine_init(x, X, w)  # q (3, 3, N): q[i, j] = Q_ij
    first_robust = 2  # plain least squares before this iteration
    if init_q is not None:  # a refit starts near the answer: robust from its second step
        q, first_robust = np.ascontiguousarray(init_q.transpose(1, 2, 0)), 1
    c = np.zeros((g, n))
    scale = None
    xs = X.T  # (3, K)
    f32 = np.float32  # per-point work in single precision; moments and the solve in double
    feats = np.concatenate([_moment_features(xs).T, masks, masks * xs[0], masks * xs[1], masks * xs[2]]
                           ).T.astype(f32)  # (K, 10 + 4G); this memory order fixes the float32 sums' rounding
    feats_z = np.concatenate([np.ones((1, k)), xs, masks]).T.astype(f32)  # (K, 4 + G)
    xs32, masks32 = xs.astype(f32), masks.astype(f32)
    u_img, v_img = x[..., 0].astype(f32), x[..., 1].astype(f32)
    w = w.astype(f32)
    ww = w
    for it in range(iterations):
        if huber is not None and it >= first_robust:
            delta = c.T.astype(f32) @ masks32  # (N, K) model y shift
            sq = (s * q[:2]).transpose(2, 0, 1).astype(f32)  # (N, 2, 3)
            r0 = u_img - (sq[:, 0] @ xs32 + sq[:, 0, 1:2] * delta)
            r1 = v_img - (sq[:, 1] @ xs32 + sq[:, 1, 1:2] * delta)
            wsum = np.maximum(ww.sum(1), 1e-12)[:, None]
            r0 -= (ww * r0).sum(1, keepdims=True) / wsum
            r1 -= (ww * r1).sum(1, keepdims=True) / wsum
            e = np.sqrt(r0 * r0 + r1 * r1) / np.maximum(np.abs(s), 1e-12).astype(f32)[:, None]
            if scale is None or it == first_robust + 2:
                scale = _robust_scale(e, w)[:, None].astype(f32)
            ww = w * np.minimum(f32(1.0), f32(huber) * scale / np.maximum(e, f32(1e-12)))
        a = (ww @ feats).T.astype(np.float64)  # (10 + 4G, N) weighted moments
        wsum = np.maximum(a[0], 1e-12)
        s1 = a[1:4].copy()  # (3, N)
        s2 = np.empty((3, 3, n))
        for j, (r, t) in enumerate(_PAIRS):
            s2[r, t] = s2[t, r] = a[4 + j]
        wg = a[10:10 + g]  # (G, N)
        gy = a[10 + g:10 + 4 * g].reshape(3, g, n)  # (3, G, N)
        bz = np.stack([(ww * u_img) @ feats_z, (ww * v_img) @ feats_z]).transpose(2, 0, 1).astype(np.float64)  # (4 + G, 2, N)
        sz = bz[0]  # (2, N)
        syz = bz[1:4].copy()  # (3, 2, N) sum w X z^T
        gz = bz[4:]  # (G, 2, N)
        if g:  # the model's y row is X_y + c_g on group g
            cw = c * wg
            s1[1] += cw.sum(0)
            s2[0, 1] += (c * gy[0]).sum(0)
            s2[2, 1] += (c * gy[2]).sum(0)
            s2[1, 0] = s2[0, 1]
            s2[1, 2] = s2[2, 1]
            s2[1, 1] += 2 * (c * gy[1]).sum(0) + (c * cw).sum(0)
            syz[1] += (c[:, None] * gz).sum(0)
            gy[1] += cw
        ybar = s1 / wsum
        zbar = sz / wsum
        mom = s2 - wsum * ybar[:, None] * ybar[None]  # (3, 3, N) sum w Y Y^T, centred
        zy = syz - wsum * ybar[:, None] * zbar[None]  # (3, 2, N) sum w Y z^T, centred
        q2 = q[:2]  # (2, 3, N)
        # rows i = 0, 1 of the camera at once: A_i = [-s [q_i]x ; q_i^T] (4, 3)
        sq2 = s * q2
        a4 = np.zeros((2, 4, 3, n))
        a4[:, 0, 1], a4[:, 0, 2] = sq2[:, 2], -sq2[:, 1]
        a4[:, 1, 0], a4[:, 1, 2] = -sq2[:, 2], sq2[:, 0]
        a4[:, 2, 0], a4[:, 2, 1] = sq2[:, 1], -sq2[:, 0]
        a4[:, 3] = q2
        am = np.einsum("irjn,jkn->irkn", a4, mom)  # (2, 4, 3, N)
        jtj = np.einsum("irkn,ickn->rcn", am, a4)  # (4, 4, N)
        res_y = zy.transpose(1, 0, 2) - s * np.einsum("ijn,jkn->ikn", q2, mom)  # (2, 3, N) sum w Y r_i
        jtr = np.einsum("irjn,ijn->rn", a4, res_y)  # (4, N)
        jtj[np.arange(4), np.arange(4)] += 1e-10
        if g:
            ay = gy - ybar[:, None] * wg[None]  # (3, G, N) sum w Y m^T, centred
            ez = gz - wg[:, None] * zbar[None]  # (G, 2, N) sum w m z^T, centred
            f = s * q2[:, 1]  # (2, N)
            cross = np.einsum("irjn,jgn,in->rgn", a4, ay, f)  # (4, G, N)
            ff = (f * f).sum(0)  # (N,)
            res_m = ez.transpose(1, 0, 2) - s * np.einsum("ijn,jgn->ign", q2, ay)  # (2, G, N) sum w m r_i
            jtr_m = (f[:, None] * res_m).sum(0)  # (G, N)
            # The mode block is ff (diag(W_g) - W_g W_g^T / W) + reg I: diagonal plus rank one. Eliminate
            # the modes (Schur complement, Sherman-Morrison) and solve the 4 x 4 rest.
            reg = ((NOISE_SIGMA / MODE_SIGMA) * s) ** 2
            jtr_m -= reg * c
            dm = ff * wg + reg + 1e-10  # (G, N) the diagonal
            alpha = ff / wsum
            both = _diag_rank1_solve(dm, wg, alpha, np.concatenate([cross.transpose(1, 0, 2), jtr_m[:, None]], 1))
            binv_ct, binv_r = both[:, :4], both[:, 4]  # (G, 4, N), (G, N)
            schur = jtj - np.einsum("rgn,gcn->rcn", cross, binv_ct)
            rhs = jtr - np.einsum("rgn,gn->rn", cross, binv_r)
            d4 = _solve_spd(schur, rhs)  # (4, N)
            dc = binv_r - np.einsum("gcn,cn->gn", binv_ct, d4)
        else:
            d4 = _solve_spd(jtj, jtr)
            dc = np.zeros((0, n))
        q = _rotate_by(q, d4[:3])
        s = s + d4[3]
        c = c + dc
    return q.transpose(2, 0, 1), c.T


def _fit_inputs(points98, valid98, model, point_weights, min_points):
    """The checked inputs of both pose estimators: ``(points (N, 98, 2) float64, model, prior weights
    (98,) or (N, 98), use (N, 98) bool, enough (N,) bool)``. A point is used where it is valid and finite,
    has a model point and a prior weight > 0; a face is fitted when it has ``min_points`` (at least 6)
    such points, one of them on the nose."""
    pts, ok = canonical_batch(points98, valid98)
    if model is None:
        raise PoseModelError("no face model given: pass model=landmark_unify.load_face_model() (or another FaceModel)")
    pw = model.default_weights() if point_weights is None else np.asarray(point_weights, dtype=np.float64)
    if pw.shape not in ((98,), (len(pts), 98)):
        raise MappingError(f"point_weights must be (98,) or (N, 98); got {pw.shape}")
    if (pw < 0).any() or not np.isfinite(pw).all():
        raise ValueError("point_weights must be finite and >= 0")
    use = ok & model.has_point[None] & (pw > 0)
    enough = (np.count_nonzero(use, axis=1) >= max(int(min_points), 6)) & use[:, NOSE].any(1)
    return pts, model, pw, use, enough


def estimate_pose(
    points98,
    valid98=None,
    *,
    model: FaceModel | None = None,
    point_weights=None,
    min_points: int = MIN_POINTS,
    iterations: int = ITERATIONS,
    huber: float | None = HUBER,
    occluded_weight=None,
    projected=False,
    return_rotation: bool = False,
):
    """Head pose of each face from its canonical landmarks.

    points98: ``(N, 98, 2)`` (or ``(98, 2)``) pixels, image y down, NaN where invalid.
    valid98: optional ``(N, 98)`` bool; only valid, finite points that have a model point are used.
    model: the mean 3D face, a :class:`FaceModel` (``landmark_unify.load_face_model()``). point_weights: ``(98,)`` or ``(N, 98)``
    prior weights (default ``model.default_weights()``: :data:`DEFAULT_POINT_WEIGHTS` times the model's
    calibration). min_points: faces with fewer usable points, or with no nose point, get NaN.
    occluded_weight: scalar or ``(N,)``; default the model's. Where it is below 1 and the model has
    normals, points facing away from the camera at the first fit's pose are down-weighted by it and the
    face is fitted again (1: one pass, e.g. for points projected from a 3D model, which are never hidden).
    projected: bool or ``(N,)`` bool, faces whose points are projections of a fitted 3D face model's points
    (300W-LP ``pt2d``, AFLW2000-3D ``pt3d_68``: the schemas of :data:`PROJECTED_CONTOUR_SCHEMAS`), not a
    human's clicks. They are fitted with ``model.projected`` (the shipped face's face for such points; the
    model itself when it has none), weights :data:`PROJECTED_CONTOUR_WEIGHTS` unless ``point_weights`` is
    given, and one pass (such points are never hidden) unless ``occluded_weight`` is given.
    Returns ``(N, 3)`` float32 pitch, yaw, roll in degrees (300W-LP ``Pose_Para`` convention, see the
    module docstring); with ``return_rotation`` also ``(N, 3, 3)`` float64 rotations R (NaN rows where
    unknown).
    """
    proj = np.asarray(projected, dtype=bool)
    if proj.any():
        return _estimate_split(points98, valid98, proj, model=model, point_weights=point_weights,
                               min_points=min_points, iterations=iterations, huber=huber,
                               occluded_weight=occluded_weight, return_rotation=return_rotation)
    pts, model, pw, use, enough = _fit_inputs(points98, valid98, model, point_weights, min_points)
    n = len(pts)
    ow = model.occluded_weight if occluded_weight is None else occluded_weight
    ow = np.broadcast_to(np.asarray(ow, dtype=np.float64), (n,))
    if not ((ow >= 0) & (ow <= 1)).all():
        raise ValueError("occluded_weight must be in [0, 1]")
    out = np.full((n, 3), np.nan)
    rot = np.full((n, 3, 3), np.nan)
    idx = np.flatnonzero(enough)
    cols = np.flatnonzero(use.any(0))  # points some face uses
    masks = model.modes[:, :, 1]
    model_pts, model_masks = model.points[cols], masks[:, cols]
    with _SingleThreadBLAS():
        _fit_all(pts, use, pw[..., cols], idx, cols, model_pts, model_masks, iterations, huber, out, rot)
        again = idx[(ow[idx] < 1) & np.isfinite(rot[idx]).all((1, 2))] if model.normals is not None else idx[:0]
        if again.size:
            # camera-z of each point's normal at the first pose: (R^T n)_z = R[:, :, 2] . n
            facing = np.einsum("nj,kj->nk", rot[again][:, :, 2], model.normals) > 0
            hidden = (~facing & use[again]).any(1)  # faces with no hidden point would refit to the same pose
            again, facing = again[hidden], facing[hidden]
            w2 = np.zeros((n, 98))
            w2[again] = np.broadcast_to(pw, (n, 98))[again] * np.where(facing, 1.0, ow[again, None])
            _fit_all(pts, use, w2[:, cols], again, cols, model_pts, model_masks, min(iterations, REFIT_ITERATIONS),
                     huber, out, rot, warm=True)
    out = out.astype(np.float32)
    return (out, rot) if return_rotation else out


def _estimate_split(points98, valid98, proj, *, model, point_weights, occluded_weight, return_rotation, **fit):
    """:func:`estimate_pose` with some faces marked ``projected``: each group fitted with its face model and
    defaults, the results put back in row order."""
    if model is None:
        raise PoseModelError("no face model given: pass model=landmark_unify.load_face_model() (or another FaceModel)")
    pts, ok = canonical_batch(points98, valid98)
    n = len(pts)
    if proj.ndim and proj.shape != (n,):
        raise MappingError(f"projected must be a bool or ({n},); got {proj.shape}")
    proj = np.broadcast_to(proj, (n,))
    pw = None if point_weights is None else np.asarray(point_weights, dtype=np.float64)
    ow = None if occluded_weight is None else np.broadcast_to(np.asarray(occluded_weight, dtype=np.float64), (n,))
    out = np.full((n, 3), np.nan, np.float32)
    rot = np.full((n, 3, 3), np.nan)
    groups = ((~proj, model, None, None), (proj, model.projected or model, PROJECTED_CONTOUR_WEIGHTS, 1.0))
    for rows, face, pw_default, ow_default in groups:
        if rows.any():
            rows_pw = pw_default if pw is None else (pw[rows] if pw.ndim == 2 else pw)
            out[rows], rot[rows] = estimate_pose(
                pts[rows], ok[rows], model=face, point_weights=rows_pw,
                occluded_weight=ow_default if ow is None else ow[rows], return_rotation=True, **fit)
    return (out, rot) if return_rotation else out


def _fit_all(pts, use, pw_cols, idx, cols, model_pts, model_masks, iterations, huber, out, rot,
             warm: bool = False) -> None:
    """Fit the faces ``idx`` in chunks of :data:`CHUNK`, writing their rows of ``out`` and ``rot``.
    ``warm``: start each face from its rotation in ``rot`` (a refit)."""
    for a in range(0, len(idx), CHUNK):
        _fit_rows(pts, use, pw_cols, idx[a:a + CHUNK], cols, model_pts, model_masks, iterations, huber, out, rot,
                  warm)


def _fit_rows(pts, use, pw_cols, sel, cols, model_pts, model_masks, iterations, huber, out, rot,
              warm: bool = False) -> None:
    u = np.take(use[sel], cols, axis=1)
    w = np.where(u, pw_cols if pw_cols.ndim == 1 else pw_cols[sel], 0.0)
    x = np.where(u[..., None], np.take(pts[sel], cols, axis=1), 0.0)
    x[..., 1] *= -1.0  # y up
    # normalise each face: weighted centroid at the origin, unit RMS radius
    wsum = w.sum(1)
    centre = np.matmul(w[:, None, :], x)[:, 0] / wsum[:, None]
    x -= centre[:, None, :]
    x *= u[..., None]
    radius = np.sqrt((w * (x * x).sum(-1)).sum(1) / wsum)
    x /= np.maximum(radius, 1e-12)[:, None, None]
    init = rot[sel].transpose(0, 2, 1) if warm else None
    q, _ = _fit_chunk(x, w, model_pts, model_masks, iterations, huber, init)
    r = q.transpose(0, 2, 1)
    good = np.isfinite(r).all((1, 2)) & (radius > 0)
    out[sel[good]] = euler_from_matrix(r[good])
    rot[sel[good]] = r[good]


# --- the solvePnP baseline --------------------------------------------------------------------------------

def estimate_pose_pnp(points98, valid98=None, image_size=None, *, model: FaceModel | None = None,
                      point_weights=None, min_points: int = MIN_POINTS) -> np.ndarray:
    """Per-face ``cv2.solvePnP`` baseline, same convention and output as :func:`estimate_pose`.

    It uses the points :func:`estimate_pose` uses (``point_weights`` > 0), unweighted. The real 3D mean
    face (model units) is placed in OpenCV's camera frame (x right, y down, z away
    from the camera) and matched to the pixel landmarks with a pinhole camera: focal length = image
    width, principal point = image centre. ``image_size``: ``(W, H)`` or ``(N, 2)``; when None the
    principal point is the landmarks' centre and the focal length the largest image extent implied by
    them (twice the landmark span). Solver: ``SOLVEPNP_SQPNP`` then Levenberg-Marquardt refinement
    (SQPnP is globally optimal; the iterative solver
    lands in a wrong minimum on some faces). Solutions with the face behind the camera are rejected (NaN).
    """
    import cv2

    pts, model, _, use, enough = _fit_inputs(points98, valid98, model, point_weights, min_points)  # unweighted
    n = len(pts)
    if image_size is not None:
        size = np.broadcast_to(np.asarray(image_size, dtype=np.float64).reshape(-1, 2), (n, 2))
    flip = np.diag([1.0, -1.0, -1.0])  # model frame -> OpenCV camera axes (a proper rotation)
    obj_all = model.raw_points @ flip.T
    out = np.full((n, 3), np.nan)
    for i in np.flatnonzero(enough):
        m = use[i]
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
