"""Validation of manifests against the spec (``docs/spec/manifest.md``)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ..core.eyes import EAR_FORMULAS, EYE_STATES
from ..core.layouts import CANONICAL, get_layout
from ..errors import ManifestError
from .convert import bbox_array, fixed_column, landmarks_array, valid_array
from .dataset import MANIFEST_FILE, PARTITION_COLUMNS, read_dataset, read_dataset_info
from .files import read_manifest_file, read_metadata, read_table
from .rules import row_problems
from .schema import (
    ADDED_COLUMNS,
    ANGLES,
    COLUMN_NAMES,
    COLUMNS,
    FIXED_COLUMNS,
    LABEL_SOURCES,
    POSE_SOURCES,
    SUPPORTED_VERSIONS,
    version_tuple,
)


def validate_table(table: pa.Table, meta: Mapping, where: str = "manifest") -> list[str]:
    """Every way ``table`` and ``meta`` break the spec, as messages (empty when valid)."""
    problems: list[str] = []
    version = meta.get("format_version")
    for name, typ, nullable, _ in COLUMNS:
        if name not in table.column_names:
            if name in ADDED_COLUMNS and _older(version, ADDED_COLUMNS[name]):
                continue  # written before the column existed: it reads as nulls
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
    if version not in SUPPORTED_VERSIONS:
        problems.append(f"{where}: format_version {version!r}; expected one of {list(SUPPORTED_VERSIONS)}")
    if list(meta.get("point_names", [])) != list(get_layout(CANONICAL).names):
        problems.append(f"{where}: metadata point_names differ from the canonical layout")
    if problems:
        return problems

    n = table.num_rows
    ids = table.column("sample_id").to_pandas()
    if ids.duplicated().any():
        problems.append(f"{where}: {int(ids.duplicated().sum())} duplicate sample_id values, e.g. {ids[ids.duplicated()].iloc[0]!r}")
    rows = row_problems(table)
    bad = np.flatnonzero(rows["landmarks"][0])
    if bad.size:
        problems.append(f"{where}: {bad.size} rows where landmarks are not finite exactly at valid points (first row {bad[0]})")
    lm = fixed_column(table, "landmarks")
    partial = np.flatnonzero((np.isnan(lm).any(-1) & ~np.isnan(lm).all(-1)).any(1))
    if partial.size:
        problems.append(f"{where}: {partial.size} rows with a point that has one NaN coordinate (first row {partial[0]})")
    for name in ("bbox", "image_size", "image_path"):
        bad = np.flatnonzero(rows[name][0])
        if bad.size:
            problems.append(f"{where}: {bad.size} rows where {rows[name][1]} (column {name!r}, first row {bad[0]})")
    _check_values(table, "bbox_source", ("given", "landmarks"), where, problems)
    _check_values(table, "pose_source", POSE_SOURCES, where, problems)
    _check_values(table, "eye_state", EYE_STATES, where, problems)
    if "ear_formula" in table.column_names:
        _check_values(table, "ear_formula", EAR_FORMULAS, where, problems)
        has_ear = (table.column("ear_left").is_valid().to_numpy(zero_copy_only=False)
                   | table.column("ear_right").is_valid().to_numpy(zero_copy_only=False))
        has_formula = table.column("ear_formula").is_valid().to_numpy(zero_copy_only=False)
        if (has_ear != has_formula).any():
            problems.append(f"{where}: column 'ear_formula' is null where an eye aspect ratio is known, or set where "
                            f"none is ({int((has_ear != has_formula).sum())} rows)")
    if "label_source" in table.column_names and "label_model" in table.column_names:
        _check_values(table, "label_source", LABEL_SOURCES, where, problems)
        machine = np.asarray(table.column("label_source").to_pylist(), dtype=object) == "machine"
        named = table.column("label_model").is_valid().to_numpy(zero_copy_only=False)
        if (machine != named).any():
            problems.append(f"{where}: column 'label_model' is null where label_source is 'machine', or set where "
                            f"it is not ({int((machine != named).sum())} rows)")
    pose_known = table.column("pose_source").is_valid().to_numpy(zero_copy_only=False)
    for a in ANGLES:
        vals = table.column(a).to_numpy(zero_copy_only=False).astype(np.float64)
        known = np.isfinite(vals)
        if (known != pose_known).any():
            problems.append(f"{where}: column {a!r} is null where pose_source is set, or the reverse ({int((known != pose_known).sum())} rows)")
        if rows[a][0].any():
            problems.append(f"{where}: column {a!r} has values beyond +-180 degrees")
    if n and rows["weight"][0].any():
        problems.append(f"{where}: column 'weight' has negative or non-finite values")
    roots = meta.get("source_roots", {})
    missing = sorted(set(table.column("source").unique().to_pylist()) - set(roots))
    if missing:
        problems.append(f"{where}: sources {missing} have no entry in metadata source_roots")
    return problems


def _older(version, than: str) -> bool:
    got = version_tuple(version)
    return got is not None and got < version_tuple(than)


def _check_values(table: pa.Table, column: str, allowed, where: str, problems: list[str]) -> None:
    seen = set(table.column(column).drop_null().unique().to_pylist())
    bad = sorted(seen - set(allowed))
    if bad:
        problems.append(f"{where}: column {column!r} has values {bad}; allowed {list(allowed)}")



def validate_file(path: str | os.PathLike) -> list[str]:
    """Check a manifest file against the spec; returns the problems found (empty list when valid)."""
    try:
        meta = read_metadata(path)
        table = read_table(path, check=False)
    except ManifestError as exc:
        return [str(exc)]
    return validate_table(table, meta, where=str(path))


def validate_dataset(path: str | os.PathLike) -> list[str]:
    """Problems of a partitioned manifest (empty when valid): completeness, the part list against the
    files on disk, each part against the spec and hive keys, and sample_id unique across parts."""
    path = Path(path)
    try:
        doc = read_dataset_info(path, check_parts=False)  # the parts: checked one by one below
    except ManifestError as exc:
        return [str(exc)]
    problems: list[str] = []
    listed = {p["path"]: p for p in doc["parts"]}
    on_disk = {str(p.relative_to(path)) for p in path.rglob("*.parquet")}
    for extra in sorted(on_disk - set(listed)):
        problems.append(f"{path}: file {extra} is not listed in {MANIFEST_FILE}")
    ids = []
    for rel, part in listed.items():
        if rel not in on_disk:
            problems.append(f"{path}: listed part {rel} is missing")
            continue
        try:
            meta = read_metadata(path / rel)
            table = read_table(path / rel, check=False)
        except ManifestError as exc:
            problems.append(str(exc))
            continue
        problems += validate_table(table, meta, where=str(path / rel))
        if table.num_rows != part["rows"]:
            problems.append(f"{path / rel}: {table.num_rows} rows; {MANIFEST_FILE} says {part['rows']}")
        for col in PARTITION_COLUMNS:
            vals = set(table.column(col).unique().to_pylist())
            if vals and vals != {part[col]}:
                problems.append(f"{path / rel}: column {col!r} holds {sorted(vals)}; its directory says {part[col]!r}")
        ids.extend(table.column("sample_id").to_pylist())
    if sum(length for _, _, length in doc["order"]) != doc["rows"]:
        problems.append(f"{path}: row order covers a different number of rows than {doc['rows']}")
    if len(ids) != len(set(ids)):
        problems.append(f"{path}: {len(ids) - len(set(ids))} duplicate sample_id values across parts")
    return problems


def validate(path: str | os.PathLike) -> list[str]:
    """Problems of a manifest file or a partitioned dataset against the spec (empty when valid)."""
    return validate_dataset(path) if Path(path).is_dir() else validate_file(path)


def _read(path: str | os.PathLike) -> pd.DataFrame:
    return read_dataset(path) if Path(path).is_dir() else read_manifest_file(path)


def compare_manifests(a: str | os.PathLike, b: str | os.PathLike, atol: float = 0.0) -> list[str]:
    """Differences in rows and values between two manifests (files or datasets), in row order; NaN equals
    NaN; float columns (angles, EAR, weight) may differ by ``atol`` (default: exactly equal). Empty when
    they hold the same rows with the same values (metadata is not compared)."""
    da, db = _read(a), _read(b)
    if len(da) != len(db):
        return [f"{a} has {len(da)} rows, {b} has {len(db)}"]
    out = []
    arrays = {"landmarks": landmarks_array, "valid": valid_array, "bbox": bbox_array}
    for name, fn in ((n, arrays[n]) for n in FIXED_COLUMNS):
        x, y = fn(da), fn(db)
        same = (x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else x == y
        rows = np.flatnonzero(~same.reshape(len(da), -1).all(1))
        if rows.size:
            out.append(f"column {name!r} differs in {rows.size} rows (first row {rows[0]})")
    for name in COLUMN_NAMES:
        if name in FIXED_COLUMNS:
            continue
        x, y = da[name].reset_index(drop=True), db[name].reset_index(drop=True)
        both_null = x.isna().to_numpy() & y.isna().to_numpy()
        if atol and pd.api.types.is_float_dtype(x.dtype) and pd.api.types.is_float_dtype(y.dtype):
            eq = (np.abs(x.to_numpy(np.float64) - y.to_numpy(np.float64)) <= atol) | both_null
        else:
            eq = (x == y).fillna(False).to_numpy(dtype=bool) | both_null
        rows = np.flatnonzero(~eq)
        if rows.size:
            out.append(f"column {name!r} differs in {rows.size} rows (first row {rows[0]})")
    return out
