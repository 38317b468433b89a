"""Conversions of manifest rows: column arrays to Arrow tables (:func:`table_from_columns`), Arrow tables to
pandas frames and back, and the fixed-shape columns (:data:`~.schema.FIXED_COLUMNS`) to and from the
``(N, 98, 2)``, ``(N, 98)`` and ``(N, 4)`` arrays of the core."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import ManifestError
from .schema import ADDED_COLUMNS, COLUMN_NAMES, COLUMNS, FIXED_COLUMNS, NUM_POINTS, SCHEMA

_DEFAULTS = {"weight": 1.0, "bbox_source": "landmarks", "label_source": "dataset"}


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
    idx = pa.array(rows, type=pa.int64())
    arrays = []
    for name in table.column_names:
        col = table.column(name)
        if name in FIXED_COLUMNS:
            arrays.append(fixed_array(name, fixed_column(table, name)[rows]))
        else:
            arrays.append(col.combine_chunks().take(idx))
    return pa.Table.from_arrays(arrays, schema=table.schema)



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



# --- tables to arrays and frames ----------------------------------------------------------------------

def fixed_to_numpy(col: pa.ChunkedArray, shape: tuple[int, ...], dtype) -> np.ndarray:
    arr = col.combine_chunks()
    while pa.types.is_fixed_size_list(arr.type):
        arr = arr.flatten()
    return arr.to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape((len(col),) + shape)


def fixed_column(table: pa.Table, name: str) -> np.ndarray:
    """The fixed-shape column ``name`` of ``table`` (:data:`~.schema.FIXED_COLUMNS`) as one ``(N, *shape)``
    array of its dtype."""
    shape, dtype, _ = FIXED_COLUMNS[name]
    return fixed_to_numpy(table.column(name), shape, dtype)


def fixed_array(name: str, values: np.ndarray) -> pa.Array:
    """The Arrow array of the fixed-shape column ``name`` from ``(N, *shape)`` values."""
    shape, dtype, vtype = FIXED_COLUMNS[name]
    return fixed_list(np.asarray(values, dtype=dtype), shape[-1], shape[0] if len(shape) == 2 else None, vtype)


def dataframe_from_table(table: pa.Table) -> pd.DataFrame:
    arrays = {name: fixed_column(table, name) for name in FIXED_COLUMNS}
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


