"""The schema check of every manifest read: a missing column, a wrong type (a list of another length, text
where numbers belong), or a null in a required column is a :class:`ManifestError` naming the file, the
column and the first bad row, before any command works on the rows.

:func:`check_schema_of` needs only the Arrow schema (a Parquet footer); :func:`check_table` also looks at
the rows (nulls, and the first bad row of a wrong type). Values (finite points, box corners, angle ranges)
are the business of ``validate`` (:mod:`landmark_unify.manifest.validate`).
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ManifestError
from .convert import upgrade_table
from .schema import ADDED_COLUMNS, COLUMN_NAMES, COLUMNS, FIXED_COLUMNS, FORMAT_VERSION, version_tuple

_SPEC = {name: (typ, nullable) for name, typ, nullable, _ in COLUMNS}
#: expected list lengths of the array columns, outer first
_LENGTHS = {name: shape for name, (shape, _, _) in FIXED_COLUMNS.items()}


def _wanted(columns: Sequence[str] | None) -> list[str]:
    return list(COLUMN_NAMES) if columns is None else [c for c in COLUMN_NAMES if c in columns]


def _missing(names: Sequence[str], path, columns: Sequence[str] | None) -> None:
    # a column added in a later format may be absent (an older manifest): it reads as nulls
    missing = [c for c in _wanted(columns) if c not in names and c not in ADDED_COLUMNS]
    if missing:
        raise ManifestError(f"{path}: missing manifest columns {missing}; run `landmark_unify validate {path}`")


def check_schema_of(schema: pa.Schema, path: str | os.PathLike, columns: Sequence[str] | None = None) -> None:
    """Raise ManifestError when ``schema`` lacks a manifest column or gives one another type (only
    ``columns`` when given). Extra columns are allowed here (``validate`` reports them)."""
    _missing(schema.names, path, columns)
    for name in _wanted(columns):
        if name not in schema.names:
            continue
        got = schema.field(name).type
        typ = _SPEC[name][0]
        if not got.equals(typ):
            raise ManifestError(f"{path}: column {name!r} has type {got}; expected {typ}; "
                                f"run `landmark_unify validate {path}`")


def check_table(table: pa.Table, path: str | os.PathLike, *, offset: int = 0,
                columns: Sequence[str] | None = None) -> pa.Table:
    """Raise ManifestError naming ``path``, the column and the first bad row (``offset`` + row in
    ``table``) when a manifest column is missing, has another type or holds a null where none is allowed.
    Returns ``table``, with the columns of a later format that it lacks added as nulls
    (:func:`~landmark_unify.manifest.schema.upgrade_table`)."""
    _missing(table.column_names, path, columns)
    table = upgrade_table(table, columns)
    for name in _wanted(columns):
        typ, nullable = _SPEC[name]
        col = table.column(name)
        if not col.type.equals(typ):
            row, detail = _first_bad_row(name, col)
            where = f"first bad row {offset + row}" if row is not None else "no rows"
            raise ManifestError(f"{path}: column {name!r} has type {col.type}; expected {typ} ({where}"
                                f"{': ' + detail if detail else ''}); run `landmark_unify validate {path}`")
        if not nullable and col.null_count:
            row = _first_null(col)
            raise ManifestError(f"{path}: column {name!r} holds {col.null_count} nulls and may hold none "
                                f"(first bad row {offset + row})")
    return table


def _first_null(col: pa.ChunkedArray) -> int:
    nulls = pc.is_null(col.combine_chunks()).to_numpy(zero_copy_only=False)
    return int(nulls.argmax())


def _first_bad_row(name: str, col: pa.ChunkedArray) -> tuple[int | None, str]:
    """The first row that does not fit column ``name`` and why (for a column of the wrong type)."""
    if len(col) == 0:
        return None, ""
    arr = col.combine_chunks()
    if name in _LENGTHS:
        return _first_bad_list(arr, _LENGTHS[name])
    typ = _SPEC[name][0]
    for i, v in enumerate(arr.to_pylist()):
        if v is None:
            continue
        try:
            ok = pa.array([v]).cast(typ, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError):
            return i, f"value {v!r}"
        if ok.null_count:
            return i, f"value {v!r}"
        return i, f"value {v!r} is stored as {arr.type}"
    return 0, "every value is null"


def _first_bad_list(arr: pa.Array, lengths: tuple[int, ...]) -> tuple[int, str]:
    """For a list column: the first row whose nesting or lengths differ from ``lengths``."""
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type)):
        return 0, f"not a list of {lengths[0]}"
    for i in range(len(arr)):
        v = arr[i].as_py()
        if v is None:
            return i, "null"
        err = _list_shape_error(v, lengths)
        if err:
            return i, err
    return 0, "the lengths are right; the value type differs"


def _list_shape_error(v, lengths: tuple[int, ...]) -> str:
    if not isinstance(v, list):
        return f"{type(v).__name__} where a list is expected"
    if len(v) != lengths[0]:
        return f"a list of {len(v)} values; expected {lengths[0]}"
    if len(lengths) > 1:
        for k, inner in enumerate(v):
            if inner is None:
                return f"item {k} is null"
            err = _list_shape_error(inner, lengths[1:])
            if err:
                return f"item {k}: {err}"
    return ""


def check_parquet_schema(path: str | os.PathLike, schema: pa.Schema, columns: Sequence[str] | None = None) -> None:
    """:func:`check_schema_of` for a Parquet file; on a wrong type the offending column is read to name
    its first bad row."""
    try:
        check_schema_of(schema, path, columns)
    except ManifestError:
        import pyarrow.parquet as pq

        bad = [c for c in _wanted(columns) if c in schema.names and not schema.field(c).type.equals(_SPEC[c][0])]
        if bad:
            check_table(pq.read_table(path, columns=bad[:1]), path, columns=bad[:1])
        raise


def check_metadata(meta, where) -> dict:
    """``meta`` (a manifest's metadata, parsed JSON) if it has the shape every reader relies on: an object
    whose ``source_roots`` (when present) maps source names to folder paths (text); else a ManifestError
    naming ``where``."""
    if not isinstance(meta, dict):
        raise ManifestError(f"{where}: metadata is a JSON {type(meta).__name__}, not an object; not a manifest")
    check_format_version(meta.get("format_version"), where)
    roots = meta.get("source_roots", {})
    if not isinstance(roots, dict):
        raise ManifestError(f"{where}: metadata source_roots is a {type(roots).__name__}, not an object "
                            "{source: folder}")
    bad = [k for k, v in roots.items() if not isinstance(v, str) or not v]
    if bad:
        raise ManifestError(f"{where}: metadata source_roots[{bad[0]!r}] is {roots[bad[0]]!r}, not a folder path")
    return meta


def check_format_version(version, where) -> None:
    """A ManifestError naming ``where`` for a ``format_version`` that is not ``"X.Y"``, or newer than
    :data:`~.schema.FORMAT_VERSION`: its columns or values may mean what this version does not know, so it
    is neither read nor rewritten as this format. Absent (None) passes: ``validate`` names it."""
    if version is None:
        return
    got = version_tuple(version)
    if got is None:
        raise ManifestError(f"{where}: metadata format_version {version!r} is not a version like {FORMAT_VERSION!r}")
    if got > version_tuple(FORMAT_VERSION):
        raise ManifestError(f"{where}: manifest format {version} is newer than this landmark_unify reads (up to "
                            f"{FORMAT_VERSION}); upgrade landmark_unify to read it")


def check_dataset_doc(doc, where) -> dict:
    """``doc`` (a dataset's ``_manifest.json``) if its parts and row order are consistent: every part a
    relative path inside the dataset with a whole number of rows, every run of the order ``[part, offset,
    length]`` inside its part, the runs covering the stated rows; else a ManifestError naming ``where`` and
    the entry."""
    import posixpath

    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: not a JSON object")
    check_metadata(doc.get("metadata"), f"{where}: 'metadata'")
    parts, order = doc.get("parts"), doc.get("order")
    if not isinstance(parts, list) or not isinstance(order, list):
        raise ManifestError(f"{where}: 'parts' and 'order' must be lists")
    rows_of: dict[str, int] = {}
    for k, p in enumerate(parts):
        rel = p.get("path") if isinstance(p, dict) else None
        n = p.get("rows") if isinstance(p, dict) else None
        norm = posixpath.normpath(rel) if isinstance(rel, str) and rel else ""
        if not norm or norm.startswith(("/", "../")) or norm == ".." or not norm.endswith(".parquet"):
            raise ManifestError(f"{where}: parts[{k}] path {rel!r} is not a .parquet file inside the dataset")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ManifestError(f"{where}: parts[{k}] ({rel}) rows {n!r} is not a whole number >= 0")
        if not isinstance(p.get("unit", 0), int):
            raise ManifestError(f"{where}: parts[{k}] ({rel}) unit {p.get('unit')!r} is not a whole number")
        if rel in rows_of or norm in {posixpath.normpath(r) for r in rows_of}:
            raise ManifestError(f"{where}: parts[{k}] {rel!r} is listed twice; its rows would be read twice")
        rows_of[rel] = n
    total = 0
    spans: dict[str, list[tuple[int, int]]] = {}
    for k, run in enumerate(order):
        ok = isinstance(run, list) and len(run) == 3 and run[0] in rows_of \
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in run[1:]) \
            and run[1] + run[2] <= rows_of[run[0]]
        if not ok:
            raise ManifestError(f"{where}: order[{k}] {run!r} is not [listed part, offset, length] inside that part")
        spans.setdefault(run[0], []).append((run[1], run[1] + run[2]))
        total += run[2]
    for rel, n in rows_of.items():  # every row of every part in the order exactly once
        runs = sorted(spans.get(rel, []))
        covered = sum(b - a for a, b in runs)
        overlap = any(b0 > a1 for (_, b0), (a1, _) in zip(runs, runs[1:]))
        if overlap or covered != n:
            what = "twice" if overlap or covered > n else f"{covered} of its {n} rows"
            raise ManifestError(f"{where}: the order covers part {rel!r} {what}; each row must be read once")
    if doc.get("rows") != total:
        raise ManifestError(f"{where}: 'rows' is {doc.get('rows')!r} but the order covers {total} rows")
    return doc
