"""The manifest: one declared Arrow schema, atomic deterministic Parquet I/O, and validation.

The written spec is ``docs/manifest.md``; this module is its executable form.
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
import pyarrow.parquet as pq

from ._io import atomic_path
from .errors import ManifestError
from .eyes import EYE_STATES
from .layouts import CANONICAL, get_layout
from .maps import finite_points

FORMAT_VERSION = "1.0"
METADATA_KEY = b"landmark_unify"
NUM_POINTS = 98
ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
ATTRIBUTE_COLUMNS = tuple(f"attr_{a}" for a in ATTRIBUTES)
POSE_SOURCES = ("dataset", "fit")
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
    ("pose_source", pa.string(), True, "'dataset' or 'fit'; null where the pose is unknown"),
    ("fit_pitch", pa.float32(), True, "degrees, from the landmark fit, kept beside a dataset pose"),
    ("fit_yaw", pa.float32(), True, "degrees, from the landmark fit"),
    ("fit_roll", pa.float32(), True, "degrees, from the landmark fit"),
    ("ear_left", pa.float32(), True, "eye aspect ratio of the image-left eye"),
    ("ear_right", pa.float32(), True, "eye aspect ratio of the image-right eye"),
    ("eye_state", pa.string(), True, "open, one_closed, both_closed or unknown"),
    ("source_schema", pa.string(), False, "schema the source points were mapped from"),
    ("origin_file", pa.string(), False, "annotation file, relative to the source root"),
    ("origin_line", pa.int32(), True, "1-based line in origin_file, where line-based"),
    ("origin_key", pa.string(), True, "key inside origin_file (JSON id, .mat variable), where keyed"),
    ("weight", pa.float32(), False, "per-sample training weight"),
    ("image_width", pa.int32(), True, "pixels, where known"),
    ("image_height", pa.int32(), True, "pixels, where known"),
)
COLUMN_NAMES = tuple(c[0] for c in COLUMNS)
SCHEMA = pa.schema([pa.field(n, t, nullable=nl) for n, t, nl, _ in COLUMNS])

_DEFAULTS = {"weight": 1.0, "bbox_source": "landmarks"}


def make_sample_id(*parts) -> str:
    """A stable 16-hex-digit id from the parts (joined with NUL); same parts, same id."""
    h = hashlib.sha1("\x00".join("" if p is None else str(p) for p in parts).encode("utf-8"))
    return h.hexdigest()[:16]


def library_version() -> str:
    from . import __version__

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

def _fixed_list(values: np.ndarray, inner: int, outer: int | None, value_type: pa.DataType) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=value_type)
    arr = pa.FixedSizeListArray.from_arrays(flat, inner)
    if outer is not None:
        arr = pa.FixedSizeListArray.from_arrays(arr, outer)
    return arr


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
            arrays.append(_fixed_list(lm, 2, NUM_POINTS, pa.float32()))
        elif name == "valid":
            arrays.append(_fixed_list(valid, NUM_POINTS, None, pa.bool_()))
        elif name == "bbox":
            arrays.append(_fixed_list(bbox, 4, None, pa.float32()))
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
            values = _fixed_to_numpy(col, shape, dtype)[rows]
            arrays.append(_fixed_list(values, inner, outer, vtype))
        else:
            arrays.append(col.combine_chunks().take(idx))
    return pa.Table.from_arrays(arrays, schema=table.schema)


# --- writing ------------------------------------------------------------------------------------------

#: Parquet writer settings of every manifest file (with row groups of :data:`ROW_GROUP_SIZE` rows).
WRITE_OPTIONS = {"compression": "zstd", "write_statistics": True}
ROW_GROUP_SIZE = 65536


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


def write_manifest(data, path: str | os.PathLike, metadata: Mapping, *, make_parents: bool = True) -> Path:
    """Write a manifest atomically (temporary file in the same folder, then rename).

    data: a ``pyarrow.Table`` with :data:`SCHEMA`, a DataFrame as returned by :func:`read_manifest`, or a
    mapping of column arrays (see :func:`table_from_columns`). The output depends only on the content:
    the same table and metadata give the same bytes. make_parents: create missing folders (when False,
    a missing folder raises FileNotFoundError).
    """
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pd.DataFrame):
        table = table_from_dataframe(data)
    else:
        table = table_from_columns(data)
    check_schema(table)
    table = table.replace_schema_metadata(schema_metadata(metadata))
    path = Path(path)
    with atomic_path(path, make_parents=make_parents) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE, **WRITE_OPTIONS)
    return path


# --- reading ------------------------------------------------------------------------------------------

def read_metadata(path: str | os.PathLike) -> dict:
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise ManifestError(f"{path}: file not found") from None
    except (OSError, pa.ArrowInvalid) as exc:
        raise ManifestError(f"{path}: cannot read as Parquet: {exc}") from None
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ManifestError(f"{path}: no {METADATA_KEY.decode()!r} metadata; not a manifest")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: metadata is not valid JSON: {exc}") from None


def read_table(path: str | os.PathLike) -> pa.Table:
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ManifestError(f"{path}: cannot read as Parquet: {exc}") from None


def _fixed_to_numpy(col: pa.ChunkedArray, shape: tuple[int, ...], dtype) -> np.ndarray:
    arr = col.combine_chunks()
    while pa.types.is_fixed_size_list(arr.type):
        arr = arr.flatten()
    return arr.to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape((len(col),) + shape)


def dataframe_from_table(table: pa.Table) -> pd.DataFrame:
    arrays = {
        "landmarks": _fixed_to_numpy(table.column("landmarks"), (NUM_POINTS, 2), np.float32),
        "valid": _fixed_to_numpy(table.column("valid"), (NUM_POINTS,), bool),
        "bbox": _fixed_to_numpy(table.column("bbox"), (4,), np.float32),
    }
    rest = table.drop_columns(list(arrays))
    df = rest.to_pandas(
        types_mapper={pa.bool_(): pd.BooleanDtype(), pa.int32(): pd.Int32Dtype()}.get,
    )
    for name, arr in arrays.items():
        df[name] = list(arr)
    df = df[[c for c in table.column_names]]
    return df


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest into a DataFrame.

    ``landmarks`` cells are ``(98, 2)`` float32 arrays, ``valid`` cells ``(98,)`` bool, ``bbox`` cells
    ``(4,)`` float32 (views into one contiguous block; use :func:`landmarks_array` for the stacked
    ``(N, 98, 2)`` array). Attribute flags are pandas nullable booleans. ``df.attrs["manifest"]`` holds
    the metadata dict and ``df.attrs["path"]`` the file.
    """
    meta = read_metadata(path)
    table = read_table(path)
    missing = [c for c in COLUMN_NAMES if c not in table.column_names]
    if missing:
        raise ManifestError(f"{path}: missing manifest columns {missing}; run `landmark_unify validate {path}`")
    df = dataframe_from_table(table)
    df.attrs["manifest"] = meta
    df.attrs["path"] = str(Path(path).resolve())
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
    the manifest's folder. None where the source has no root."""
    roots = dict(roots) if roots is not None else source_roots(df)
    base = Path(df.attrs.get("path", ".")).parent
    resolved = {k: (base / v).resolve() if not Path(v).is_absolute() else Path(v) for k, v in roots.items()}
    return [
        (resolved[s] / p) if s in resolved else None
        for s, p in zip(df["source"].to_list(), df["image_path"].to_list())
    ]


# --- validation ---------------------------------------------------------------------------------------

def validate_table(table: pa.Table, meta: Mapping, where: str = "manifest") -> list[str]:
    """Every way ``table`` and ``meta`` break the spec, as messages (empty when valid)."""
    problems: list[str] = []
    for name, typ, nullable, _ in COLUMNS:
        if name not in table.column_names:
            problems.append(f"{where}: missing column {name!r}")
            continue
        field = table.schema.field(name)
        if not field.type.equals(typ):
            problems.append(f"{where}: column {name!r} has type {field.type}; expected {typ}")
        elif not nullable and table.column(name).null_count:
            problems.append(f"{where}: column {name!r} has {table.column(name).null_count} nulls; not nullable")
    extra = [c for c in table.column_names if c not in COLUMN_NAMES]
    if extra:
        problems.append(f"{where}: unknown columns {extra}")
    if meta.get("format_version") != FORMAT_VERSION:
        problems.append(f"{where}: format_version {meta.get('format_version')!r}; expected {FORMAT_VERSION!r}")
    if list(meta.get("point_names", [])) != list(get_layout(CANONICAL).names):
        problems.append(f"{where}: metadata point_names differ from the canonical layout")
    if problems:
        return problems

    n = table.num_rows
    ids = table.column("sample_id").to_pandas()
    if ids.duplicated().any():
        problems.append(f"{where}: {int(ids.duplicated().sum())} duplicate sample_id values, e.g. {ids[ids.duplicated()].iloc[0]!r}")
    lm = _fixed_to_numpy(table.column("landmarks"), (NUM_POINTS, 2), np.float32)
    valid = _fixed_to_numpy(table.column("valid"), (NUM_POINTS,), bool)
    finite = finite_points(lm)
    bad = np.flatnonzero((finite != valid).any(1))
    if bad.size:
        problems.append(f"{where}: {bad.size} rows where landmarks are not finite exactly at valid points (first row {bad[0]})")
    partial = np.flatnonzero((np.isnan(lm).any(-1) & ~np.isnan(lm).all(-1)).any(1))
    if partial.size:
        problems.append(f"{where}: {partial.size} rows with a point that has one NaN coordinate (first row {partial[0]})")
    bbox = _fixed_to_numpy(table.column("bbox"), (4,), np.float32)
    badbox = np.flatnonzero(~np.isfinite(bbox).all(1) | (bbox[:, 2] < bbox[:, 0]) | (bbox[:, 3] < bbox[:, 1]))
    if badbox.size:
        problems.append(f"{where}: {badbox.size} rows with a non-finite or inverted bbox (first row {badbox[0]})")
    _check_values(table, "bbox_source", ("given", "landmarks"), where, problems)
    _check_values(table, "pose_source", POSE_SOURCES, where, problems)
    _check_values(table, "eye_state", EYE_STATES, where, problems)
    pose_known = table.column("pose_source").is_valid().to_numpy(zero_copy_only=False)
    for a in ANGLES:
        vals = table.column(a).to_numpy(zero_copy_only=False).astype(np.float64)
        known = np.isfinite(vals)
        if (known != pose_known).any():
            problems.append(f"{where}: column {a!r} is null where pose_source is set, or the reverse ({int((known != pose_known).sum())} rows)")
        if (np.abs(vals[known]) > 180).any():
            problems.append(f"{where}: column {a!r} has values beyond +-180 degrees")
    weight = table.column("weight").to_numpy(zero_copy_only=False)
    if n and (~np.isfinite(weight) | (weight < 0)).any():
        problems.append(f"{where}: column 'weight' has negative or non-finite values")
    roots = meta.get("source_roots", {})
    missing = sorted(set(table.column("source").unique().to_pylist()) - set(roots))
    if missing:
        problems.append(f"{where}: sources {missing} have no entry in metadata source_roots")
    return problems


def _check_values(table: pa.Table, column: str, allowed, where: str, problems: list[str]) -> None:
    seen = set(table.column(column).drop_null().unique().to_pylist())
    bad = sorted(seen - set(allowed))
    if bad:
        problems.append(f"{where}: column {column!r} has values {bad}; allowed {list(allowed)}")


def validate_manifest(path: str | os.PathLike) -> list[str]:
    """Check a manifest file against the spec; returns the problems found (empty list when valid)."""
    try:
        meta = read_metadata(path)
        table = read_table(path)
    except ManifestError as exc:
        return [str(exc)]
    return validate_table(table, meta, where=str(path))
