"""Eye aspect ratio (EAR) and eye state on the canonical 98-point layout.

EAR of one eye over WFLW's eight eye points (FACTS section 5)::

    EAR = (|p61 - p67| + |p62 - p66| + |p63 - p65|) / (3 |p60 - p64|)     image-left eye
    EAR = (|p69 - p75| + |p70 - p74| + |p71 - p73|) / (3 |p68 - p72|)     image-right eye

It is scale and rotation invariant. The default closed-eye threshold (:data:`CLOSED_THRESHOLD`) is
justified by the distribution measured on the real faces, see ``docs/curation.md``.
"""
from __future__ import annotations

import numpy as np

from ..errors import MappingError
from .maps import canonical_batch

#: Canonical indices per eye: (corner a, corner b, (upper, lower) lid pairs). Image-left eye first.
EYE_CORNERS = np.array([[60, 64], [68, 72]], dtype=np.intp)
EYE_LID_PAIRS = np.array([[[61, 67], [62, 66], [63, 65]], [[69, 75], [70, 74], [71, 73]]], dtype=np.intp)
EYE_POINTS = np.array([list(range(60, 68)), list(range(68, 76))], dtype=np.intp)

#: An eye is closed when its EAR is at or below this value (see docs/curation.md for the measurement).
CLOSED_THRESHOLD = 0.10
EYE_STATES = ("open", "one_closed", "both_closed", "unknown")
MINE_MODES = ("either", "both")


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


def eye_closed(ear, closed: float = CLOSED_THRESHOLD) -> np.ndarray:
    """``(N, 2)`` bool: the eye's EAR is at or below ``closed`` (False where the EAR is NaN)."""
    ear = np.asarray(ear, dtype=np.float64)
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
    if not np.isfinite(closed) or closed < 0:
        raise ValueError(f"closed threshold must be a finite number >= 0; got {closed}")
    shut = eye_closed(e, closed).sum(1)
    known = np.isfinite(e).all(1)
    states = np.array(EYE_STATES[:3], dtype=object)[shut]
    states[~known] = "unknown"
    return states


def eye_columns(points98, valid98=None, closed: float = CLOSED_THRESHOLD) -> dict[str, np.ndarray]:
    """The manifest's eye columns: ``ear_left``, ``ear_right`` ``(N,)`` float32 (NaN = null) and
    ``eye_state`` ``(N,)`` object (strings, see :func:`eye_state`)."""
    ear = eye_aspect_ratio(points98, valid98)
    return {"ear_left": ear[:, 0], "ear_right": ear[:, 1], "eye_state": eye_state(ear, closed)}


def closed_eye_mask(ear, threshold: float = CLOSED_THRESHOLD, mode: str = "either") -> np.ndarray:
    """``(N,)`` bool: faces with a closed eye (``mode="either"``) or both eyes closed (``"both"``)."""
    if mode not in MINE_MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {list(MINE_MODES)}")
    shut = eye_closed(np.asarray(ear).reshape(-1, 2), threshold)
    return shut.any(1) if mode == "either" else shut.all(1)
