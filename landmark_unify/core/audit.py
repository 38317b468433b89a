"""Label audit from the points alone: a robust shape model learned from the faces being audited, and the
per-point and per-face signals of ``landmark_unify audit`` (``docs/spec/audit.md``).

Everything here is pure batched NumPy on canonical ``(N, 98, 2)`` points; the layout's names, groups and
mirrors give every index (:func:`outline_parts`, :func:`repairs`).

Shape model (:func:`fit_shape_model`)
-------------------------------------
Faces are similarity-aligned (complex least squares, per-point weights) to a mean shape scaled to an
inter-ocular distance (IOD, outer eye corners) of 1, so every residual is in IOD units. The mean is a
coordinate-wise median; a PCA of the aligned shapes (missing points filled from the current reconstruction)
gives a few modes. Errors do not teach it: each round refits every face robustly (Huber weights on its
point residuals), fills outlying points from the reconstruction, and leaves the faces with the largest
residuals (:data:`TRIM`) out of the next mean and covariance. Per point, a robust residual scale (MAD):
along the normal and the tangent of its outline for outline points (contour, brows, lips,
:data:`OUTLINE_GROUPS`), along x and y of the aligned frame for the others.

Scoring (:func:`score_shapes`)
------------------------------
Each face is fitted to the model (alignment + regularised mode coefficients, Huber reweighting), and each
point gets a z-score: on an outline, the normal component over its normal scale and the point's slide
along the outline relative to its neighbours over its scale (a group sliding along its outline is
annotation ambiguity and costs nothing, :func:`_components`); the 2D residual over its scales elsewhere.
The reported point z-score is the geometric mean of that and the point against a linear prediction from
its nearest points (:func:`fit_local`: of its own part on an outline), each divided by its point's tail
factor (how much more often than the typical point it strays: lip corners of twisted mouths, the contour
of turned faces); a face's point signal is its largest point z-score over the face's own typical one
(:func:`point_signal`). Faces whose residuals stand out are refitted under each *repair*
(a relabelling: the whole face mirrored, a mirror pair of parts exchanged, a part reversed or its ends
exchanged); a repair that explains the residuals names the finding (``swapped_left_right`` or
``reversed_order``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np

from .layouts import CANONICAL, Layout, get_layout

#: groups whose points lie on an outline: only the error normal to the outline is scored
OUTLINE_GROUPS = ("contour", "brow", "lip")
#: Huber threshold of the robust fits, in point z-scores
HUBER_Z = 2.5
#: share of the faces (largest residuals) left out of the mean and the covariance of the next round
TRIM = 0.1
#: rounds of the robust model fit
ROUNDS = 3
#: modes: as many as explain this share of the (robust) shape variance, at most MAX_MODES
VARIANCE_SHARE = 0.95
MAX_MODES = 16
#: a face needs this many valid points of the model (an eye corner each side among them) to be scored
MIN_FACE_POINTS = 10
#: a model needs this many faces (fewer: the caller pools, see ops.audit)
MIN_MODEL_FACES = 20
#: lower bound of a per-point residual scale, IOD
MIN_SIGMA = 0.005
#: a repair is taken when it cuts the robust cost of the points it relabels to this share or less. A relabelling
#: explains a mislabelled face almost wholly (on the WFLW test faces with injected swaps and reversals the cost
#: falls to a 25th in the median, to a 3rd or less in 527 of 529); on an odd face it can halve the cost by chance
#: (every repair taken on the untouched faces at 1/2 cut it by 2.0-2.8 times)
REPAIR_RATIO = 1 / 3
#: faces whose largest point or part z-score exceeds this are tried with every repair
REPAIR_GATE = 4.0
#: a repair is only considered where the points it relabels have at least this mean squared z-score
REPAIR_MIN_COST = 9.0
#: point z-scores are capped here in the face's robust cost
COST_CAP = 10.0
#: quantile of each point's z-scores over the model's faces that measures its tail (:func:`_point_tails`)
TAIL_QUANTILE = 0.99
#: a point's tail factor is at most this: beyond it the factor hid errors on the point itself (a mouth corner
#: moved 0.5 IOD, divided by its neighbour view's factor of 6, scored below the face's other points)
MAX_TAIL_FACTOR = 2.0
#: regressors of a point's local prediction: its nearest points in the mean shape (of its own part on an outline)
LOCAL_NEIGHBOURS = 8
#: a point is predicted locally from at least this many regressors (fewer: its model residual is scored instead)
MIN_LOCAL_NEIGHBOURS = 2
#: a point's local regression is learned from at least this many faces per coefficient (else it has none)
LOCAL_FACES_PER_COEF = 5
#: each round of a local regression's fit keeps this share of the faces (the smallest residuals)
LOCAL_KEEP = 0.9
#: a point of a loop faces a point across the solid the loop bounds (a brow's other edge, the other lip outline)
#: where that point lies within this cosine of its normal (:func:`facing_points`)
FACING_COS = 0.7
#: 90th percentile of the length of a standard 2D normal vector (the chi distribution with 2 degrees of freedom)
CHI2_Q90 = float(np.sqrt(-2 * np.log(0.1)))
#: median length of a standard 2D normal vector: a face's typical point z-score where its points are as
#: good as the model's
CHI2_MEDIAN = float(np.sqrt(2 * np.log(2)))


@dataclass(frozen=True)
class Part:
    """A named run of points of one group, in layout order along its outline (``closed``: a loop)."""

    name: str
    group: str
    indices: np.ndarray
    closed: bool

    @property
    def outline(self) -> bool:
        return self.group in OUTLINE_GROUPS


def _part_key(name: str) -> str:
    tokens = name.split("_")
    return tokens[0] if len(tokens) < 2 or tokens[1].isdigit() else "_".join(tokens[:2])


def outline_parts(layout: Layout | str = CANONICAL) -> tuple[Part, ...]:
    """The parts of a layout, from its point names: a part is the points sharing the name's first two
    tokens (``brow_l``, ``lip_outer``, ``nose_base``; one token when the second is a number: ``contour``),
    in layout order; it is a closed loop when its names hold both ``upper`` and ``lower`` points."""
    lay = get_layout(layout) if isinstance(layout, str) else layout
    order: dict[str, list[int]] = {}
    for i, n in enumerate(lay.names):
        order.setdefault(_part_key(n), []).append(i)
    parts = []
    for key, idx in order.items():
        tokens = {t for i in idx for t in lay.names[i].split("_")}
        parts.append(Part(key, lay.groups[idx[0]], np.array(idx, np.intp), {"upper", "lower"} <= tokens))
    return tuple(parts)


@dataclass(frozen=True)
class Repair:
    """A relabelling that would undo one annotation error: ``perm`` (point i of the repaired face is point
    ``perm[i]`` of the face as given), the ``findings`` it stands for, and the ``part`` it concerns."""

    name: str
    findings: tuple[str, ...]
    part: str
    perm: np.ndarray


def repairs(layout: Layout | str = CANONICAL, present: np.ndarray | None = None) -> tuple[Repair, ...]:
    """Every relabelling the audit tries on a suspect face, derived from the layout: the whole face's
    mirror permutation; each mirror pair of parts exchanged (``eye_l/eye_r``); each part of three points or
    more in reversed order and, for a loop, with its ends exchanged (the reflection that maps its first
    point to the middle one: outer and inner eye corner, lip corners, brow ends). Identical permutations
    are merged, with every name they stand for (reversing the contour is also swapping its sides).

    ``present``: ``(K,)`` bool, the points the faces have (a face mapped from a layout with fewer points):
    each part is then the run of its present points, a loop with points missing is an open run (a 68-point
    face's brow is its upper edge: reversed, that edge is reversed), and a relabelling that would move a
    present point onto a missing one is not tried."""
    lay = get_layout(layout) if isinstance(layout, str) else layout
    k = lay.num_points
    ident = np.arange(k)
    flip = np.asarray(lay.flip_indices)
    have = np.ones(k, bool) if present is None else np.asarray(present, bool)
    found: dict[bytes, Repair] = {}

    def add(name, finding, part, perm):
        if np.array_equal(perm, ident) or not np.array_equal(have[perm], have):
            return
        key = perm.tobytes()
        if key in found:
            old = found[key]
            names = tuple(dict.fromkeys(old.findings + (finding,)))
            found[key] = Repair(old.name, names, old.part, old.perm)
        else:
            found[key] = Repair(name, (finding,), part, perm)

    add("face mirrored", "swapped_left_right", "face", flip.copy())
    parts = tuple(Part(p.name, p.group, p.indices[have[p.indices]], p.closed and bool(have[p.indices].all()))
                  for p in outline_parts(lay) if have[p.indices].any())
    by_point = {int(i): p for p in parts for i in p.indices}
    for p in parts:
        partner = {by_point[int(flip[i])].name for i in p.indices}
        if partner == {p.name}:
            continue
        q = by_point[int(flip[p.indices[0]])]
        if p.name < q.name:
            perm = ident.copy()
            both = np.concatenate([p.indices, q.indices])
            perm[both] = flip[both]
            add(f"{p.name}/{q.name} exchanged", "swapped_left_right", f"{p.name}/{q.name}", perm)
    for p in parts:
        n = len(p.indices)
        if n < 3:
            continue
        if p.closed:
            j = np.arange(n)
            perm = ident.copy()
            perm[p.indices] = p.indices[(n // 2 - j) % n]
            add(f"{p.name} ends exchanged", "swapped_left_right", p.name, perm)
        perm = ident.copy()
        perm[p.indices] = p.indices[::-1]
        add(f"{p.name} reversed", "reversed_order", p.name, perm)
        if not p.closed and all(by_point[int(flip[i])] is p for i in p.indices):
            mirror = ident.copy()
            mirror[p.indices] = flip[p.indices]
            add(f"{p.name} sides swapped", "swapped_left_right", p.name, mirror)
    return tuple(found.values())


# --- alignment ------------------------------------------------------------------------------------------------

def _complex(points: np.ndarray) -> np.ndarray:
    return points[..., 0] + 1j * points[..., 1]


def similarity_align(z: np.ndarray, w: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(N, K)`` complex: each face ``z`` (complex points, any value where ``w`` is 0) mapped by the
    similarity transform ``a z + b`` that best fits ``target`` (``(K,)`` or ``(N, K)``) in weighted least
    squares. Faces with no weight come back NaN."""
    w = np.where(np.isfinite(z), w, 0.0)
    use = w > 0
    zz = np.where(use, z, 0)
    tt = np.where(use, target, 0)
    sw = w.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        zc = (w * zz).sum(1, keepdims=True) / sw
        tc = (w * tt).sum(1, keepdims=True) / sw
        dz = zz - zc  # zero-weight points add nothing below: their w is 0
        wdz = w * dz
        num = (np.conj(wdz) * (tt - tc)).sum(1, keepdims=True)
        den = (wdz.real * dz.real + wdz.imag * dz.imag).sum(1, keepdims=True)
        a = num / den
    return a * (z - zc) + tc


def nan_quantile(x: np.ndarray, q: float, axis: int = 0) -> np.ndarray:
    """``np.nanquantile(x, q, axis)`` (linear interpolation) by one sort: NaNs sort last, so each column's
    finite values are its first ``count``. NumPy's own NaN-aware reductions go through masked arrays or a
    Python loop per column, which made them most of the audit's time. NaN for a column with no finite value."""
    s = np.sort(np.moveaxis(np.asarray(x, np.float64), axis, -1), axis=-1)
    n = np.isfinite(s).sum(-1)
    pos = q * np.maximum(n - 1, 0)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    a = np.take_along_axis(s, lo[..., None], -1)[..., 0]
    b = np.take_along_axis(s, hi[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore"):
        out = a + (b - a) * (pos - lo)
    return np.where(n > 0, out, np.nan)


def nan_median(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """``np.nanmedian(x, axis)`` (:func:`nan_quantile` at 0.5)."""
    return nan_quantile(x, 0.5, axis)


def _weighted_median(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Column-wise median of ``x`` (N, D) over the rows where ``ok``; NaN for an empty column."""
    return nan_median(np.where(ok, x, np.nan), axis=0)


def _mad(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    med = _weighted_median(x, ok)
    return 1.4826 * _weighted_median(np.abs(x - med), ok)


def _tail_scale(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Column-wise scale of ``x`` from its 90th percentile of absolute values (a normal's: 1.645 sigma):
    a point whose errors have heavy tails (lip corners) gets a wider scale than its MAD would give."""
    return nan_quantile(np.where(ok, np.abs(x), np.nan), 0.9, axis=0) / 1.645


# --- the model --------------------------------------------------------------------------------------------------

@dataclass
class ShapeModel:
    """A robust point-distribution model of one group of faces (a layout and pose bin), in IOD units.

    ``mean``: ``(K,)`` complex mean shape (IOD 1, centred). ``basis``: ``(2K, M)`` modes (real and imaginary
    parts stacked: ``[x_0..x_K-1, y_0..y_K-1]``), ``mode_sigma``: ``(M,)`` their robust standard deviations.
    ``points``: ``(K,)`` bool, the points the model has. ``axes``: ``(K, 2)`` complex unit directions
    along which residuals are measured (normal, tangent for outline points; 1, 1j otherwise).
    ``sigma``: ``(K, 2)`` robust residual scale along those axes. ``faces``: faces it was fitted on.
    """

    mean: np.ndarray
    basis: np.ndarray
    mode_sigma: np.ndarray
    points: np.ndarray
    axes: np.ndarray
    sigma: np.ndarray
    outline: np.ndarray
    faces: int
    key: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def modes(self) -> int:
        return self.basis.shape[1]

    def to_dict(self) -> dict:
        return {"key": self.key, "faces": int(self.faces), "modes": int(self.modes),
                "points": int(self.points.sum())}


def _axes(mean: np.ndarray, parts: tuple[Part, ...], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit normal and tangent of every outline point of ``mean`` (1 and 1j elsewhere), and the outline mask."""
    axes = np.tile(np.array([1.0 + 0j, 1j]), (k, 1))
    outline = np.zeros(k, bool)
    centre = np.nanmean(mean)
    for p in parts:
        if not p.outline or len(p.indices) < 2:
            continue
        m = mean[p.indices]
        if not np.isfinite(m).all():
            continue
        nxt = np.roll(m, -1) if p.closed else np.concatenate([m[1:], m[-1:]])
        prv = np.roll(m, 1) if p.closed else np.concatenate([m[:1], m[:-1]])
        t = nxt - prv
        t = t / np.where(np.abs(t) > 0, np.abs(t), 1)
        n = t * -1j
        ref = m - (m.mean() if p.closed else centre)
        n = np.where((np.conj(n) * ref).real < 0, -n, n)  # outward
        axes[p.indices, 0], axes[p.indices, 1] = n, t
        outline[p.indices] = True
    return axes, outline


@cache
def neighbours(layout: str = CANONICAL) -> np.ndarray:
    """``(K, 2)`` the previous and next point of each outline point along its outline (-1 where there is
    none: the ends of an open outline, points off outlines)."""
    lay = get_layout(layout)
    out = np.full((lay.num_points, 2), -1, np.intp)
    for p in outline_parts(lay):
        if not p.outline or len(p.indices) < 2:
            continue
        idx = p.indices
        prev = np.roll(idx, 1) if p.closed else np.concatenate([[-1], idx[:-1]])
        nxt = np.roll(idx, -1) if p.closed else np.concatenate([idx[1:], [-1]])
        out[idx, 0], out[idx, 1] = prev, nxt
    return out


def _nan_median3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Element-wise ``nanmedian`` of three arrays, without a sort: the middle of three finite values, the
    mean of two, the one, or NaN."""
    with np.errstate(invalid="ignore"):
        out = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
        odd = ~np.isfinite(a + b + c)  # a missing neighbour or value: rare, done on those elements alone
    if not odd.any():
        return out
    a, b, c = np.broadcast_to(a, odd.shape)[odd], np.broadcast_to(b, odd.shape)[odd], np.broadcast_to(c, odd.shape)[odd]
    fa, fb, fc = np.isfinite(a), np.isfinite(b), np.isfinite(c)
    n = fa.astype(np.int8) + fb + fc
    a0, b0, c0 = np.where(fa, a, 0.0), np.where(fb, b, 0.0), np.where(fc, c, 0.0)
    mid = np.maximum(np.minimum(a0, b0), np.minimum(np.maximum(a0, b0), c0))
    total = a0 + b0 + c0
    with np.errstate(invalid="ignore"):
        out[odd] = np.where(n == 3, mid, np.where(n == 2, total / 2, np.where(n == 1, total, np.nan)))
    return out


def _components(r: np.ndarray, axes: np.ndarray, layout: str = CANONICAL) -> np.ndarray:
    """``(N, K, 2)`` residual components of complex residuals ``r`` (N, K) along ``axes`` (K, 2). On an
    outline the second component is the point's slide along the outline *relative to its neighbours*
    (its tangent component minus the median of its own and its two neighbours'): a whole group sliding
    along its outline (annotation ambiguity) costs nothing, a point slid out of its place among its
    neighbours does, and its neighbours are not blamed for it."""
    comp = np.empty(r.shape + (2,))
    for j in range(2):  # the real part of conj(axis) * r, without the complex product
        comp[..., j] = axes[:, j].real * r.real + axes[:, j].imag * r.imag
    nbr = neighbours(layout)
    on = (nbr >= 0).any(1)
    if r.shape[1] != len(nbr) or not on.any():
        return comp
    t = comp[..., 1].copy()
    local = t.copy()  # off outlines the slide is the tangent component itself
    both = (nbr >= 0).all(1)
    if both.any():  # the median of a point and its two neighbours
        local[:, both] = _nan_median3(t[:, nbr[both, 0]], t[:, both], t[:, nbr[both, 1]])
    end = on & ~both
    if end.any():  # the end of an open outline: the mean of it and its one neighbour
        other = t[:, nbr[end].max(1)]
        local[:, end] = np.where(np.isfinite(other), (t[:, end] + other) / 2, t[:, end])
    comp[..., 1] = np.where(on[None], t - np.where(np.isfinite(local), local, t), t)
    return comp


def _point_z(comp: np.ndarray, sigma: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """Point z-scores from residual components (:func:`_components`): the length of the residual with each
    component over its scale (normal and slide relative to the neighbours on an outline, x and y elsewhere)."""
    zn = np.abs(comp[..., 0]) / sigma[:, 0]
    zt = np.abs(comp[..., 1]) / sigma[:, 1]
    return np.sqrt(zn ** 2 + zt ** 2)


def _project(y: np.ndarray, w: np.ndarray, mean: np.ndarray, basis: np.ndarray, mode_sigma: np.ndarray,
             noise: float) -> np.ndarray:
    """Mode coefficients ``(N, M)`` of aligned faces ``y`` (N, K complex) with point weights ``w``: ridge
    regression with the modes' prior (noise / sigma)^2. The normal matrices come from one product with the
    outer products of the basis rows (no (N, M, 2K) array)."""
    n, k = y.shape
    m = basis.shape[1]
    if m == 0:
        return np.zeros((n, 0))
    d = y - mean
    d = np.where(w > 0, d, 0)
    dv = np.concatenate([d.real, d.imag], 1)  # (N, 2K)
    wv = np.concatenate([w, w], 1)
    outer = (basis[:, :, None] * basis[:, None, :]).reshape(2 * k, m * m)
    a = (wv @ outer).reshape(n, m, m) + np.diag((noise / mode_sigma) ** 2)[None]
    b = (wv * dv) @ basis
    return np.linalg.solve(a, b[..., None])[..., 0]


def _reconstruct(c: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    k = mean.shape[0]
    v = c @ basis.T if basis.shape[1] else np.zeros((len(c), 2 * k))
    return mean[None] + v[:, :k] + 1j * v[:, k:]


#: faces fitted at once (bounds the memory of a fit)
CHUNK = 4096


def fit_faces(z: np.ndarray, ok: np.ndarray, model: ShapeModel, iterations: int = 3, leave_out=None):
    """:func:`_fit_faces` in chunks of :data:`CHUNK` faces."""
    if len(z) <= CHUNK:
        return _fit_faces(z, ok, model, iterations, leave_out)
    parts = [_fit_faces(z[i:i + CHUNK], ok[i:i + CHUNK], model, iterations, leave_out)
             for i in range(0, len(z), CHUNK)]
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))


def _fit_faces(z: np.ndarray, ok: np.ndarray, model: ShapeModel, iterations: int = 3, leave_out=None):
    """Robust fit of faces ``z`` (N, K complex, usable where ``ok``) to ``model``: alternately align to the
    reconstruction and solve the mode coefficients, with Huber weights on the point z-scores.
    ``leave_out``: ``(K,)`` bool, points that take no part in the fit (their residuals are still given:
    how far they lie from where the rest of the face puts them).
    Returns ``(residual (N, K) complex in IOD, z-scores (N, K), weights (N, K))``; NaN where unusable."""
    use = ok & model.points[None]
    fit_ok = use if leave_out is None else use & ~np.asarray(leave_out, bool)[None]
    w = fit_ok.astype(np.float64)
    noise = float(np.median(model.sigma))
    target = np.broadcast_to(model.mean, z.shape)
    for _ in range(iterations):
        y = similarity_align(z, w, target)
        c = _project(y, w, model.mean, model.basis, model.mode_sigma, noise)
        target = _reconstruct(c, model.mean, model.basis)
        y = similarity_align(z, w, target)
        r = np.where(use, y - target, np.nan)
        zs = _point_z(_components(r, model.axes), model.sigma, model.outline)
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(fit_ok, np.minimum(1.0, HUBER_Z / np.maximum(np.nan_to_num(zs, nan=0.0), 1e-9)), 0.0)
    return r, np.where(use, zs, np.nan), w


def normalise_iod(mean: np.ndarray, norm: tuple[int, int]) -> np.ndarray:
    """``mean`` centred and scaled to an inter-ocular distance of 1 (the eye corners level, left to right)."""
    a, b = mean[norm[0]], mean[norm[1]]
    rot = np.conj(b - a) / np.abs(b - a) ** 2
    out = (mean - np.nanmean(mean)) * rot
    return out


def fit_shape_model(points: np.ndarray, valid: np.ndarray, *, layout: str = CANONICAL, key: str = "",
                    rounds: int = ROUNDS) -> ShapeModel:
    """A robust :class:`ShapeModel` of faces ``points`` (N, K, 2) with validity ``valid`` (N, K).
    The model's points are those valid in at least half the faces; faces missing an eye corner of the
    layout's ``norm_pair`` do not take part. Raises ValueError with fewer than :data:`MIN_MODEL_FACES`
    usable faces."""
    lay = get_layout(layout)
    k = lay.num_points
    parts = outline_parts(lay)
    z = _complex(np.asarray(points, np.float64))
    ok = np.asarray(valid, bool) & np.isfinite(z)
    norm = lay.norm_indices
    have = ok[:, list(norm)].all(1)
    with np.errstate(invalid="ignore"):
        have &= np.abs(z[:, norm[0]] - z[:, norm[1]]) > 0  # coincident eye corners: no frame
    z, ok = z[have], ok[have]
    pts = ok.mean(0) >= 0.5 if len(z) else np.zeros(k, bool)
    ok = ok & pts[None]
    enough = ok.sum(1) >= MIN_FACE_POINTS
    z, ok = z[enough], ok[enough]
    n = len(z)
    if n < MIN_MODEL_FACES:
        raise ValueError(f"{n} usable faces (both eye corners and {MIN_FACE_POINTS}+ points); a shape model "
                         f"needs {MIN_MODEL_FACES}")
    # start: faces centred and scaled by their eye corners, eye corners level
    a, b = z[:, norm[0]], z[:, norm[1]]
    z0 = (z - ((a + b) / 2)[:, None]) * (np.conj(b - a) / np.abs(b - a) ** 2)[:, None]
    w = ok.astype(np.float64)
    mean = normalise_iod(_median_c(z0, ok), norm)
    for _ in range(3):
        y = similarity_align(z, w, mean)
        mean = normalise_iod(_median_c(y, ok), norm)
    axes, outline = _axes(mean, parts, k)
    model = ShapeModel(mean, np.zeros((2 * k, 0)), np.zeros(0), pts, axes, np.full((k, 2), 0.05), outline, n, key)
    keep = np.ones(n, bool)
    for r_i in range(rounds):
        r, zs, wts = fit_faces(z, ok, model)
        y = similarity_align(z, np.where(ok, wts, 0), model.mean)
        # fill missing and outlying points from the reconstruction, then mean and modes of the kept faces
        recon = y - np.nan_to_num(r, nan=0.0)
        inlier = ok & (np.nan_to_num(zs, nan=np.inf) <= 3 * HUBER_Z)
        filled = np.where(inlier, y, recon)
        filled = np.where(np.isfinite(filled), filled, model.mean[None])
        mean = normalise_iod(_median_c(filled[keep], np.ones_like(ok[keep])), norm)
        filled = similarity_align(filled, np.ones(filled.shape) * pts[None], mean)
        d = filled[keep] - mean
        dv = np.concatenate([d.real, d.imag], 1)
        dv = np.where(np.concatenate([pts, pts])[None], dv, 0.0)
        ev, vec = np.linalg.eigh(dv.T @ dv / max(len(dv) - 1, 1))
        var, vt = np.maximum(ev[::-1], 0), vec[:, ::-1].T
        share = np.cumsum(var) / max(var.sum(), 1e-12)
        m = int(min(MAX_MODES, np.searchsorted(share, VARIANCE_SHARE) + 1, len(dv) // 5))
        axes, outline = _axes(mean, parts, k)
        basis = vt[:m].T
        model = ShapeModel(mean, basis, np.sqrt(var[:m]), pts, axes, model.sigma, outline, n, key)
        r, zs, _ = fit_faces(z, ok, model)
        comp = _components(r, axes)
        cost = np.nanmean(np.minimum(zs, COST_CAP) ** 2, axis=1)
        keep = cost <= np.quantile(cost, 1 - TRIM) if r_i < rounds - 1 else keep
        sig = np.stack([_tail_scale(comp[..., 0], ok), _tail_scale(comp[..., 1], ok)], 1)
        # a point's residual scale, measured on the faces kept (its own noise, not the outliers')
        sig_keep = np.stack([_tail_scale(comp[keep][..., 0], ok[keep]), _tail_scale(comp[keep][..., 1], ok[keep])], 1)
        sig = np.where(np.isfinite(sig_keep), sig_keep, sig)
        sig = np.where(np.isfinite(sig), np.maximum(sig, MIN_SIGMA), 1.0)
        model = ShapeModel(mean, basis, np.sqrt(var[:m]), pts, axes, sig, outline, n, key)
    model.extra.update(_part_calibration(z[keep], ok[keep], model, lay))
    model.extra.update(_thickness_calibration(z[keep], ok[keep], model, lay))
    _, zs, wts = fit_faces(z, ok, model)
    model.extra["point_tail"] = _point_tails(zs)
    # every face: the regressions trim their own outliers, and a point's tail is measured where it is
    y = similarity_align(z, np.where(ok, wts, 0), model.mean)
    model.extra["local"] = fit_local(y, ok, model.mean, pts, parts)
    return model


# --- each point predicted from its neighbours ------------------------------------------------------------------------

@dataclass
class LocalModel:
    """Each point's position predicted from a few nearby points (``neighbours``, ``(K, L)``, -1 padding) by a
    linear regression learned from the model's faces in the aligned frame (``coef``, ``(K, 2L + 1, 2)``: x and
    y of the neighbours, then 1), with the inverse covariance of its residual (``icov``, ``(K, 2, 2)``), scaled
    so that its z-score's 90th percentile is a normal vector's; ``tail``: the tail factor of those z-scores
    (:func:`_point_tails`). ``usable``: points with a prediction."""

    neighbours: np.ndarray
    coef: np.ndarray
    icov: np.ndarray
    tail: np.ndarray
    usable: np.ndarray


def local_neighbours(mean: np.ndarray, points: np.ndarray, parts: tuple[Part, ...], n: int = LOCAL_NEIGHBOURS
                     ) -> np.ndarray:
    """``(K, n)`` the regressors of each point (-1 padding): its ``n`` nearest points of the model in the mean
    shape; for an outline point only those of its own part, so a part moved or slid along its outline as a
    whole (the part signals' business, or annotation ambiguity) leaves its points' local residuals alone."""
    k = len(mean)
    d = np.abs(mean[:, None] - mean[None, :])
    d[:, ~points] = np.inf
    np.fill_diagonal(d, np.inf)
    part_of = np.full(k, -1)
    outline_part = np.zeros(len(parts), bool)
    for j, p in enumerate(parts):
        part_of[p.indices] = j
        outline_part[j] = p.outline
    out = np.full((k, n), -1, np.intp)
    for i in np.flatnonzero(points):
        di = d[i].copy()
        if part_of[i] >= 0 and outline_part[part_of[i]]:
            di[part_of != part_of[i]] = np.inf
        order = np.argsort(di, kind="stable")[:n]
        order = order[np.isfinite(di[order])]
        out[i, :len(order)] = order
    return out


def _local_design(y: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """``(N, 2L + 1)`` regressors of one point: its neighbours' x, y (0 for padding) and 1."""
    idx = np.maximum(nb, 0)
    v = np.where(nb >= 0, y[:, idx], 0)
    return np.concatenate([v.real, v.imag, np.ones((len(y), 1))], 1)


def fit_local(y: np.ndarray, ok: np.ndarray, mean: np.ndarray, points: np.ndarray, parts: tuple[Part, ...]
              ) -> LocalModel:
    """:class:`LocalModel` from aligned faces ``y`` (N, K complex, usable where ``ok``). Each point's
    regression is fitted on the faces where it and its regressors are usable, three rounds of least squares
    each keeping the :data:`LOCAL_KEEP` share of faces with the smallest residual (errors do not teach it)."""
    k = len(mean)
    nb = local_neighbours(mean, points, parts)
    width = 2 * nb.shape[1] + 1
    coef = np.zeros((k, width, 2))
    icov = np.zeros((k, 2, 2))
    usable = np.zeros(k, bool)
    zs = np.full(y.shape, np.nan)
    for i in range(k):
        nbi = nb[i]
        if (nbi >= 0).sum() < MIN_LOCAL_NEIGHBOURS:
            continue
        rows = ok[:, i] & ok[:, nbi[nbi >= 0]].all(1)
        if rows.sum() < max(MIN_MODEL_FACES, LOCAL_FACES_PER_COEF * width):
            continue  # too few faces to learn the regression: the point is scored by the model fit alone
        x = _local_design(y[rows], nbi)
        t = np.stack([y[rows, i].real, y[rows, i].imag], 1)
        keep = np.ones(len(x), bool)
        for _ in range(3):
            beta = np.linalg.lstsq(x[keep], t[keep], rcond=None)[0]
            res = t - x @ beta
            c = np.cov(res[keep].T) + np.eye(2) * MIN_SIGMA ** 2
            ic = np.linalg.inv(c)
            q = np.einsum("ni,ij,nj->n", res, ic, res)
            keep = q <= np.quantile(q, LOCAL_KEEP)
        zi = np.sqrt(q)
        scale = np.quantile(zi, 0.9) / CHI2_Q90
        if not scale > 0:
            continue
        coef[i], icov[i], usable[i] = beta, ic / scale ** 2, True
        zs[rows, i] = zi / scale
    tail = _point_tails(zs)
    return LocalModel(nb, coef, icov, tail, usable)


def local_z(y: np.ndarray, ok: np.ndarray, lm: LocalModel) -> np.ndarray:
    """``(N, K)`` each point's z-score against its local prediction (over its tail factor); NaN where the
    point or one of its regressors is not usable, or the point has no prediction."""
    n, k = y.shape
    out = np.full((n, k), np.nan)
    for i in np.flatnonzero(lm.usable):
        nbi = lm.neighbours[i]
        rows = ok[:, i] & ok[:, nbi[nbi >= 0]].all(1)
        if not rows.any():
            continue
        res = np.stack([y[rows, i].real, y[rows, i].imag], 1) - _local_design(y[rows], nbi) @ lm.coef[i]
        out[rows, i] = np.sqrt(np.einsum("ni,ij,nj->n", res, lm.icov[i], res)) / lm.tail[i]
    return out


def _point_tails(zs: np.ndarray) -> np.ndarray:
    """``(K,)`` how much heavier each point's tail of z-scores is than the typical point's: its
    :data:`TAIL_QUANTILE` over its 90th percentile, over the median of that ratio across points, between 1
    and :data:`MAX_TAIL_FACTOR`.
    The scales are set at the 90th percentile; a point whose annotations scatter far more often than that
    (lip corners of twisted mouths, the contour of turned faces) gets its reported z-scores divided by this,
    so the faces' largest point z-score is not always one of those points."""
    lo = nan_quantile(zs, 0.9, axis=0)
    hi = nan_quantile(zs, TAIL_QUANTILE, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = hi / lo
    fin = np.isfinite(ratio) & (ratio > 0)
    if not fin.any():
        return np.ones(zs.shape[1])
    return np.where(fin, np.clip(ratio / np.median(ratio[fin]), 1.0, MAX_TAIL_FACTOR), 1.0)


def model_parts(model: ShapeModel, layout: Layout) -> list[Part]:
    """The parts of ``layout`` with two points or more in ``model``."""
    return [p for p in outline_parts(layout) if model.points[p.indices].sum() >= 2]


def _part_residuals(z, ok, model, part):
    """Residual components ``(N, n, 2)`` of one part's points when the face is fitted without them."""
    leave = np.zeros(model.points.shape, bool)
    leave[part.indices] = True
    r, _, _ = fit_faces(z, ok, model, leave_out=leave)
    return _components(r, model.axes)[:, part.indices]


def _shift(comp: np.ndarray, axes: np.ndarray, outline: bool) -> np.ndarray:
    """A part's shift ``(N, 3)`` from its residual components (N, n, 2) along ``axes`` (n, 2): on an outline,
    the translation (x, y) and the outward offset that best explain the normal components alone (least
    squares; the tangent components are never used); elsewhere the mean residual (x, y) and 0."""
    import warnings

    n_faces = comp.shape[0]
    out = np.full((n_faces, 3), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if not outline:
            out[:, 0], out[:, 1], out[:, 2] = np.nanmean(comp[..., 0], 1), np.nanmean(comp[..., 1], 1), 0.0
            return out
        nrm = axes[:, 0]
        design = np.stack([nrm.real, nrm.imag, np.ones(len(nrm))], 1)  # (n, 3)
        c = comp[..., 0]
        ok = np.isfinite(c)
        w = ok.astype(np.float64)
        a = np.einsum("nk,ki,kj->nij", w, design, design) + 1e-6 * np.eye(3)
        b = np.einsum("nk,ki->ni", w * np.nan_to_num(c), design)
        sol = np.linalg.solve(a, b[..., None])[..., 0]
        out[ok.sum(1) >= 3] = sol[ok.sum(1) >= 3]
    return out


#: faces the part scales are measured on at most (an even spread of the model's kept faces): quantiles of
#: a few thousand faces are as good, and every part costs a fit of them
PART_CALIBRATION_FACES = 5000


def _part_calibration(z, ok, model, layout) -> dict:
    """Per part, from the faces the model kept: the robust scale of each point's residual when the part is
    left out of the fit (``part_sigma``, (K, 2)), and the robust scale of the part's shift (``shift_sigma``)."""
    if len(z) > PART_CALIBRATION_FACES:
        pick = np.linspace(0, len(z) - 1, PART_CALIBRATION_FACES).round().astype(np.intp)
        z, ok = z[pick], ok[pick]
    sig = model.sigma.copy()
    shift_sigma = {}
    for p in model_parts(model, layout):
        comp = _part_residuals(z, ok, model, p)
        okp = ok[:, p.indices]
        s = np.stack([_tail_scale(comp[..., 0], okp), _tail_scale(comp[..., 1], okp)], -1)
        sig[p.indices] = np.where(np.isfinite(s), np.maximum(s, MIN_SIGMA), sig[p.indices])
        sh = _shift(comp, model.axes[p.indices], p.outline)
        fin = np.isfinite(sh).all(1)
        centre = np.median(sh[fin], 0) if fin.any() else np.zeros(3)
        scale = _tail_scale(sh[fin] - centre, np.ones(sh[fin].shape, bool)) if fin.sum() > 2 else np.ones(3)
        scale = np.where(np.isfinite(scale) & (scale > 0), np.maximum(scale, MIN_SIGMA), 1.0)
        shift_sigma[p.name] = (centre, scale)
    return {"part_sigma": sig, "shift": shift_sigma}



def _median_c(z: np.ndarray, ok: np.ndarray) -> np.ndarray:
    return _weighted_median(z.real, ok) + 1j * _weighted_median(z.imag, ok)


# --- thickness across outlines ---------------------------------------------------------------------------------------

def _half(name: str) -> str | None:
    tokens = set(name.split("_"))
    return "upper" if "upper" in tokens else "lower" if "lower" in tokens else None


def facing_points(model: ShapeModel, layout: Layout | str = CANONICAL) -> np.ndarray:
    """``(K,)`` for each point of a complete loop of an outline group (brows, lips) in ``model``, the point that
    faces it across the solid the loop bounds (-1 elsewhere): where another loop of its group overlaps it (the
    outer and inner lip outlines), the nearest point of that loop's same half (upper, lower; a corner: a corner)
    along its normal, outward from a loop nested in the other, inward otherwise; where none does, the nearest
    point of its own loop's other half inward (a brow's other edge). From the layout's names and the model's
    mean shape; a point with no such point within :data:`FACING_COS` of its normal faces none."""
    lay = get_layout(layout) if isinstance(layout, str) else layout
    have = model.points
    loops = [p for p in model_parts(model, lay) if p.outline and p.closed and have[p.indices].all()]
    box = {p.name: (model.mean[p.indices].real.min(), model.mean[p.indices].real.max(),
                    model.mean[p.indices].imag.min(), model.mean[p.indices].imag.max()) for p in loops}

    def overlap(a, b):
        return not (box[a][1] < box[b][0] or box[b][1] < box[a][0] or box[a][3] < box[b][2] or box[b][3] < box[a][2])

    half = [_half(n) for n in lay.names]
    out = np.full(len(have), -1, np.intp)
    for p in loops:
        others = [q for q in loops if q.group == p.group and q.name != p.name and overlap(p.name, q.name)]
        nested = bool(others) and all(box[q.name][0] <= box[p.name][0] and box[q.name][1] >= box[p.name][1]
                                      for q in others)
        sign = 1.0 if nested else -1.0
        for i in p.indices:
            if others:
                cand = np.array([j for q in others for j in q.indices if half[j] == half[i]], np.intp)
            else:
                cand = np.array([j for j in p.indices if half[i] is not None and half[j] not in (half[i], None)],
                                np.intp)
            if not cand.size:
                continue
            d = model.mean[cand] - model.mean[i]
            cos = sign * (np.conj(model.axes[i, 0]) * d).real / np.maximum(np.abs(d), 1e-12)
            if (cos >= FACING_COS).any():
                near = cand[cos >= FACING_COS]
                out[i] = near[np.argmin(np.abs(model.mean[near] - model.mean[i]))]
    return out


def thickness(z: np.ndarray, ok: np.ndarray, model: ShapeModel, facing: np.ndarray) -> np.ndarray:
    """``(N, K)`` each point's distance to the point facing it (:func:`facing_points`) along its normal, IOD,
    in the frame of the face's points off outlines (eyes, nose: the frame a thicker brow or lip cannot move);
    NaN where either point is missing or there is none."""
    out = np.full(z.shape, np.nan)
    has = np.flatnonzero(facing >= 0)
    if not has.size or not len(z):
        return out
    rigid = ok & model.points[None] & ~model.outline[None]
    y = similarity_align(z, rigid.astype(np.float64), model.mean)
    d = y[:, has] - y[:, facing[has]]
    nrm = model.axes[has, 0]
    gap = nrm.real * d.real + nrm.imag * d.imag
    out[:, has] = np.where(ok[:, has] & ok[:, facing[has]], gap, np.nan)
    return out


def _thickness_calibration(z, ok, model, layout) -> dict:
    """The facing points of ``model`` and each one's thickness median and robust scale on the model's kept faces."""
    facing = facing_points(model, layout)
    t = thickness(z, ok, model, facing)
    fin = np.isfinite(t)
    med = _weighted_median(t, fin)
    scale = _tail_scale(t - med, fin)
    scale = np.where(np.isfinite(scale), np.maximum(scale, MIN_SIGMA), np.nan)
    return {"thickness": (facing, med, scale)}


def part_thickness_z(z: np.ndarray, ok: np.ndarray, model: ShapeModel, parts) -> np.ndarray:
    """``(N, P)`` for each of ``parts`` with facing points, the mean z-score of its points' thickness against
    the model's faces (positive: thicker; NaN where the part has none)."""
    out = np.full((len(z), len(parts)), np.nan)
    cal = model.extra.get("thickness")
    if cal is None or not len(z):
        return out
    facing, med, scale = cal
    t = (thickness(z, ok, model, facing) - med) / scale
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for j, p in enumerate(parts):
            if (facing[p.indices] >= 0).any():
                out[:, j] = np.nanmean(t[:, p.indices], 1)
    return out


def push_z(shift_z: np.ndarray, thickness_z: np.ndarray) -> np.ndarray:
    """``(N, P)`` how surely a brow or lip was pushed along its normal: the geometric mean of its shift z-score
    (it lies off where the rest of the face puts it) and of the size of its thickness z-score (it is thicker
    or thinner than the model's faces). A part pushed out along its normal shows both; an unusual face
    mostly shows one, and the product of the two keeps it low. NaN where the part has no thickness."""
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.maximum(shift_z, 0.0) * np.abs(thickness_z))


# --- scoring ------------------------------------------------------------------------------------------------------

@dataclass
class ShapeScores:
    """Per-face results of :func:`score_shapes`.

    ``point_z``: ``(N, K)`` point z-scores (NaN where not scored): the geometric mean of the point against
    its prediction from its neighbours (:class:`LocalModel`) and of its residual from the model fit, each
    over its point's tail factor (:func:`_point_tails`); the fit's alone where the point has no local
    prediction. A point that an annotator's hand slipped on is out of place in both views; each view alone
    strays on faces that are merely unusual (the neighbours of the contour of a face turned far, the whole
    mouth of a twisted one), so it takes both to score high. ``residual``: ``(N, K, 2)`` residual along
    the point's axes (normal, tangent on outlines; x, y elsewhere), IOD. ``cost``: ``(N,)`` robust mean squared
    z (capped at :data:`COST_CAP`). ``scored``: ``(N,)`` bool. ``parts``: the part names of the columns below.
    ``part_rms``: ``(N, P)`` RMS z-score of each part's points when the face is fitted without the part (how
    badly the part fits where the rest of the face puts it). ``part_shift``: ``(N, P, 3)`` the part's shift, IOD
    in the model frame: translation x, y and outward offset (from the normal components alone on an
    outline, :func:`_shift`); ``part_shift_z``: its size against the model's faces (the largest of the three
    robust z-scores).
    ``repair``: ``(N,)`` index into ``repairs`` (the relabellings tried, ``repairs(layout, model.points)``) of
    the repair taken (-1: none); ``part_thickness_z``: ``(N, P)`` the part's thickness across its outline against
    the model's faces (:func:`part_thickness_z`: a brow's or a lip's; NaN for the other parts);
    ``repair_gain``: the repaired points' cost before over after; ``repair_drop``: the root of what the repair takes off the
    repaired points' summed squared (capped) z-scores, a likelihood-ratio-like evidence (0 without a repair).
    """

    point_z: np.ndarray
    residual: np.ndarray
    cost: np.ndarray
    scored: np.ndarray
    parts: tuple
    part_rms: np.ndarray
    part_shift: np.ndarray
    part_shift_z: np.ndarray
    repair: np.ndarray
    repair_gain: np.ndarray
    repair_drop: np.ndarray
    repairs: tuple
    part_thickness_z: np.ndarray


def _cost(zs: np.ndarray, mask=None) -> np.ndarray:
    import warnings

    if mask is not None:
        zs = zs[:, mask]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.minimum(zs, COST_CAP) ** 2, axis=1)


def score_shapes(points: np.ndarray, valid: np.ndarray, model: ShapeModel, *, layout: str = CANONICAL,
                 try_repairs: bool = True) -> ShapeScores:
    """Score faces against ``model`` (see the module docstring)."""
    lay = get_layout(layout)
    parts = model_parts(model, lay)
    z = _complex(np.asarray(points, np.float64))
    ok = np.asarray(valid, bool) & np.isfinite(z)
    norm = list(lay.norm_indices)
    scored = ((ok & model.points[None]).sum(1) >= MIN_FACE_POINTS) & ok[:, norm].all(1)
    with np.errstate(invalid="ignore"):
        scored &= np.abs(z[:, norm[0]] - z[:, norm[1]]) > 0
    n, k = z.shape
    r = np.full((n, k), np.nan, complex)
    zs = np.full((n, k), np.nan)
    idx = np.flatnonzero(scored)
    zi, oki = z[idx], ok[idx]
    if idx.size:
        r[idx], zs[idx], wi = fit_faces(zi, oki, model)
    comp = _components(r, model.axes)
    cost = _cost(zs)
    rms = np.full((n, len(parts)), np.nan)
    shift = np.full((n, len(parts), 3), np.nan)
    shift_z = np.full((n, len(parts)), np.nan)
    psig = model.extra.get("part_sigma", model.sigma)
    cal = model.extra.get("shift", {})
    import warnings

    for j, p in enumerate(parts):
        if not idx.size:
            break
        c = _part_residuals(zi, oki, model, p)
        zp = _point_z(c, psig[p.indices], model.outline[p.indices])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rms[idx, j] = np.sqrt(np.nanmean(np.minimum(zp, COST_CAP) ** 2, 1))
        sh = _shift(c, model.axes[p.indices], p.outline)
        centre, scale = cal.get(p.name, (np.zeros(3), np.ones(3)))
        shift[idx, j] = sh
        shift_z[idx, j] = np.abs((sh - centre) / scale).max(1)
    repair = np.full(n, -1, np.intp)
    tried = repairs(lay, model.points)
    gain = np.ones(n)
    drop = np.zeros(n)
    if try_repairs and idx.size:
        worst = np.nanmax(np.concatenate([np.nan_to_num(zs, nan=0.0), np.nan_to_num(rms, nan=0.0)], 1), 1)
        gi = np.flatnonzero(scored & (worst > REPAIR_GATE))
        if gi.size:
            best_gain = np.zeros(gi.size)
            best_drop = np.zeros(gi.size)
            for j, rep in enumerate(tried):
                touched = rep.perm != np.arange(k)
                base = _cost(zs[gi], touched)
                _, zr, _ = fit_faces(z[gi][:, rep.perm], ok[gi][:, rep.perm], model)
                after = _cost(zr, touched)
                with np.errstate(divide="ignore", invalid="ignore"):
                    g = np.where(base > REPAIR_MIN_COST, base / np.maximum(after, 1e-9), 0.0)
                # a repair must also leave the rest of the face no worse
                g = np.where(_cost(zr) <= _cost(zs[gi]), g, 0.0)
                better = g > best_gain
                best_gain = np.where(better, g, best_gain)
                cnt = np.isfinite(zs[gi][:, touched]).sum(1)
                best_drop = np.where(better, np.sqrt(np.maximum(base - after, 0) * cnt), best_drop)
                repair[gi[better]] = j
            take = best_gain >= 1 / REPAIR_RATIO
            repair[gi[~take]] = -1
            gain[gi] = np.where(take, best_gain, 1.0)
            drop[gi] = np.where(take, best_drop, 0.0)
    point_z = zs / model.extra.get("point_tail", np.ones(k))
    lm = model.extra.get("local")
    if lm is not None and idx.size:
        lz = local_z(similarity_align(zi, np.where(oki, wi, 0), model.mean), oki & model.points[None], lm)
        g = point_z[idx]
        both = np.isfinite(lz) & np.isfinite(g)
        point_z[idx] = np.where(both, np.sqrt(np.maximum(lz, 0) * np.maximum(g, 0)), g)
    thick = np.full((n, len(parts)), np.nan)
    if idx.size:
        thick[idx] = part_thickness_z(zi, oki, model, parts)
    return ShapeScores(point_z, comp, cost, scored, tuple(p.name for p in parts), rms, shift, shift_z, repair, gain,
                       drop, tried, thick)


def point_signal(point_z: np.ndarray) -> np.ndarray:
    """``(N,)`` a face's point signal: its largest point z-score over its own typical one (the median of its
    points', never below a normal's, :data:`CHI2_MEDIAN`). A point out of place stands out from the rest of
    its face; on a face whose every point strays (turned past what the model knows, heavily occluded) the
    largest is read against that face's level, and the part and shift signals speak for the face as a whole.
    NaN where no point is scored."""
    with np.errstate(invalid="ignore"):
        top = np.nanmax(np.where(np.isfinite(point_z), point_z, -np.inf), 1)
        level = np.maximum(nan_median(point_z, axis=1) / CHI2_MEDIAN, 1.0)
        return np.where(np.isfinite(top), top / np.where(np.isfinite(level), level, 1.0), np.nan)


# --- left-right order ----------------------------------------------------------------------------------------------

#: a side (a part's left half against its right half, or a mirror pair of parts) votes on a face's left-right
#: direction where its two halves lie at least this far apart, IOD (closer, as the far half of a face turned
#: to profile, its direction is noise)
MIN_SIDE_SEPARATION = 0.15
#: a side is out of order where it disagrees with at least this many more of the voting sides than it agrees
#: with (a profile face folds a side or two of its far half over the near one; on the AFLW2000-3D dev faces, to
#: 120 degrees of yaw, a margin of 1 named 3 faces, 3 none)
ORDER_MARGIN = 3


@dataclass(frozen=True)
class Side:
    """One left-right comparison of a layout: the points of ``left`` against their mirrors ``right`` (a
    symmetric part's two halves, or a part against its mirror part), named by the part(s)."""

    name: str
    left: np.ndarray
    right: np.ndarray


@cache
def sides(layout: str = CANONICAL) -> tuple[Side, ...]:
    """The left-right comparisons of a layout, from its parts and mirrors: each part whose points mirror
    points of the same part (contour, lips, nose base) gives its two halves; each part whose points mirror
    those of another part (brows, eyes, pupils) gives the pair once."""
    lay = get_layout(layout)
    flip = np.asarray(lay.flip_indices)
    part_of = {}
    for p in outline_parts(lay):
        part_of.update({int(i): p.name for i in p.indices})
    out, seen = [], set()
    for p in outline_parts(lay):
        idx = np.asarray(p.indices)
        mates = {part_of[int(flip[i])] for i in idx}
        if mates == {p.name}:
            left = np.array([i for i in idx if i < flip[i]], np.intp)
            if left.size:
                out.append(Side(p.name, left, flip[left]))
        elif len(mates) == 1 and p.name not in seen:
            mate = mates.pop()
            seen.update({p.name, mate})
            out.append(Side(f"{p.name}/{mate}", idx, flip[idx]))
    return tuple(out)


def out_of_order(points: np.ndarray, valid: np.ndarray, layout: str = CANONICAL) -> list[list[str]]:
    """Per face, the sides (:func:`sides`) whose left and right lie the other way round from the rest of the
    face: the direction from each side's right half to its left half (mean of its points) is compared with
    every other side's, and a side that disagrees with :data:`ORDER_MARGIN` more of them than it agrees with
    is out of order (a brow pair exchanged, a lip outline drawn from the wrong end). Only sides with every
    point valid and halves :data:`MIN_SIDE_SEPARATION` IOD apart vote: a face mapped from another layout votes
    with its complete sides (on 300W's 68 points, the lips and the nose base: too few to name one). Letting a
    side vote with its points whose mirrors are valid brought the 68-point brows in, and with them three
    AFLW2000-3D dev faces turned 70-120 degrees. On the 1966 WFLW test faces it names
    six, each a labelling error (two brow pairs exchanged, four outer lips in no order)."""
    lay = get_layout(layout)
    p = np.asarray(points, np.float64)
    v = np.asarray(valid, bool) & np.isfinite(p).all(-1)
    a, b = lay.norm_indices
    iod = np.linalg.norm(p[:, a] - p[:, b], axis=-1)
    sd = sides(layout)
    d = np.full((len(p), len(sd), 2), np.nan)
    for j, side in enumerate(sd):
        ok = v[:, side.left].all(1) & v[:, side.right].all(1)
        with np.errstate(invalid="ignore"):
            d[:, j] = np.where(ok[:, None], p[:, side.left].mean(1) - p[:, side.right].mean(1), np.nan)
    length = np.linalg.norm(d, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        votes = np.isfinite(length) & (length >= MIN_SIDE_SEPARATION * iod[:, None]) & (iod > 0)[:, None]
        u = np.where(votes[..., None], d / length[..., None], 0.0)
    agree = np.sign(np.einsum("npi,nqi->npq", u, u))
    agree[:, np.arange(len(sd)), np.arange(len(sd))] = 0
    score = agree.sum(2)
    return _named(votes & (score <= -ORDER_MARGIN), [side.name for side in sd])


def _named(hit: np.ndarray, names: list[str]) -> list[list[str]]:
    """Per face (row of ``hit``, (N, M) bool), the ``names`` of its columns that are set."""
    out: list[list[str]] = [[] for _ in range(len(hit))]
    for i in np.flatnonzero(hit.any(1)):
        out[i] = [names[j] for j in np.flatnonzero(hit[i])]
    return out


# --- collapsed ends -----------------------------------------------------------------------------------------------

#: a loop's two ends (eye and lip corners, brow ends) have collapsed when both lie within this share of the loop's
#: extent of each other and of the loop's centre: the corners labelled together inside the loop, the real corners
#: labelled as other points of it. On the 1966 WFLW test faces 61 outer and 16 inner lips (faces turned 0-54
#: degrees) have them so, at most 0.29 apart and 0.24 from the centre; a lip whose ends are closer than 0.4 but
#: lie at its edge, as a mouth turned far shows them, is 0.33-0.68 from the centre (WFLW, hand-annotated
#: AFLW2000-3D); a wide-open mouth, its corners 0.23 from the centre of a loop taller than wide, has them 0.5 or
#: more apart (300W)
COLLAPSE_SHARE = 0.3
#: faces turned further than this (the landmark fit's yaw, degrees) are not checked: a loop seen edge-on may
#: show its ends together
MAX_COLLAPSE_YAW = 60.0


def loop_ends(part: Part) -> tuple[int, int]:
    """The two ends of a loop part: its first point and the one half way round (outer and inner eye corner,
    left and right lip corner, outer and inner brow end)."""
    return int(part.indices[0]), int(part.indices[len(part.indices) // 2])


def collapsed_ends(points: np.ndarray, valid: np.ndarray, yaw: np.ndarray, layout: str = CANONICAL) -> list[list[str]]:
    """Per face, the loop parts whose two ends (:func:`loop_ends`) lie within :data:`COLLAPSE_SHARE` of the
    loop's extent (its largest distance between two of its points) of each other and of the loop's centre (the
    mean of its points): the corners labelled together inside the loop, the real corners labelled as other
    points of it. Checked on complete loops (every point valid: a 68-point face's brow, its upper edge alone,
    is not a loop; a hand-annotated AFLW2000-3D face turned 58 degrees folds that edge back onto its start) of
    faces whose ``yaw`` (degrees) is known and within :data:`MAX_COLLAPSE_YAW`. A part drawn as one spot (a
    hidden brow) has no extent and is not named."""
    p = np.asarray(points, np.float64)
    v = np.asarray(valid, bool) & np.isfinite(p).all(-1)
    with np.errstate(invalid="ignore"):
        facing = np.abs(np.asarray(yaw, np.float64)) < MAX_COLLAPSE_YAW
    loops = [q for q in outline_parts(layout) if q.closed]
    hit = np.zeros((len(p), len(loops)), bool)
    for j, q in enumerate(loops):
        a, b = loop_ends(q)
        ok = facing & v[:, q.indices].all(1)
        if not ok.any():
            continue
        pts = p[ok][:, q.indices]
        extent = np.linalg.norm(pts[:, :, None] - pts[:, None], axis=-1).max(axis=(1, 2))
        centre = pts.mean(1)
        reach = COLLAPSE_SHARE * extent
        hit[ok, j] = ((extent > 0) & (np.linalg.norm(p[ok, a] - p[ok, b], axis=-1) < reach)
                      & (np.linalg.norm(p[ok, a] - centre, axis=-1) < reach)
                      & (np.linalg.norm(p[ok, b] - centre, axis=-1) < reach))
    return _named(hit, [q.name for q in loops])


# --- box, degenerate, mask -----------------------------------------------------------------------------------------

def box_features(points: np.ndarray, valid: np.ndarray, bbox: np.ndarray) -> np.ndarray:
    """``(N, 5)`` how the valid points sit in the box: centre offset (x, y) over the box size, log width
    and height of their extent over the box's, and the share of points outside the box grown by 10 %."""
    p = np.where(np.asarray(valid, bool)[..., None], np.asarray(points, np.float64), np.nan)
    b = np.asarray(bbox, np.float64)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(p, 1), np.nanmax(p, 1)
        size = np.maximum(b[:, 2:] - b[:, :2], 1e-6)
        off = ((lo + hi) / 2 - (b[:, :2] + b[:, 2:]) / 2) / size
        ext = np.log(np.maximum(hi - lo, 1e-6) / size)
        g0, g1 = b[:, None, :2] - 0.1 * size[:, None], b[:, None, 2:] + 0.1 * size[:, None]
        out = ((p < g0) | (p > g1)).any(-1)
        cnt = np.isfinite(p[..., 0]).sum(1)
        frac = out.sum(1) / np.maximum(cnt, 1)
    return np.concatenate([off, ext, frac[:, None]], 1)


def degenerate(points: np.ndarray, valid: np.ndarray, layout: str = CANONICAL) -> np.ndarray:
    """``(N,)`` object: why a face cannot be a face (None where it can): no valid point, fewer than 3
    distinct valid points, coincident eye corners, or all valid points on one line."""
    lay = get_layout(layout)
    p = np.asarray(points, np.float64)
    v = np.asarray(valid, bool) & np.isfinite(p).all(-1)
    n = len(p)
    out = np.full(n, None, object)
    cnt = v.sum(1)
    a, b = lay.norm_indices
    iod = np.linalg.norm(p[:, a] - p[:, b], axis=-1)
    c = np.where(v[..., None], p, np.nan)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d = c - np.nanmean(c, 1, keepdims=True)
        d = np.nan_to_num(d)
        cov = np.einsum("nki,nkj->nij", d, d) / np.maximum(cnt, 1)[:, None, None]
    ev = np.linalg.eigvalsh(cov)
    with np.errstate(invalid="ignore", divide="ignore"):
        flat = ev[:, 0] <= 1e-6 * np.maximum(ev[:, 1], 1e-12)
    for i in range(n):
        if cnt[i] == 0:
            out[i] = "no valid point"
        elif len(np.unique(p[i][v[i]], axis=0)) < 3:
            out[i] = "fewer than 3 distinct points"
        elif v[i, a] and v[i, b] and not iod[i] > 0:
            out[i] = "eye corners coincide"
        elif flat[i]:
            out[i] = "all points on one line"
    return out

