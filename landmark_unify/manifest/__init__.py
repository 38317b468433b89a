"""Manifests: the schema, single files, partitioned datasets and validation.

A manifest is either one Parquet file or a partitioned dataset directory (``docs/spec/manifest.md``);
every reader here takes both forms: :func:`read` (alias :func:`read_manifest`), :func:`read_table`,
:func:`read_metadata`, :func:`validate`.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

from . import files as _files
from .convert import (
    bbox_array,
    dataframe_from_table,
    fixed_array,
    fixed_column,
    fixed_list,
    fixed_to_numpy,
    landmarks_array,
    table_from_columns,
    table_from_dataframe,
    take_rows,
    valid_array,
)
from .dataset import (
    DEFAULT_ROWS_PER_PARTITION,
    MANIFEST_FILE,
    PARTITION_COLUMNS,
    SUCCESS_FILE,
    RowSlice,
    StagedDataset,
    dataset_to_file,
    is_dataset,
    iter_segments,
    plan_slices,
    read_columns,
    read_dataset,
    read_dataset_info,
    read_dataset_table,
    read_slice,
    write_parts,
)
from .files import (
    ROW_GROUP_SIZE,
    WRITE_OPTIONS,
    ManifestWriter,
    duplicates_path_for,
    read_manifest_file,
    skipped_path_for,
    write_manifest,
    write_manifest_stream,
)
from .identity import hash_key, id_keys, make_sample_id, sample_id_array, sample_ids
from .paths import derived_metadata, image_paths, rebased_roots, source_roots
from .rules import box_rule, face_rule, row_problems
from .schema import (
    ANGLES,
    ATTRIBUTE_COLUMNS,
    ATTRIBUTES,
    COLUMN_NAMES,
    COLUMNS,
    FIXED_COLUMNS,
    FORMAT_VERSION,
    LABEL_SOURCES,
    METADATA_KEY,
    NUM_POINTS,
    POSE_SOURCES,
    SCHEMA,
    check_schema,
    make_metadata,
    schema_metadata,
)
from .validate import (
    compare_manifests,
    validate,
    validate_dataset,
    validate_file,
    validate_table,
)

validate_manifest = validate


def read(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest file or a partitioned dataset into a DataFrame (same columns and row order for
    both forms). ``landmarks`` cells are ``(98, 2)`` float32 arrays, ``valid`` ``(98,)`` bool, ``bbox``
    ``(4,)`` float32; use :func:`landmarks_array` for the stacked ``(N, 98, 2)`` array.
    ``df.attrs["manifest"]`` holds the metadata and ``df.attrs["path"]`` the file or directory."""
    return read_dataset(path) if Path(path).is_dir() else read_manifest_file(path)


read_manifest = read


def read_table(path: str | os.PathLike) -> pa.Table:
    """All rows of a manifest file or dataset as one Arrow table, in row order, with its metadata."""
    return read_dataset_table(path) if Path(path).is_dir() else _files.read_table(path)


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a manifest file or dataset."""
    return dict(read_dataset_info(path)["metadata"]) if Path(path).is_dir() else _files.read_metadata(path)


__all__ = [
    "ANGLES",
    "ATTRIBUTES",
    "ATTRIBUTE_COLUMNS",
    "COLUMNS",
    "COLUMN_NAMES",
    "DEFAULT_ROWS_PER_PARTITION",
    "FIXED_COLUMNS",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "METADATA_KEY",
    "ManifestWriter",
    "NUM_POINTS",
    "PARTITION_COLUMNS",
    "LABEL_SOURCES",
    "POSE_SOURCES",
    "ROW_GROUP_SIZE",
    "RowSlice",
    "SCHEMA",
    "SUCCESS_FILE",
    "StagedDataset",
    "WRITE_OPTIONS",
    "bbox_array",
    "box_rule",
    "check_schema",
    "compare_manifests",
    "dataframe_from_table",
    "dataset_to_file",
    "derived_metadata",
    "duplicates_path_for",
    "face_rule",
    "fixed_array",
    "fixed_column",
    "fixed_list",
    "fixed_to_numpy",
    "hash_key",
    "id_keys",
    "image_paths",
    "is_dataset",
    "iter_segments",
    "landmarks_array",
    "make_metadata",
    "make_sample_id",
    "plan_slices",
    "read",
    "read_columns",
    "read_dataset",
    "read_dataset_info",
    "read_dataset_table",
    "read_manifest",
    "read_manifest_file",
    "read_metadata",
    "read_slice",
    "read_table",
    "row_problems",
    "rebased_roots",
    "sample_id_array",
    "sample_ids",
    "schema_metadata",
    "skipped_path_for",
    "source_roots",
    "table_from_columns",
    "table_from_dataframe",
    "take_rows",
    "valid_array",
    "validate",
    "validate_dataset",
    "validate_file",
    "validate_manifest",
    "validate_table",
    "write_manifest",
    "write_manifest_stream",
    "write_parts",
]
