"""The manifest schema: one declared Arrow schema, its columns and metadata, and the conversions between
Arrow tables, pandas frames and the ``(N, 98, 2)`` arrays of the core.

The written spec is ``docs/spec/manifest.md``; this module is its executable form.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import __version__
from ..core.layouts import CANONICAL, get_layout
from ..errors import ManifestError

FORMAT_VERSION = "1.2"
#: columns added after format 1.0 and the format that added them: a manifest of an older format is read
#: with them all null (:func:`upgrade_table`), and validates without them
ADDED_COLUMNS = {"ear_formula": "1.1", "label_source": "1.2", "label_model": "1.2"}
METADATA_KEY = b"landmark_unify"
NUM_POINTS = 98
ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
ATTRIBUTE_COLUMNS = tuple(f"attr_{a}" for a in ATTRIBUTES)
POSE_SOURCES = ("dataset", "fit", "model")
#: who placed the landmarks: the dataset's annotators, or a model (``landmark_unify label``)
LABEL_SOURCES = ("dataset", "machine")
ANGLES = ("pitch", "yaw", "roll")

LANDMARKS_TYPE = pa.list_(pa.list_(pa.float32(), 2), NUM_POINTS)
VALID_TYPE = pa.list_(pa.bool_(), NUM_POINTS)
BBOX_TYPE = pa.list_(pa.float32(), 4)

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

_DEFAULTS = {"weight": 1.0, "bbox_source": "landmarks", "label_source": "dataset"}


def make_sample_id(*parts) -> str:
    """A stable 16-hex-digit id from the parts (joined with NUL); same parts, same id."""
    h = hashlib.sha1("\x00".join("" if p is None else str(p) for p in parts).encode("utf-8"))
    return h.hexdigest()[:16]


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


# --- building tables --------------------------------------------------------------------------------

def fixed_list(values: np.ndarray, inner: int, outer: int | None, value_type: pa.DataType) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=value_type)
    arr = pa.FixedSizeListArray.from_arrays(flat, inner)
    if outer is not None:
        arr = pa.FixedSizeListArray.from_arrays(arr, outer)
    return arr


def _all_true(count: int, inner: int) -> pa.Array:
    """``fixed_list`` of ``count`` True values in lists of ``inner``, from a bitmap of ones."""
    bits = pa.py_buffer(np.full((count + 7) // 8, 255, dtype=np.uint8))
    flat = pa.Array.from_buffers(pa.bool_(), count, [None, bits])
    return pa.FixedSizeListArray.from_arrays(flat, inner)


def table_from_columns(columns: Mapping[str, object]) -> pa.Table:
    """Build a manifest table from column arrays.

    ``landmarks`` ``(N, 98, 2)`` float, ``valid`` ``(N, 98)`` bool, ``bbox`` ``(N, 4)`` float; other
    columns are sequences of length N (None or NaN for null in nullable columns). Missing nullable
    columns are all-null; ``weight`` defaults to 1 and ``bbox_source`` to 'landmarks'. Landmarks are set
    to NaN wherever ``valid`` is False.
    """
    lm = np.asarray(columns["landmarks"], dtype=np.float32)
    n = lm.shape[0]
    if lm.shape != (n, NUM_POINTS, 2):
        raise ManifestError(f"landmarks must be (N, {NUM_POINTS}, 2); got {lm.shape}")
    valid = np.asarray(columns["valid"], dtype=bool)
    if valid.shape != (n, NUM_POINTS):
        raise ManifestError(f"valid must be (N, {NUM_POINTS}); got {valid.shape}")
    if not valid.all():
        lm = np.where(valid[..., None], lm, np.float32(np.nan))
    bbox = np.asarray(columns["bbox"], dtype=np.float32)
    if bbox.shape != (n, 4):
        raise ManifestError(f"bbox must be (N, 4); got {bbox.shape}")
    unknown = set(columns) - set(COLUMN_NAMES)
    if unknown:
        raise ManifestError(f"unknown manifest columns {sorted(unknown)}; valid: {list(COLUMN_NAMES)}")
    arrays = []
    for name, typ, nullable, _ in COLUMNS:
        if name == "landmarks":
            arrays.append(fixed_list(lm, 2, NUM_POINTS, pa.float32()))
        elif name == "valid":
            arrays.append(_all_true(n * NUM_POINTS, NUM_POINTS) if valid.all() else
                          fixed_list(valid, NUM_POINTS, None, pa.bool_()))
        elif name == "bbox":
            arrays.append(fixed_list(bbox, 4, None, pa.float32()))
        elif name in columns:
            arrays.append(_column_array(name, columns[name], typ, nullable, n))
        elif name in _DEFAULTS:
            arrays.append(pa.array([_DEFAULTS[name]] * n, type=typ))
        elif nullable:
            arrays.append(pa.nulls(n, type=typ))
        else:
            raise ManifestError(f"required manifest column {name!r} is missing")
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _column_array(name: str, values, typ: pa.DataType, nullable: bool, n: int) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values.cast(typ)
    else:
        if isinstance(values, pd.Series):
            values = values.to_numpy(dtype=object) if values.dtype == object or str(values.dtype) in ("boolean", "Int32", "Int64") else values.to_numpy()
        arr = pa.array(values, type=typ, from_pandas=True)
    if len(arr) != n:
        raise ManifestError(f"column {name!r} has {len(arr)} values; expected {n}")
    if not nullable and arr.null_count:
        raise ManifestError(f"column {name!r} may not hold nulls ({arr.null_count} found)")
    return arr


def table_from_dataframe(df: pd.DataFrame) -> pa.Table:
    """Inverse of :func:`read_manifest`'s DataFrame (array cells in landmarks/valid/bbox)."""
    cols = {c: df[c] for c in df.columns if c in COLUMN_NAMES}
    cols["landmarks"] = landmarks_array(df)
    cols["valid"] = valid_array(df)
    cols["bbox"] = bbox_array(df)
    return table_from_columns(cols)


def take_rows(table: pa.Table, rows) -> pa.Table:
    """Rows ``rows`` (indices, in that order, or a boolean mask) of a manifest table.

    Use this instead of ``Table.take`` / ``Table.filter``: with the pyarrow releases of 2025-2026 these
    return wrong ``landmarks`` values when the nested fixed-size-list column comes from a sliced array
    (the slice offset is applied twice). Here the fixed-size columns go through NumPy, which reads the
    offsets correctly, and the flat columns through Arrow's own take.
    """
    rows = np.asarray(rows)
    if rows.dtype == bool:
        rows = np.flatnonzero(rows)
    rows = rows.astype(np.int64, copy=False)
    fixed = {"landmarks": ((NUM_POINTS, 2), np.float32, 2, NUM_POINTS, pa.float32()),
             "valid": ((NUM_POINTS,), bool, NUM_POINTS, None, pa.bool_()),
             "bbox": ((4,), np.float32, 4, None, pa.float32())}
    idx = pa.array(rows, type=pa.int64())
    arrays = []
    for name in table.column_names:
        col = table.column(name)
        if name in fixed:
            shape, dtype, inner, outer, vtype = fixed[name]
            values = fixed_to_numpy(col, shape, dtype)[rows]
            arrays.append(fixed_list(values, inner, outer, vtype))
        else:
            arrays.append(col.combine_chunks().take(idx))
    return pa.Table.from_arrays(arrays, schema=table.schema)



def schema_metadata(metadata: Mapping) -> dict[bytes, bytes]:
    """The Arrow schema metadata of a manifest file: ``metadata`` (``format_version`` added when absent)
    as key-sorted JSON under :data:`METADATA_KEY`."""
    meta = dict(metadata)
    meta.setdefault("format_version", FORMAT_VERSION)
    return {METADATA_KEY: json.dumps(meta, sort_keys=True).encode("utf-8")}


def upgrade_table(table: pa.Table, columns=None) -> pa.Table:
    """``table`` (read from a manifest file, all columns or ``columns``) with the :data:`ADDED_COLUMNS` it
    lacks added as nulls: a manifest written before a column existed reads like a new one. With all
    columns, the manifest columns come in :data:`SCHEMA` order (others after them)."""
    wanted = [c for c in ADDED_COLUMNS if c not in table.column_names and (columns is None or c in columns)]
    if not wanted:
        return table
    n = table.num_rows
    if columns is not None:
        for c in wanted:
            table = table.append_column(SCHEMA.field(c), pa.nulls(n, type=SCHEMA.field(c).type))
        return table
    names = [c for c in COLUMN_NAMES if c in table.column_names or c in wanted]
    names += [c for c in table.column_names if c not in COLUMN_NAMES]
    arrays = [table.column(c) if c in table.column_names else pa.chunked_array([pa.nulls(n, type=SCHEMA.field(c).type)])
              for c in names]
    fields = [table.schema.field(c) if c in table.column_names else SCHEMA.field(c) for c in names]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=table.schema.metadata))


def check_schema(table: pa.Table) -> None:
    """Raise ManifestError unless ``table`` has :data:`SCHEMA` (schema metadata aside)."""
    if not table.schema.equals(SCHEMA, check_metadata=False):
        raise ManifestError(f"table does not have the manifest schema:\n{table.schema}")


# --- tables to arrays and frames ----------------------------------------------------------------------

def fixed_to_numpy(col: pa.ChunkedArray, shape: tuple[int, ...], dtype) -> np.ndarray:
    arr = col.combine_chunks()
    while pa.types.is_fixed_size_list(arr.type):
        arr = arr.flatten()
    return arr.to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape((len(col),) + shape)


def dataframe_from_table(table: pa.Table) -> pd.DataFrame:
    arrays = {
        "landmarks": fixed_to_numpy(table.column("landmarks"), (NUM_POINTS, 2), np.float32),
        "valid": fixed_to_numpy(table.column("valid"), (NUM_POINTS,), bool),
        "bbox": fixed_to_numpy(table.column("bbox"), (4,), np.float32),
    }
    rest = table.drop_columns(list(arrays))
    df = rest.to_pandas(
        types_mapper={pa.bool_(): pd.BooleanDtype(), pa.int32(): pd.Int32Dtype()}.get,
    )
    for name, arr in arrays.items():
        df[name] = list(arr)
    df = df[[c for c in table.column_names]]
    return df


def landmarks_array(df: pd.DataFrame) -> np.ndarray:
    """``(N, 98, 2)`` float32 pixels, NaN where invalid."""
    if len(df) == 0:
        return np.zeros((0, NUM_POINTS, 2), np.float32)
    return np.stack(df["landmarks"].to_list()).astype(np.float32, copy=False)


def valid_array(df: pd.DataFrame) -> np.ndarray:
    """``(N, 98)`` bool."""
    if len(df) == 0:
        return np.zeros((0, NUM_POINTS), bool)
    return np.stack(df["valid"].to_list()).astype(bool, copy=False)


def bbox_array(df: pd.DataFrame) -> np.ndarray:
    """``(N, 4)`` float32 x_min, y_min, x_max, y_max."""
    if len(df) == 0:
        return np.zeros((0, 4), np.float32)
    return np.stack(df["bbox"].to_list()).astype(np.float32, copy=False)


def source_roots(df: pd.DataFrame) -> dict[str, str]:
    return dict(df.attrs.get("manifest", {}).get("source_roots", {}))


def image_paths(df: pd.DataFrame, roots: Mapping[str, str] | None = None) -> list[Path | None]:
    """Absolute image paths: ``source_roots[source] / image_path``. Relative roots are taken relative to
    the manifest's folder. None where the source has no root, or where ``image_path`` leaves its root
    (``..``, absolute) and the manifest was not built with ``allow_outside_root``: such an image is never
    read or drawn, as the build would not have stored it."""
    from ..readers import outside_root

    roots = dict(roots) if roots is not None else source_roots(df)
    base = Path(df.attrs.get("path", ".")).parent
    resolved = {k: (base / v).resolve() if not Path(v).is_absolute() else Path(v) for k, v in roots.items()}
    rel = df["image_path"].to_list()
    allowed = bool(df.attrs.get("manifest", {}).get("allow_outside_root"))
    refused = np.zeros(len(rel), bool) if allowed else outside_root([p if isinstance(p, str) else "" for p in rel])
    return [
        (resolved[s] / p) if s in resolved and isinstance(p, str) and not bad else None
        for s, p, bad in zip(df["source"].to_list(), rel, refused.tolist())
    ]


# --- sample keys and derived metadata ----------------------------------------------------------------------

def id_keys(table: pa.Table) -> np.ndarray:
    """sample_id (16 hex digits) as uint64, for a compact duplicate check across units."""
    col = table.column("sample_id")
    n = len(col)
    if n == 0:
        return np.zeros(0, np.uint64)
    keys = _hex16_keys(col.combine_chunks()) if not col.null_count else None
    if keys is not None:  # the ids this library makes: 16 hex digits each, decoded in one go
        return keys
    ids = col.to_pylist()  # other ids (from elsewhere): hashed one by one
    return np.fromiter((hash_key(x) for x in ids), dtype=np.uint64, count=n)


_NIBBLE = np.full(256, 255, dtype=np.uint8)
_NIBBLE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)
_NIBBLE[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint8)


def _hex16_keys(arr: pa.Array) -> np.ndarray | None:
    """uint64 keys of a string array whose every value is 16 hex digits (as ``int(value, 16)``), or None
    when one is not."""
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        return None
    n = len(arr)
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width, count=n + 1, offset=arr.offset * np.dtype(width).itemsize)
    if (np.diff(offsets) != 16).any():
        return None
    text = np.frombuffer(arr.buffers()[2], dtype=np.uint8, count=16 * n, offset=int(offsets[0]))
    nib = _NIBBLE[text].reshape(n, 16)
    if (nib == 255).any():
        return None
    pairs = (nib[:, 0::2] << 4) | nib[:, 1::2]
    return np.ascontiguousarray(pairs).view(">u8").reshape(n).astype(np.uint64)


def hash_key(text: str) -> int:
    """A 64-bit key of a string (the first 16 hex digits of its SHA-1)."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:16], 16)


def rebased_roots(roots: Mapping[str, str], from_manifest: str | os.PathLike, to_manifest: str | os.PathLike) -> dict[str, str]:
    """Source roots of a manifest at ``from_manifest`` rewritten for a manifest written at ``to_manifest``.

    Relative roots are relative to the manifest's folder; they are kept relative (to the new folder)
    when possible, else made absolute.
    """
    src_dir = Path(from_manifest).resolve().parent
    dst_dir = Path(to_manifest).resolve().parent
    out = {}
    for name, root in roots.items():
        p = Path(root)
        if p.is_absolute():
            out[name] = str(p)
            continue
        absolute = (src_dir / p).resolve()
        try:
            out[name] = os.path.relpath(absolute, dst_dir)
        except ValueError:  # different drives
            out[name] = str(absolute)
    return out


def derived_metadata(meta: Mapping, from_manifest, to_manifest, command: str, **extra) -> dict:
    """Metadata for a manifest derived from one read at ``from_manifest``: the roots rebased, the
    input's extra keys kept, ``command`` recorded and ``extra`` added."""
    roots = rebased_roots(meta.get("source_roots", {}), from_manifest, to_manifest)
    kept = {k: v for k, v in meta.items() if k not in ("format_version", "canonical_layout", "point_names",
                                                       "source_roots", "library_version", "command")}
    kept.update(extra)
    return make_metadata(roots, command=command, **kept)
