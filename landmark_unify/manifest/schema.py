"""The manifest schema: one declared Arrow schema, its columns, the fixed-shape columns and the metadata.

The written spec is ``docs/spec/manifest.md``; this module is its executable form. The rest of what a
manifest is lives beside it, one concern a module: conversions between tables, frames and arrays
(:mod:`.convert`), the identity of a face (:mod:`.identity`), where its images are (:mod:`.paths`) and the
rule a row must pass (:mod:`.rules`). Their public names stay importable from here.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from .. import __version__
from ..core.layouts import CANONICAL, get_layout
from ..errors import ManifestError

FORMAT_VERSION = "1.2"
#: columns added after format 1.0 and the format that added them: a manifest of an older format is read
#: with them all null (:func:`upgrade_table`), and validates without them
ADDED_COLUMNS = {"ear_formula": "1.1", "label_source": "1.2", "label_model": "1.2"}
#: manifest formats this version reads (an older one lacks the ADDED_COLUMNS of later ones; a newer one is
#: refused by every read: its columns or rules may mean what this version does not know)
SUPPORTED_VERSIONS = tuple(sorted({"1.0", *ADDED_COLUMNS.values(), FORMAT_VERSION}))
METADATA_KEY = b"landmark_unify"
NUM_POINTS = 98
#: the WFLW attribute flags, in WFLW's order (its lists give them in this order after the box)
ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
ATTRIBUTE_COLUMNS = tuple(f"attr_{a}" for a in ATTRIBUTES)
POSE_SOURCES = ("dataset", "fit", "model")
#: who placed the landmarks: the dataset's annotators, or a model (``landmark_unify label``)
LABEL_SOURCES = ("dataset", "machine")
ANGLES = ("pitch", "yaw", "roll")

LANDMARKS_TYPE = pa.list_(pa.list_(pa.float32(), 2), NUM_POINTS)
VALID_TYPE = pa.list_(pa.bool_(), NUM_POINTS)
BBOX_TYPE = pa.list_(pa.float32(), 4)
#: the columns that hold a fixed-shape array per row: name -> (shape of one row, NumPy dtype, Arrow value type)
FIXED_COLUMNS: dict[str, tuple[tuple[int, ...], type, pa.DataType]] = {
    "landmarks": ((NUM_POINTS, 2), np.float32, pa.float32()),
    "valid": ((NUM_POINTS,), np.bool_, pa.bool_()),
    "bbox": ((4,), np.float32, pa.float32()),
}

#: name, type, nullable, description. Order is the column order on disk.
COLUMNS: tuple[tuple[str, pa.DataType, bool, str], ...] = (
    ("sample_id", pa.string(), False, "stable id of the face: hash of source, split and origin"),
    ("source", pa.string(), False, "source label (a key of the source_roots metadata)"),
    ("split", pa.string(), False, "dataset split, e.g. train, test"),
    ("image_path", pa.string(), False, "image path relative to the source root, '/' separated"),
    ("landmarks", LANDMARKS_TYPE, False, "98 x 2 float32 pixels, 0-based, NaN where invalid"),
    ("valid", VALID_TYPE, False, "98 bools: point is supervised"),
    ("bbox", BBOX_TYPE, False, "x_min, y_min, x_max, y_max pixels"),
    ("bbox_source", pa.string(), False, "'given' (dataset's box) or 'landmarks' (extent of valid points)"),
    *((c, pa.bool_(), True, f"WFLW attribute flag {c[5:]}; null where unknown") for c in ATTRIBUTE_COLUMNS),
    ("pitch", pa.float32(), True, "degrees; 300W-LP Pose_Para convention"),
    ("yaw", pa.float32(), True, "degrees; 300W-LP Pose_Para convention"),
    ("roll", pa.float32(), True, "degrees; 300W-LP Pose_Para convention"),
    ("pose_source", pa.string(), True, "'dataset', 'fit' or 'model' (the labelling model's own pose, see "
                                       "label_model); null where the pose is unknown"),
    ("fit_pitch", pa.float32(), True, "degrees, from the landmark fit, kept beside a dataset pose"),
    ("fit_yaw", pa.float32(), True, "degrees, from the landmark fit"),
    ("fit_roll", pa.float32(), True, "degrees, from the landmark fit"),
    ("ear_left", pa.float32(), True, "eye aspect ratio of the image-left eye"),
    ("ear_right", pa.float32(), True, "eye aspect ratio of the image-right eye"),
    ("eye_state", pa.string(), True, "open, one_closed, both_closed or unknown"),
    ("ear_formula", pa.string(), True, "formula of ear_left/ear_right: 'wflw8' (WFLW's 8 eye points) or 'ibug6' "
                                       "(6-point iBUG EAR, from the source points); null where unknown"),
    ("source_schema", pa.string(), False, "schema the source points were mapped from"),
    ("origin_file", pa.string(), False, "annotation file, relative to the source root"),
    ("origin_line", pa.int32(), True, "1-based line in origin_file, where line-based"),
    ("origin_key", pa.string(), True, "key inside origin_file (JSON id, .mat variable), where keyed"),
    ("label_source", pa.string(), True, "who placed the landmarks: 'dataset' (the dataset's annotation) or "
                                        "'machine' (a model's prediction, see label_model); null where unknown"),
    ("label_model", pa.string(), True, "name of the model behind machine labels; null for dataset labels"),
    ("weight", pa.float32(), False, "per-sample training weight"),
    ("image_width", pa.int32(), True, "pixels, where known"),
    ("image_height", pa.int32(), True, "pixels, where known"),
)
COLUMN_NAMES = tuple(c[0] for c in COLUMNS)
SCHEMA = pa.schema([pa.field(n, t, nullable=nl) for n, t, nl, _ in COLUMNS])


def library_version() -> str:
    return __version__


def make_metadata(source_roots: Mapping[str, str], command: str | None = None, **extra) -> dict:
    """The metadata dict stored in the schema under key ``landmark_unify``."""
    meta = {
        "format_version": FORMAT_VERSION,
        "canonical_layout": CANONICAL,
        "point_names": list(get_layout(CANONICAL).names),
        "source_roots": {k: str(v) for k, v in sorted(source_roots.items())},
        "library_version": library_version(),
        "command": command,
    }
    meta.update(extra)
    return meta


def version_tuple(version) -> tuple[int, ...] | None:
    """``"1.2"`` as ``(1, 2)``: whole numbers of ASCII digits separated by dots; None for anything else."""
    if not isinstance(version, str) or not version.isascii():
        return None
    parts = version.split(".")
    if not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def schema_metadata(metadata: Mapping) -> dict[bytes, bytes]:
    """The Arrow schema metadata of a manifest file: ``metadata`` (``format_version`` added when absent)
    as key-sorted JSON under :data:`METADATA_KEY`."""
    meta = dict(metadata)
    meta.setdefault("format_version", FORMAT_VERSION)
    return {METADATA_KEY: json.dumps(meta, sort_keys=True).encode("utf-8")}


def check_schema(table: pa.Table) -> None:
    """Raise ManifestError unless ``table`` has :data:`SCHEMA` (schema metadata aside)."""
    if not table.schema.equals(SCHEMA, check_metadata=False):
        raise ManifestError(f"table does not have the manifest schema:\n{table.schema}")


# --- the other concerns, importable from here as before ------------------------------------------------------
#: name -> module (of this package) that defines it; resolved on first use, so that those modules may
#: import this one at their top
_MOVED = {
    **dict.fromkeys(("bbox_array", "dataframe_from_table", "fixed_array", "fixed_column", "fixed_list",
                     "fixed_to_numpy", "landmarks_array", "table_from_columns", "table_from_dataframe", "take_rows",
                     "upgrade_table", "valid_array"), "convert"),
    **dict.fromkeys(("hash_key", "id_keys", "make_sample_id", "sample_id_array"), "identity"),
    **dict.fromkeys(("derived_metadata", "image_paths", "rebased_roots", "source_roots"), "paths"),
}


def __getattr__(name: str):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f"{__package__}.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ADDED_COLUMNS", "ANGLES", "ATTRIBUTES", "ATTRIBUTE_COLUMNS", "BBOX_TYPE", "COLUMNS", "COLUMN_NAMES",
    "FIXED_COLUMNS", "FORMAT_VERSION", "LABEL_SOURCES", "LANDMARKS_TYPE", "METADATA_KEY", "NUM_POINTS",
    "POSE_SOURCES", "SCHEMA", "SUPPORTED_VERSIONS", "VALID_TYPE", "check_schema", "version_tuple", "library_version", "make_metadata", "schema_metadata",
] + sorted(_MOVED)
