"""The batched pose fit (:func:`estimate_pose`): per face a weighted affine camera solved in closed form,
then Gauss-Newton with expression modes and Huber reweighting on weighted moments. Pure NumPy: the
caller decides how many BLAS threads it runs on (``landmark_unify.blas``)."""
from __future__ import annotations

import numpy as np

from ...errors import MappingError
from ..maps import canonical_batch
from .model import NOSE, PROJECTED_CONTOUR_WEIGHTS, FaceModel, PoseModelError
from .rotation import _nearest_scaled_rotation, _rotate_by, euler_from_matrix

MODE_SIGMA = 0.1  # prior sigma of a mode coefficient, in face radii
NOISE_SIGMA = 0.03  # landmark noise the prior is weighed against, in face radii
HUBER = 1.345  # Huber threshold, in robust residual scales (MAD) of the face
MIN_SCALE = 0.01  # lower bound of that scale, in face radii
ITERATIONS = 4  # Gauss-Newton steps (the dev-set accuracy is the same from 4 to 8, see docs/guides/pose.md)
REFIT_ITERATIONS = 2  # steps of the occlusion refit, started from the first fit's rotation
MIN_POINTS = 8
CHUNK = 512
#: A face whose used points spread less than this across their main direction (minor over major axis of
#: their scatter, weighted by the fit's point weights) lies on a line: its pose is unknown. Real faces
#: measure 0.15 and up (the AFLW2000-3D dev half's profiles; 0.20 and up on the 1992 shared sample faces).
MIN_SPREAD = 0.02

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
    n = len(w)
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
    feats, feats_z = _point_features(xs, masks)
    xs32, masks32 = xs.astype(f32), masks.astype(f32)
    u_img, v_img = x[..., 0].astype(f32), x[..., 1].astype(f32)
    w = w.astype(f32)
    ww = w
    for it in range(iterations):
        if huber is not None and it >= first_robust:
            e = _residual_norms(q, s, c, ww, xs32, masks32, u_img, v_img)
            if scale is None or it == first_robust + 2:
                scale = _robust_scale(e, w)[:, None].astype(f32)
            ww = w * np.minimum(f32(1.0), f32(huber) * scale / np.maximum(e, f32(1e-12)))
        wsum, wg, gy, gz, ybar, zbar, mom, zy = _weighted_moments(ww, feats, feats_z, u_img, v_img, c)
        a4, jtj, jtr = _camera_equations(q, s, mom, zy)
        if g:
            d4, dc = _solve_with_modes(q, s, c, a4, jtj, jtr, wsum, wg, gy, gz, ybar, zbar)
        else:
            d4 = _solve_spd(jtj, jtr)
            dc = np.zeros((0, n))
        q = _rotate_by(q, d4[:3])
        s = s + d4[3]
        c = c + dc
    return q.transpose(2, 0, 1), c.T


def _point_features(xs: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float32 per-point features of the model ``xs`` (3, K) and the mode ``masks`` (G, K): ``feats``
    (K, 10 + 4G), whose product with the weights gives the moments of the model and the modes, and
    ``feats_z`` (K, 4 + G), whose product with the weighted image points gives their cross moments."""
    f32 = np.float32
    k = xs.shape[1]
    feats = np.concatenate([_moment_features(xs).T, masks, masks * xs[0], masks * xs[1], masks * xs[2]]
                           ).T.astype(f32)  # (K, 10 + 4G); this memory order fixes the float32 sums' rounding
    feats_z = np.concatenate([np.ones((1, k)), xs, masks]).T.astype(f32)  # (K, 4 + G)
    return feats, feats_z


def _residual_norms(q, s, c, ww, xs32, masks32, u_img, v_img) -> np.ndarray:
    """``(N, K)`` float32 norms of the residuals at the current camera ``(q, s)`` and mode coefficients
    ``c``, in face radii: the 2D shift is the weighted (``ww``) centroid of the residuals."""
    f32 = np.float32
    delta = c.T.astype(f32) @ masks32  # (N, K) model y shift
    sq = (s * q[:2]).transpose(2, 0, 1).astype(f32)  # (N, 2, 3)
    r0 = u_img - (sq[:, 0] @ xs32 + sq[:, 0, 1:2] * delta)
    r1 = v_img - (sq[:, 1] @ xs32 + sq[:, 1, 1:2] * delta)
    wsum = np.maximum(ww.sum(1), 1e-12)[:, None]
    r0 -= (ww * r0).sum(1, keepdims=True) / wsum
    r1 -= (ww * r1).sum(1, keepdims=True) / wsum
    return np.sqrt(r0 * r0 + r1 * r1) / np.maximum(np.abs(s), 1e-12).astype(f32)[:, None]


def _weighted_moments(ww, feats, feats_z, u_img, v_img, c):
    """The weighted moments of one step, batch-last and in double: ``wsum`` (N,), the mode weights ``wg``
    (G, N), ``sum w Y m^T`` uncentred ``gy`` (3, G, N), ``sum w m z^T`` ``gz`` (G, 2, N), the centroids
    ``ybar`` (3, N) and ``zbar`` (2, N), and the centred ``mom = sum w Y Y^T`` (3, 3, N) and ``zy = sum w
    Y z^T`` (3, 2, N), with the model's y row moved by the mode coefficients ``c`` (G, N)."""
    g, n = c.shape
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
    return wsum, wg, gy, gz, ybar, zbar, mom, zy


def _camera_equations(q, s, mom, zy):
    """The normal equations of the camera's rotation increment and scale, batch-last: the Jacobian
    blocks ``a4`` (2, 4, 3, N) of both image rows, ``J^T W J`` (4, 4, N) and ``J^T W r`` (4, N)."""
    n = mom.shape[-1]
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
    return a4, jtj, jtr


def _solve_with_modes(q, s, c, a4, jtj, jtr, wsum, wg, gy, gz, ybar, zbar):
    """The step ``(d4 (4, N), dc (G, N))`` of camera and mode coefficients, the modes under their
    Gaussian prior. The mode block is ``ff (diag(W_g) - W_g W_g^T / W) + reg I``, diagonal plus rank one:
    the modes are eliminated (Schur complement, Sherman-Morrison) and the 4 x 4 rest is solved."""
    q2 = q[:2]
    ay = gy - ybar[:, None] * wg[None]  # (3, G, N) sum w Y m^T, centred
    ez = gz - wg[:, None] * zbar[None]  # (G, 2, N) sum w m z^T, centred
    f = s * q2[:, 1]  # (2, N)
    cross = np.einsum("irjn,jgn,in->rgn", a4, ay, f)  # (4, G, N)
    ff = (f * f).sum(0)  # (N,)
    res_m = ez.transpose(1, 0, 2) - s * np.einsum("ijn,jgn->ign", q2, ay)  # (2, G, N) sum w m r_i
    jtr_m = (f[:, None] * res_m).sum(0)  # (G, N)
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
    return d4, dc


def spread_ratio(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(N,)`` minor over major axis of the weighted scatter of each face's points ``(N, K, 2)``
    (``weights`` ``(N, K)``, points with weight 0 left out): 0 for points on a line (or one point), 1 for a
    round cloud; 0 where a face has no weighted point."""
    w = np.asarray(weights, dtype=np.float64)
    x = np.where(w[..., None] > 0, points, 0.0)
    wsum = np.maximum(w.sum(1), 1e-300)[:, None]
    d = x - ((w[..., None] * x).sum(1) / wsum)[:, None, :]
    u, v = d[..., 0], d[..., 1]
    return _axis_ratio((w * u * u).sum(1), (w * v * v).sum(1), (w * u * v).sum(1))


def _axis_ratio(cuu: np.ndarray, cvv: np.ndarray, cuv: np.ndarray) -> np.ndarray:
    """Minor over major axis of 2 x 2 scatter matrices ``[[cuu, cuv], [cuv, cvv]]``; 0 where they are 0."""
    half, root = (cuu + cvv) / 2, np.sqrt(((cuu - cvv) / 2) ** 2 + cuv**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.sqrt(np.maximum(half - root, 0.0) / (half + root))
    return np.nan_to_num(ratio, nan=0.0)


def _fit_inputs(points98, valid98, model, point_weights, min_points):
    """The checked inputs of both pose estimators: ``(points (N, 98, 2) float64, model, prior weights
    (98,) or (N, 98), use (N, 98) bool, enough (N,) bool)``. A point is used where it is valid and finite,
    has a model point and a prior weight > 0; a face is fitted when it has ``min_points`` (at least 6)
    such points, one of them on the nose (and, checked by each estimator, not all on a line:
    :data:`MIN_SPREAD`)."""
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
    # the scatter of the centred, unit-radius points (cuu + cvv = 1): points on a line have no pose
    cuu, cuv = (w * x[..., 0] * x[..., 0]).sum(1) / wsum, (w * x[..., 0] * x[..., 1]).sum(1) / wsum
    flat = _axis_ratio(cuu, 1.0 - cuu, cuv) < MIN_SPREAD
    init = rot[sel].transpose(0, 2, 1) if warm else None
    q, _ = _fit_chunk(x, w, model_pts, model_masks, iterations, huber, init)
    r = q.transpose(0, 2, 1)
    good = np.isfinite(r).all((1, 2)) & (radius > 0) & ~flat
    out[sel[good]] = euler_from_matrix(r[good])
    rot[sel[good]] = r[good]
