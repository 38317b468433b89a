"""The mean 3D face of the pose fit in the canonical layout, and the point weights and expression modes
the fit uses. Every index here comes from a point name of the layout."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import LandmarkUnifyError
from ..layouts import get_layout
from ..maps import compile_map

_layout = get_layout("wflw98")


def _where(test) -> tuple[int, ...]:
    """Canonical indices, in layout order, of the points whose name passes ``test``."""
    return tuple(i for i, name in enumerate(_layout.names) if test(name))


#: Expression modes: name -> canonical indices shifted vertically (model y) together.
EXPRESSION_MODES = {
    "lower_lip": _where(lambda name: name.startswith("lip_") and "_lower" in name),
    "upper_lip": _where(lambda name: name.startswith("lip_") and "_lower" not in name),  # with the mouth corners
    "brow_l": _where(lambda name: name.startswith("brow_l_upper_")),
    "brow_r": _where(lambda name: name.startswith("brow_r_upper_")),
    "lid_l": _where(lambda name: name.startswith("eye_l_upper_")),
    "lid_r": _where(lambda name: name.startswith("eye_r_upper_")),
}
NOSE = _layout.group_indices("nose")  # a face needs one of these to be fitted
#: The contour points around the chin that a 2D outline shares with the model's 3D contour.
CHIN = tuple(f"contour_{i:02d}" for i in range(14, 19))
_contour = np.array(_layout.groups) == "contour"
_chin = np.isin(np.arange(len(_layout)), [_layout.index(name) for name in CHIN])
#: Prior weight per canonical point for a face whose contour is the visible outline (WFLW, LaPa, 300W,
#: COFW / AFLW chin): the contour is not used except around the chin (:data:`CHIN`, weight 0.5). On a
#: turned face the far side of a 2D outline is the cheek's silhouette, wider than the model's fixed 3D
#: contour, and pulls yaw toward zero (by about a third on WFLW's turned faces, see docs/guides/pose.md).
#: 1 elsewhere. Points without a model point never take part.
DEFAULT_POINT_WEIGHTS = np.where(_contour, np.where(_chin, 0.5, 0.0), 1.0)
#: Prior weights for a face whose contour is the projection of the model's 3D contour points (300W-LP
#: ``pt2d``, AFLW2000-3D ``pt3d_68``, i.e. schema ``ibug68_3d`` with ``projected_contour=True``).
PROJECTED_CONTOUR_WEIGHTS = np.ones(98)
#: Source schemas whose contour (when valid) is a projected 3D contour.
PROJECTED_CONTOUR_SCHEMAS = ("ibug68_3d",)
#: A face model's points must span at least this fraction of its largest extent in a second direction
#: (a collinear or zero-size shape has no pose).
MIN_MODEL_SPREAD = 1e-6


class PoseModelError(LandmarkUnifyError):
    """The mean 3D face could not be found or read, or cannot define a pose."""


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


def _lid_polylines() -> dict[tuple[int, ...], tuple[int, ...]]:
    """Canonical lid points -> the iBUG-68 polyline they are interpolated on: per eye and lid, the iBUG
    points from one corner through that lid to the other corner, in iBUG's order around the eye; the
    canonical lid points in the same direction."""
    ibug = get_layout("ibug68")
    table = {}
    for side in "lr":
        ring = [i for i, name in enumerate(ibug.names) if name.startswith(f"eye_{side}_")]  # iBUG order
        corner = [ibug.names[i].endswith(("_outer", "_inner")) for i in ring]
        for lid in ("upper", "lower"):
            start = next(j for j in range(len(ring)) if corner[j]
                         and ibug.names[ring[(j + 1) % len(ring)]].startswith(f"eye_{side}_{lid}_"))
            stop = next(j for j in range(start + 1, start + len(ring) + 1) if corner[j % len(ring)])
            src = tuple(ring[j % len(ring)] for j in range(start, stop + 1))
            dst = [_layout.index(name) for name in _layout.names if name.startswith(f"eye_{side}_{lid}_")]
            dst.sort(key=lambda i: _layout.names[i])  # lid_0 (at the outer corner) first
            from_inner = ibug.names[src[0]].endswith("_inner")
            table[tuple(dst[::-1] if from_inner else dst)] = src
    return table


#: Canonical lid points (a quarter, half and three quarters along the lid) -> the iBUG-68 polyline from
#: corner to corner they are interpolated on by arc length (:func:`canonical_model_points`).
LID_POLYLINES = _lid_polylines()


def _interp_polyline(p: np.ndarray, ts) -> np.ndarray:
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    if not seg.sum() > 0:  # a polyline of zero length: every point at its start
        return np.repeat(p[:1], len(ts), axis=0)
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
    odd = [i for i, name in enumerate(_layout.names) if name.startswith("contour_") and int(name[8:]) % 2]
    out[odd] = (out[np.subtract(odd, 1)] + out[np.add(odd, 1)]) / 2  # between two exact contour points
    has[odd] = True
    for dst, src in LID_POLYLINES.items():
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
    spread = np.linalg.svd(sym[has] - centre, compute_uv=False)  # extents along the shape's main axes
    if not radius > 0 or not spread[1] > MIN_MODEL_SPREAD * spread[0]:
        raise PoseModelError(f"a face model's points must span a plane; these are of zero size or on a line "
                             f"(extents {spread[0]:.3g}, {spread[1]:.3g})")
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
