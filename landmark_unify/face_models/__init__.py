"""Mean 3D faces for the pose fit: where they are found and how they are read.

The fit itself (:mod:`landmark_unify.core.pose`) is pure and takes a :class:`~landmark_unify.core.pose.FaceModel`;
this module turns a file into one (cached).

The default is the face shipped with the package, :data:`SHIPPED_FACE`: 98 points of MediaPipe's canonical
face mesh (Apache-2.0, ``LICENSE_mediapipe.txt`` beside it; built by ``tools/build_mediapipe_face.py``) with
the fit's calibration, and a face for points projected from a 3D face model (the mean of the AFLW2000-3D dev
half's ``pt3d_68`` labels, MIT, ``LICENSE_3DDFA_labels.txt`` beside it). The published Basel-Face-Model shapes
(``mean3d_68.npz``) stay selectable by path.
"""
from __future__ import annotations

import os
import zipfile
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.pose import FaceModel, PoseModelError, build_face_model, build_face_model_98

#: The face the package ships (package data): the default of every pose fit.
SHIPPED_FACE = Path(__file__).resolve().with_name("mediapipe_face98.npz")
#: Shape key of the shipped face (``--shape-key mediapipe`` without ``--mean-shape``).
SHIPPED_SHAPE_KEY = "mediapipe"
#: Where the published mean shapes usually are (``../shared/data/mean3d_68/mean3d_68.npz`` beside the
#: project); used only when asked for by ``--shape-key`` without ``--mean-shape``.
DEFAULT_MEAN3D = Path(__file__).resolve().parents[3] / "shared" / "data" / "mean3d_68" / "mean3d_68.npz"
#: Shape read from a ``mean3d_68.npz`` when no key is given.
DEFAULT_SHAPE_KEY = "3ddfa_bfm_raw"
#: Arrays of a 98-point face file such as :data:`SHIPPED_FACE`.
FACE98_KEYS = ("points98", "has_point")
#: Optional arrays of such a file: the face for points projected from a 3D face model (``projected=True``).
PROJECTED_KEYS = ("points98_projected", "has_point_projected")
#: Axis signs that bring each published shape into the model frame (x right, y up, z toward camera).
SHAPE_AXES = {
    "3ddfa_bfm_raw": (1.0, 1.0, 1.0),
    "prnet_raw": (1.0, -1.0, 1.0),
    "insightface_raw": (1.0, -1.0, 1.0),
    "yinguobing_raw": (1.0, -1.0, -1.0),
}


def resolve_mean3d_path(path: str | os.PathLike | None = None, key: str | None = None) -> Path:
    """The face file: ``path``, else ``$LANDMARK_UNIFY_MEAN3D``, else :data:`SHIPPED_FACE` (or, when a
    published shape ``key`` such as ``prnet_raw`` is asked for, :data:`DEFAULT_MEAN3D`)."""
    chosen = path or os.environ.get("LANDMARK_UNIFY_MEAN3D")
    if chosen:
        return Path(chosen)
    return DEFAULT_MEAN3D if key not in (None, SHIPPED_SHAPE_KEY) else SHIPPED_FACE


def _face98(data, p: Path) -> FaceModel:
    """A model from a 98-point face file (:data:`FACE98_KEYS`, optional calibration arrays)."""
    def opt(name):
        return np.asarray(data[name]) if name in data.files else None

    source = str(opt("source")) if "source" in data.files else str(p)
    ow = opt("occluded_weight")
    projected = None
    if all(k in data.files for k in PROJECTED_KEYS):
        what = str(opt("source_projected")) if "source_projected" in data.files else "points98_projected"
        projected = build_face_model_98(opt("points98_projected"), opt("has_point_projected"),
                                        source=f"{p.name}: {what}")
    return build_face_model_98(opt("points98"), opt("has_point"), source=f"{p.name}: {source}",
                               group_weights=opt("group_weights98"), normals=opt("normals98"),
                               occluded_weight=1.0 if ow is None else float(ow), projected=projected)


@lru_cache(maxsize=8)
def _load_model(path: str, key: str | None) -> FaceModel:
    p = Path(path)
    if not p.is_file():
        raise PoseModelError(
            f"mean 3D face not found at {p}; pass --mean-shape PATH (a mean3d_68.npz, a 98-point face .npz, or a "
            "(68, 3) .npy in the model frame), or leave both --mean-shape and --shape-key out for the shipped face"
        )
    try:
        if p.suffix == ".npy":
            x68, axes, source = np.asarray(np.load(p), dtype=np.float64), (1.0, 1.0, 1.0), f"{p}"
        else:
            loaded = np.load(p)
            if isinstance(loaded, np.ndarray):
                raise PoseModelError(f"{p}: one array, not an .npz of named shapes (a (68, 3) array goes in a .npy)")
            with loaded as data:
                if all(k in data.files for k in FACE98_KEYS) and key in (None, SHIPPED_SHAPE_KEY):
                    try:
                        return _face98(data, p)
                    except PoseModelError as exc:
                        raise PoseModelError(f"{p}: {exc}") from None
                key = key or DEFAULT_SHAPE_KEY
                if key not in data.files:
                    raise PoseModelError(f"{p}: no shape {key!r}; it holds {data.files}")
                x68 = np.asarray(data[key], dtype=np.float64)
            if key not in SHAPE_AXES:
                raise PoseModelError(f"{p}: unknown axes for shape {key!r}; known: {sorted(SHAPE_AXES)}")
            axes, source = SHAPE_AXES[key], f"{p}:{key}"
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # a truncated or damaged file
        raise PoseModelError(f"{p}: cannot read the mean 3D face ({type(exc).__name__}: {exc}); the file is damaged "
                             "or not a NumPy .npz/.npy") from None
    if np.shape(x68) != (68, 3):  # checked here too so that the message names the file (and the key)
        raise PoseModelError(f"{source}: a 68-point 3D shape must be (68, 3); got {np.shape(x68)}")
    return build_face_model(x68 * np.array(axes), source)


def load_face_model(path: str | os.PathLike | None = None, key: str | None = None) -> FaceModel:
    """Load (cached) the mean 3D face; see :func:`resolve_mean3d_path` for where it is looked for.

    With no arguments (and no ``$LANDMARK_UNIFY_MEAN3D``): the shipped MediaPipe face. ``key`` picks a
    shape of a ``mean3d_68.npz`` (default :data:`DEFAULT_SHAPE_KEY`); a 98-point face file needs none."""
    if key == SHIPPED_SHAPE_KEY and not (path or os.environ.get("LANDMARK_UNIFY_MEAN3D")):
        key = None  # the shipped face: one cache entry however it is asked for
    return _load_model(str(resolve_mean3d_path(path, key).resolve()), key)


def default_face_model() -> FaceModel:
    """The shipped face (cached), whatever the environment says."""
    return _load_model(str(SHIPPED_FACE), None)
