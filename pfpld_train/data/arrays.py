"""What training needs from a manifest, as arrays: landmarks, validity, pose, weights, image paths.

:class:`FaceArrays` reads a manifest DataFrame (``FaceArrays.from_manifest(read_manifest(path))``);
:func:`split_by_image` splits rows into train/validation so all faces of one image land on one side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from landmark_unify.core.maps import finite_points
from landmark_unify.errors import LandmarkUnifyError
from landmark_unify.manifest import image_paths, landmarks_array, valid_array

__all__ = ["DataError", "FaceArrays", "MAX_COORDINATE", "check_faces", "pose_array", "split_by_image"]


class DataError(LandmarkUnifyError, ValueError):
    """A manifest cannot be used for training."""


def pose_array(df) -> np.ndarray:
    """``(N, 3) float32`` pitch, yaw, roll in degrees from a manifest DataFrame; NaN where unknown (all NaN
    when the columns are absent)."""
    if not all(c in df.columns for c in ("pitch", "yaw", "roll")):
        return np.full((len(df), 3), np.nan, np.float32)
    cols = [df[c].astype("float64").to_numpy(na_value=np.nan) for c in ("pitch", "yaw", "roll")]
    return np.stack(cols, 1).astype(np.float32) if len(df) else np.zeros((0, 3), np.float32)


@dataclass
class FaceArrays:
    """What training needs from a manifest, as arrays (``N`` faces)."""

    landmarks: np.ndarray  # (N, 98, 2) float32 image pixels, NaN where invalid
    valid: np.ndarray  # (N, 98) bool
    pose: np.ndarray  # (N, 3) float32 degrees, NaN where unknown
    weight: np.ndarray  # (N,) float32
    paths: list  # N image paths (Path or None)
    sample_ids: np.ndarray  # (N,) str
    image_keys: np.ndarray  # (N,) str: source + image path (split by image)

    @classmethod
    def from_manifest(cls, df) -> FaceArrays:
        """The arrays of a manifest DataFrame, checked (:func:`check_faces`: a DataError names the manifest,
        row and point of a valid landmark that is not finite or beyond :data:`MAX_COORDINATE`, a bad
        weight or angle)."""
        n = len(df)
        weight = df["weight"].to_numpy(np.float32) if "weight" in df.columns else np.ones(n, np.float32)
        keys = (df["source"].astype(str) + "/" + df["image_path"].astype(str)).to_numpy(str)
        faces = cls(
            landmarks=landmarks_array(df), valid=valid_array(df), pose=pose_array(df),
            weight=weight, paths=image_paths(df), sample_ids=df["sample_id"].to_numpy(str), image_keys=keys,
        )
        check_faces(faces, df.attrs.get("path", "manifest"))
        return faces

    @property
    def usable(self) -> np.ndarray:
        """``(N, 98) bool``: the point is marked valid and both its coordinates are finite."""
        return self.valid & finite_points(self.landmarks)

    def subset(self, rows: np.ndarray) -> FaceArrays:
        rows = np.asarray(rows)
        return FaceArrays(self.landmarks[rows], self.valid[rows], self.pose[rows], self.weight[rows],
                          [self.paths[i] for i in rows], self.sample_ids[rows], self.image_keys[rows])

    def __len__(self) -> int:
        return len(self.weight)


#: The largest landmark coordinate (pixels) accepted for training or evaluation: beyond it a label is a unit
#: or data error (``1e30`` is finite and trained to a loss of 8.5e10).
MAX_COORDINATE = 1e6


def check_faces(faces: FaceArrays, where="manifest") -> None:
    """DataError naming ``where``, the row and the point when a point marked valid is not finite or lies
    beyond :data:`MAX_COORDINATE` pixels, a weight is negative or not finite, or a known angle is beyond
    +-180 degrees. (Points not marked valid are ignored.)"""
    lm, valid = faces.landmarks, faces.valid
    with np.errstate(invalid="ignore"):
        fin = np.isfinite(lm).all(-1)
        big = (np.abs(np.where(np.isfinite(lm), lm, 0)) > MAX_COORDINATE).any(-1)
    for bad, what in ((valid & ~fin, "is marked valid but not finite"),
                      (valid & big, f"lies beyond {MAX_COORDINATE:g} pixels")):
        if bad.any():
            r, k = (int(i) for i in np.argwhere(bad)[0])
            raise DataError(f"{where}: row {r}, point {k} {what} ({lm[r, k].tolist()}); {int(bad.any(1).sum())} "
                            "faces like it. Check the manifest with `landmark_unify validate`")
    w = faces.weight
    badw = ~np.isfinite(w) | (w < 0)
    if badw.any():
        r = int(np.flatnonzero(badw)[0])
        raise DataError(f"{where}: row {r}: weight {float(w[r])} is not a finite number >= 0")
    with np.errstate(invalid="ignore"):
        badp = (np.isfinite(faces.pose) & (np.abs(faces.pose) > 180)).any(1)
    if badp.any():
        r = int(np.flatnonzero(badp)[0])
        raise DataError(f"{where}: row {r}: pose {faces.pose[r].tolist()} has an angle beyond +-180 degrees")


def split_by_image(keys: Sequence[str], fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into (train, val) so that all faces of one image land on the same side.

    ``fraction`` of the distinct images (at least one, at most all but one) go to validation, chosen by a
    seeded permutation. Returns sorted row indices.
    """
    if not 0 < fraction < 1:
        raise DataError(f"val fraction must be in (0, 1), got {fraction}")
    keys = np.asarray(keys, dtype=str)
    uniq, inverse = np.unique(keys, return_inverse=True)
    if len(uniq) < 2:
        raise DataError(f"need at least 2 distinct images to split, found {len(uniq)}")
    n_val = min(max(1, round(fraction * len(uniq))), len(uniq) - 1)
    perm = np.random.default_rng(seed).permutation(len(uniq))
    is_val = np.zeros(len(uniq), bool)
    is_val[perm[:n_val]] = True
    rows_val = np.flatnonzero(is_val[inverse])
    rows_train = np.flatnonzero(~is_val[inverse])
    return rows_train, rows_val
