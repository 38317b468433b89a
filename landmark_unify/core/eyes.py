"""Eye aspect ratio (EAR) and eye state on the canonical 98-point layout.

EAR of one eye over WFLW's eight eye points (FACTS section 5)::

    EAR = (|p61 - p67| + |p62 - p66| + |p63 - p65|) / (3 |p60 - p64|)     image-left eye
    EAR = (|p69 - p75| + |p70 - p74| + |p71 - p73|) / (3 |p68 - p72|)     image-right eye

It is scale and rotation invariant. The default closed-eye threshold (:data:`CLOSED_THRESHOLD`) is
justified by the distribution measured on the real faces, see ``docs/guides/curation.md``.

Where the canonical points cannot carry the EAR (68-point sources: the canonical layout has three points
per lid, iBUG two), it is computed in the source layout (:func:`source_eye_columns`) with the formula that
layout allows, recorded in the manifest's ``ear_formula`` column (:data:`EAR_FORMULAS`):

- ``wflw8``: the formula above, on WFLW's or LaPa's eight eye points (the same numbers as on the
  canonical points);
- ``ibug6``: the common 6-point EAR on iBUG eyes, ``(|p37 - p41| + |p38 - p40|) / (2 |p36 - p39|)``
  (image-right eye: 43-47, 44-46 over 42-45). On the same eyes it reads :data:`IBUG6_SCALE` times the
  8-point EAR (fitted on the shared WFLW faces), so its closed threshold is that much higher
  (:func:`closed_thresholds`).
"""
from __future__ import annotations

import numpy as np

from ..errors import MappingError
from .maps import canonical_batch, schema_layout

#: An eye is closed when its EAR is at or below this value (see docs/guides/curation.md for the measurement).
CLOSED_THRESHOLD = 0.10
EYE_STATES = ("open", "one_closed", "both_closed", "unknown")
MINE_MODES = ("either", "both")

#: EAR formulas, by the number of lid point pairs per eye: WFLW's eight eye points, iBUG's six
EAR_FORMULAS = ("wflw8", "ibug6")
_LID_PAIRS = {3: "wflw8", 2: "ibug6"}
#: the 6-point EAR over the 8-point EAR of the same eyes: least-squares slope on the 1966 shared WFLW faces
#: (3932 eyes, the iBUG points taken from WFLW's by the project's 98 -> 68 map; docs/guides/curation.md)
IBUG6_SCALE = 1.045


def closed_thresholds(threshold: float = CLOSED_THRESHOLD) -> dict[str, float]:
    """Closed-eye threshold per EAR formula for ``threshold`` on the 8-point scale (``wflw8``); the
    6-point threshold is :data:`IBUG6_SCALE` times it (0.1045 for the default 0.10)."""
    return {"wflw8": float(threshold), "ibug6": round(float(threshold) * IBUG6_SCALE, 6)}


def thresholds_for(formulas, threshold: float = CLOSED_THRESHOLD) -> np.ndarray:
    """``(N,)`` float64 closed threshold per face from its ``ear_formula`` (None / unknown: the 8-point
    threshold)."""
    table = closed_thresholds(threshold)
    f = np.asarray(formulas, dtype=object).reshape(-1)
    return np.array([table.get(x, table["wflw8"]) if isinstance(x, str) else table["wflw8"] for x in f],
                    dtype=np.float64)


def eye_point_indices(schema: str) -> tuple[str, np.ndarray, np.ndarray] | None:
    """The EAR formula a source schema allows and its point indices in that schema: ``(formula, corners
    (2, 2), lid pairs (2, K, 2))``, image-left eye first; None where the layout has no eyelids (COFW, AFLW).
    Found by point name (``eye_{l,r}_{outer,inner}``, ``eye_{l,r}_{upper,lower}_{k}``)."""
    layout = schema_layout(schema)
    names = set(layout.names)
    k = 0
    while f"eye_l_upper_{k}" in names and f"eye_l_lower_{k}" in names:
        k += 1
    formula = _LID_PAIRS.get(k)
    need = [f"eye_{s}_{c}" for s in "lr" for c in ("outer", "inner")]
    need += [f"eye_{s}_{lid}_{i}" for s in "lr" for lid in ("upper", "lower") for i in range(k)]
    if formula is None or not names.issuperset(need):
        return None
    corners = np.array([[layout.index(f"eye_{s}_outer"), layout.index(f"eye_{s}_inner")] for s in "lr"], np.intp)
    lids = np.array([[[layout.index(f"eye_{s}_upper_{i}"), layout.index(f"eye_{s}_lower_{i}")] for i in range(k)]
                     for s in "lr"], np.intp)
    return formula, corners, lids


def _canonical_eye_indices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`eye_point_indices` of the canonical layout, each eye's lid pairs in layout order (the order
    the EAR sums them in) and each eye's points sorted."""
    _, corners, lids = eye_point_indices("wflw98")
    lids = np.stack([eye[np.argsort(eye[:, 0])] for eye in lids])
    points = np.stack([np.sort(np.r_[c, eye.ravel()]) for c, eye in zip(corners, lids)])
    return corners, lids, points


#: Canonical indices per eye, image-left eye first, found by name: corners (outer, inner), (upper, lower)
#: lid pairs, and all eight points of the eye.
EYE_CORNERS, EYE_LID_PAIRS, EYE_POINTS = _canonical_eye_indices()


def source_eye_aspect_ratio(points, schema: str) -> tuple[np.ndarray, str | None]:
    """EAR of both eyes in the source layout: ``points`` ``(N, K, 2)`` of ``schema`` (NaN where missing).
    Returns ``((N, 2) float32, formula)``: the image-left eye first, NaN where an eye point is missing or
    the corners coincide; formula None (and all NaN) where the layout has no eyelids."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 2:
        pts = pts[None]
    found = eye_point_indices(schema)
    if found is None:
        return np.full((pts.shape[0], 2), np.nan, np.float32), None
    formula, corners, lids = found
    upper, lower = pts[:, lids[..., 0]], pts[:, lids[..., 1]]  # (N, 2, K, 2)
    lid = np.linalg.norm(upper - lower, axis=-1).sum(-1)
    width = np.linalg.norm(pts[:, corners[:, 0]] - pts[:, corners[:, 1]], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ear = lid / (lids.shape[1] * width)
    ear = np.where(np.isfinite(ear) & (width > 0), ear, np.nan)
    return ear.astype(np.float32), formula


def source_eye_columns(points, schema: str, threshold: float = CLOSED_THRESHOLD) -> dict[str, np.ndarray]:
    """The manifest's eye columns from the source points (see :func:`source_eye_aspect_ratio`):
    ``ear_left``, ``ear_right`` (float32, NaN = null), ``ear_formula`` (object: the formula, None where
    neither eye has an EAR) and ``eye_state`` with the formula's threshold (:func:`closed_thresholds`)."""
    ear, formula = source_eye_aspect_ratio(points, schema)
    known = np.isfinite(ear).any(1)
    formulas = np.where(known, formula, None).astype(object)
    closed = closed_thresholds(threshold).get(formula, threshold) if formula else threshold
    return {"ear_left": ear[:, 0], "ear_right": ear[:, 1], "ear_formula": formulas,
            "eye_state": eye_state(ear, closed)}


def eye_aspect_ratio(points98, valid98=None) -> np.ndarray:
    """Eye aspect ratio of both eyes.

    points98: ``(N, 98, 2)`` (or ``(98, 2)``) pixels, canonical layout, NaN where invalid.
    valid98: optional ``(N, 98)`` bool; points marked False are treated as invalid.
    Returns ``(N, 2)`` float32: column 0 the image-left eye (points 60-67), column 1 the image-right eye
    (68-75); NaN where any of that eye's eight points is invalid or its corners coincide.
    """
    pts, ok = canonical_batch(points98, valid98)
    upper = pts[:, EYE_LID_PAIRS[..., 0]]  # (N, 2, 3, 2)
    lower = pts[:, EYE_LID_PAIRS[..., 1]]
    lids = np.linalg.norm(upper - lower, axis=-1).sum(-1)  # (N, 2)
    width = np.linalg.norm(pts[:, EYE_CORNERS[:, 0]] - pts[:, EYE_CORNERS[:, 1]], axis=-1)  # (N, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ear = lids / (3.0 * width)
    eye_ok = ok[:, EYE_POINTS].all(-1) & (width > 0)
    return np.where(eye_ok, ear, np.nan).astype(np.float32)


def eye_closed(ear, closed=CLOSED_THRESHOLD) -> np.ndarray:
    """``(N, 2)`` bool: the eye's EAR is at or below ``closed`` (False where the EAR is NaN). ``closed``:
    one threshold, or ``(N,)`` per face (e.g. :func:`thresholds_for` the faces' EAR formulas)."""
    ear = np.asarray(ear, dtype=np.float64)
    closed = np.asarray(closed, dtype=np.float64)
    if closed.ndim == 1:
        closed = closed[:, None]
    with np.errstate(invalid="ignore"):
        return np.isfinite(ear) & (ear <= closed)


def eye_state(ear, closed: float = CLOSED_THRESHOLD) -> np.ndarray:
    """Eye state from the EAR of both eyes.

    ear: ``(N, 2)`` (or ``(2,)``) EAR as from :func:`eye_aspect_ratio`; closed: an eye is closed when
    its EAR is ``<= closed``. Returns ``(N,)`` object array of ``"open"``, ``"one_closed"``,
    ``"both_closed"``, or ``"unknown"`` where either eye's EAR is NaN (a face whose eye points are not
    all valid gets no eye state).
    """
    e = np.asarray(ear, dtype=np.float64)
    if e.ndim == 1:
        e = e[None]
    if e.ndim != 2 or e.shape[1] != 2:
        raise MappingError(f"ear must be (N, 2); got {np.shape(ear)}")
    c = np.asarray(closed, dtype=np.float64)
    if not np.isfinite(c).all() or (c < 0).any():
        raise ValueError(f"closed threshold must be a finite number >= 0; got {closed}")
    shut = eye_closed(e, closed).sum(1)
    known = np.isfinite(e).all(1)
    states = np.array(EYE_STATES[:3], dtype=object)[shut]
    states[~known] = "unknown"
    return states


def eye_columns(points98, valid98=None, closed: float = CLOSED_THRESHOLD) -> dict[str, np.ndarray]:
    """The manifest's eye columns from the canonical points: ``ear_left``, ``ear_right`` ``(N,)`` float32
    (NaN = null), ``ear_formula`` (``"wflw8"``, None where neither eye has an EAR) and ``eye_state``
    ``(N,)`` object (strings, see :func:`eye_state`)."""
    ear = eye_aspect_ratio(points98, valid98)
    formulas = np.where(np.isfinite(ear).any(1), "wflw8", None).astype(object)
    return {"ear_left": ear[:, 0], "ear_right": ear[:, 1], "ear_formula": formulas, "eye_state": eye_state(ear, closed)}


def closed_eye_mask(ear, threshold: float = CLOSED_THRESHOLD, mode: str = "either", formulas=None) -> np.ndarray:
    """``(N,)`` bool: faces with a closed eye (``mode="either"``) or both eyes closed (``"both"``).
    ``threshold`` is on the 8-point scale; with ``formulas`` (the faces' ``ear_formula``) each face is held
    to its formula's threshold (:func:`closed_thresholds`)."""
    if mode not in MINE_MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {list(MINE_MODES)}")
    closed = threshold if formulas is None else thresholds_for(formulas, threshold)
    shut = eye_closed(np.asarray(ear).reshape(-1, 2), closed)
    return shut.any(1) if mode == "either" else shut.all(1)
