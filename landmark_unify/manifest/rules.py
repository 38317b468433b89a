"""The rule a face row must pass, written once and vectorised.

Every door a face goes through applies it: a reader to the box it was given (:func:`box_rule`), the build
to the rows it is about to store, the runner to the rows any operation is about to write, and
``validate`` to the rows of a manifest (:func:`row_problems`, :func:`face_rule`). The values are judged as
the manifest stores them (float32):

- ``landmarks``: points finite exactly where ``valid``;
- ``bbox``: finite, not inverted; a box the dataset gave (``bbox_source`` 'given') also of positive area
  (one made from the points may have none: a face of one point);
- ``pitch``, ``yaw``, ``roll``: unknown (NaN) or within +-180 degrees;
- ``weight``: finite and >= 0;
- ``image_size``: unknown or a positive whole number of pixels below 2**31;
- ``attributes``: unknown or 0 / 1;
- ``image_path``: text without a NUL character (no file system takes one).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..core.maps import finite_points
from .schema import ANGLES, FIXED_COLUMNS

#: the most an angle may be, in degrees
MAX_ANGLE = 180.0

REASONS = {
    "landmarks": "points are not finite in float32 exactly where valid",
    "bbox": "the box is not finite in float32, inverted, or (a given box) of zero area",
    "pitch": "beyond +-180 degrees (or not finite)",
    "yaw": "beyond +-180 degrees (or not finite)",
    "roll": "beyond +-180 degrees (or not finite)",
    "weight": "the weight is not finite or negative",
    "image_size": "the image size is not a positive whole number of pixels",
    "attributes": "an attribute flag is not 0 or 1",
    "image_path": "the image path holds a NUL character",
}


def box_rule(bbox, given=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three ways a box ``(N, 4)`` (x_min, y_min, x_max, y_max) breaks the rule, as ``(N,)`` masks:
    not finite in float32; inverted (a max below its min); of zero area where ``given`` (``(N,)`` bool or
    a bool for all; default: no box given)."""
    box = np.asarray(bbox, np.float64).reshape(-1, 4)
    with np.errstate(invalid="ignore", over="ignore"):
        b32 = box.astype(np.float32)
        not_finite = ~np.isfinite(b32).all(1)
        inverted = ~not_finite & ((b32[:, 2] < b32[:, 0]) | (b32[:, 3] < b32[:, 1]))
        flat = ~not_finite & ~inverted & ((b32[:, 2] == b32[:, 0]) | (b32[:, 3] == b32[:, 1]))
    if given is None:
        given = False
    zero_area = flat & np.broadcast_to(np.asarray(given, bool), flat.shape)
    return not_finite, inverted, zero_area


def angle_rule(values) -> np.ndarray:
    """``(N,)`` bad angles (degrees): known (not NaN) and not within +-:data:`MAX_ANGLE` (infinity too)."""
    v = np.asarray(values, np.float64)
    with np.errstate(invalid="ignore"):
        return ~np.isnan(v) & ~(np.abs(v) <= MAX_ANGLE)


def nul_rule(strings) -> np.ndarray:
    """``(N,)`` texts that hold a NUL character (a list, an Arrow array or a reader's ArrowColumn)."""
    arr = getattr(strings, "array", strings)
    if not isinstance(arr, (pa.Array, pa.ChunkedArray)):
        arr = pa.array(list(arr), type=pa.string())
    if len(arr) == 0:
        return np.zeros(0, bool)
    hit = pc.match_substring(arr, "\x00")
    return np.asarray(hit.fill_null(False).to_numpy(zero_copy_only=False), bool)


def face_rule(landmarks, valid, bbox, *, given=None, pose=None, weight=None, image_size=None, attributes=None,
              image_path: Sequence[str] | pa.Array | None = None) -> dict[str, tuple[np.ndarray, str]]:
    """The rows that break the rule, per field: ``{field: (bad (N,) bool, what is wrong)}`` for the fields
    given. ``landmarks`` ``(N, 98, 2)``, ``valid`` ``(N, 98)``, ``bbox`` ``(N, 4)``; ``given`` ``(N,)``:
    the box is the dataset's; ``pose`` ``(N, 3)`` pitch, yaw, roll degrees (NaN unknown) gives the fields
    ``pitch``, ``yaw``, ``roll``; ``weight`` ``(N,)``; ``image_size`` ``(N, 2)`` (NaN unknown);
    ``attributes`` ``(N, 6)`` (NaN unknown); ``image_path`` N texts."""
    lm32 = np.asarray(landmarks, np.float64).astype(np.float32) if np.asarray(landmarks).dtype != np.float32 \
        else np.asarray(landmarks)
    with np.errstate(invalid="ignore", over="ignore"):
        out = {"landmarks": ((finite_points(lm32) != np.asarray(valid, bool)).any(1), REASONS["landmarks"])}
        out["bbox"] = (np.logical_or.reduce(box_rule(bbox, given)), REASONS["bbox"])
        if pose is not None:
            p = np.asarray(pose, np.float64).reshape(-1, 3)
            for j, a in enumerate(ANGLES):
                out[a] = (angle_rule(p[:, j]), REASONS[a])
        if weight is not None:
            w = np.asarray(weight, np.float64)
            out["weight"] = (~np.isfinite(w) | (w < 0), REASONS["weight"])
        if image_size is not None:
            sz = np.asarray(image_size, np.float64).reshape(-1, 2)
            bad = np.isfinite(sz) & ((sz < 1) | (sz >= 2**31) | (sz != np.floor(sz)))
            out["image_size"] = ((bad | np.isinf(sz)).any(1), REASONS["image_size"])
        if attributes is not None:
            at = np.asarray(attributes, np.float64)
            out["attributes"] = ((~np.isnan(at) & (at != 0) & (at != 1)).any(1), REASONS["attributes"])
    if image_path is not None:
        out["image_path"] = (nul_rule(image_path), REASONS["image_path"])
    return out


def _column(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64, NaN where null."""
    col = table.column(name)
    return col.to_numpy().astype(np.float64) if len(col) else np.zeros(0)


def row_problems(table: pa.Table) -> dict[str, tuple[np.ndarray, str]]:
    """:func:`face_rule` of the rows of a manifest table: ``{column: (bad rows (N,) bool, what is wrong)}``.
    Used by ``validate`` and by the runner's last check before any operation writes
    (``ops.runner.check_rows``)."""
    from .convert import fixed_column

    lm, valid, box = (fixed_column(table, name) for name in FIXED_COLUMNS)
    names = set(table.column_names)
    given = None
    if "bbox_source" in names:
        given = np.asarray(pc.equal(table.column("bbox_source"), "given").fill_null(False)
                           .to_numpy(zero_copy_only=False), bool) if table.num_rows else np.zeros(0, bool)
    pose = np.stack([_column(table, a) for a in ANGLES], 1) if set(ANGLES) <= names else None
    weight = _column(table, "weight") if "weight" in names else None
    size = None
    if {"image_width", "image_height"} <= names:
        size = np.stack([_column(table, c) for c in ("image_width", "image_height")], 1)
    paths = table.column("image_path") if "image_path" in names else None
    return face_rule(lm, valid, box, given=given, pose=pose, weight=weight, image_size=size, image_path=paths)
