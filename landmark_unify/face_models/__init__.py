"""Mean 3D faces for the pose fit: where they are found and how they are read.

The fit itself (:mod:`landmark_unify.core.pose`) is pure and takes a :class:`~landmark_unify.core.pose.FaceModel`;
this module turns a file into one (cached).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.pose import FaceModel, PoseModelError, build_face_model

#: Default location of the mean shapes: ``../shared/data/mean3d_68/mean3d_68.npz`` beside the project
#: root; the environment variable ``LANDMARK_UNIFY_MEAN3D`` overrides it.
DEFAULT_MEAN3D = Path(__file__).resolve().parents[3] / "shared" / "data" / "mean3d_68" / "mean3d_68.npz"
DEFAULT_SHAPE_KEY = "3ddfa_bfm_raw"
#: Axis signs that bring each published shape into the model frame (x right, y up, z toward camera).
SHAPE_AXES = {
    "3ddfa_bfm_raw": (1.0, 1.0, 1.0),
    "prnet_raw": (1.0, -1.0, 1.0),
    "insightface_raw": (1.0, -1.0, 1.0),
    "yinguobing_raw": (1.0, -1.0, -1.0),
}


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
            x68, axes, source = np.asarray(np.load(p), dtype=np.float64), (1.0, 1.0, 1.0), f"{p}"
        else:
            loaded = np.load(p)
            if isinstance(loaded, np.ndarray):
                raise PoseModelError(f"{p}: one array, not an .npz of named shapes (a (68, 3) array goes in a .npy)")
            with loaded as data:
                if key not in data.files:
                    raise PoseModelError(f"{p}: no shape {key!r}; it holds {data.files}")
                x68 = np.asarray(data[key], dtype=np.float64)
            if key not in SHAPE_AXES:
                raise PoseModelError(f"{p}: unknown axes for shape {key!r}; known: {sorted(SHAPE_AXES)}")
            axes, source = SHAPE_AXES[key], f"{p}:{key}"
    except (OSError, ValueError) as exc:
        raise PoseModelError(f"{p}: cannot read the mean 3D face: {exc}") from None
    if np.shape(x68) != (68, 3):  # checked here too so that the message names the file (and the key)
        raise PoseModelError(f"{source}: a 68-point 3D shape must be (68, 3); got {np.shape(x68)}")
    return build_face_model(x68 * np.array(axes), source)


def load_face_model(path: str | os.PathLike | None = None, key: str = DEFAULT_SHAPE_KEY) -> FaceModel:
    """Load (cached) the mean 3D face; see :func:`resolve_mean3d_path` for where it is looked for."""
    return _load_model(str(resolve_mean3d_path(path).resolve()), key)
