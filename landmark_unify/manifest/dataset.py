"""Partitioned manifests: a dataset directory in hive layout, written by many workers, read as one.

::

    OUT/
      _manifest.json                       parts, row counts, row order, the manifest metadata
      _SUCCESS                             written last: the dataset is complete
      source=wflw/split=test/part-00000.parquet
      source=lapa/split=test/part-00002.parquet

Each part is itself a valid manifest file (full schema, ``source`` and ``split`` kept in the file). Parts
are written into a hidden staging directory beside ``OUT`` (:class:`StagedDataset`), renamed onto ``OUT``
only when every unit has succeeded, with ``_SUCCESS`` in it: a failed or killed run leaves nothing at
``OUT``. Readers restore the row order of the single-file form from ``_manifest.json``.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ManifestError
from ..io import (
    exchange_paths,
    folder_published,
    fsync_dir,
    owned_name,
    remove_leftovers,
    restore_replaced,
    write_text_durable,
)
from .checks import check_dataset_doc, check_format_version, check_parquet_schema, check_table
from .convert import dataframe_from_table
from .files import ROW_GROUP_SIZE, parquet_read, read_metadata, read_table, write_manifest, write_manifest_stream
from .identity import id_keys
from .schema import METADATA_KEY, SCHEMA

DATASET_FORMAT = "landmark_unify.partitioned"
DATASET_VERSION = 1
MANIFEST_FILE = "_manifest.json"
SUCCESS_FILE = "_SUCCESS"
PARTITION_COLUMNS = ("source", "split")
#: Default faces per unit for commands that read an existing manifest.
DEFAULT_ROWS_PER_PARTITION = ROW_GROUP_SIZE  # a slice is then one row group of the files this library writes


def is_dataset(path: str | os.PathLike) -> bool:
    """True for a dataset directory (complete or not), False for a file path."""
    return Path(path).is_dir()


# --- writing parts (worker side) ---------------------------------------------------------------------------

def partition_dir(source: str, split: str) -> str:
    """Hive directory of one (source, split): ``source=<quoted>/split=<quoted>`` (URL quoting, as pyarrow's
    and DuckDB's hive readers expect)."""
    return f"source={quote(str(source), safe='')}/split={quote(str(split), safe='')}"


def part_metadata(metadata: Mapping, depth: int = 3) -> dict:
    """Metadata for a part file ``depth`` folders below the dataset's parent: relative source roots are
    rewritten so that each part read alone resolves images like the dataset does."""
    meta = json.loads(json.dumps(dict(metadata)))
    roots = meta.get("source_roots") or {}
    meta["source_roots"] = {
        k: v if Path(v).is_absolute() else str(Path(*([".."] * depth)) / v) for k, v in roots.items()
    }
    return meta


def write_parts(table: pa.Table, staging: str | os.PathLike, index: int, metadata: Mapping) -> tuple[list[dict], list[list]]:
    """Write one unit's table as parts of the dataset being staged at ``staging``.

    One part per (source, split) present, at ``source=S/split=P/part-{index:05d}.parquet``, each written
    atomically with :func:`manifest.write_manifest`. Returns the parts (path relative to the dataset,
    rows, source, split) and the *runs*: ``[part path, offset, length]`` in the table's row order, which
    let readers restore that order exactly.
    """
    staging = Path(staging)
    if not staging.is_dir():
        raise ManifestError(f"staging directory {staging} is gone (the run was aborted)")
    meta = part_metadata(metadata)
    n = table.num_rows
    if n == 0:
        return [], []
    sources = table.column("source").to_numpy(zero_copy_only=False)
    splits = table.column("split").to_numpy(zero_copy_only=False)
    # runs of consecutive rows with the same (source, split), in table order
    change = np.flatnonzero((sources[1:] != sources[:-1]) | (splits[1:] != splits[:-1])) + 1
    bounds = [0, *change.tolist(), n]
    order: dict[tuple[str, str], list[int]] = {}
    run_keys = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        key = (str(sources[a]), str(splits[a]))
        order.setdefault(key, []).append((a, b))
        run_keys.append((key, a, b))
    parts, offsets = [], {}
    for key, spans in order.items():
        rel = f"{partition_dir(*key)}/part-{index:05d}.parquet"
        if len(spans) == 1:
            sub = table.slice(spans[0][0], spans[0][1] - spans[0][0])
        else:
            sub = pa.concat_tables([table.slice(a, b - a) for a, b in spans])
        folder = staging
        for piece in Path(rel).parent.parts:  # never re-creates a staging directory removed by an abort
            folder = folder / piece
            folder.mkdir(exist_ok=True)
        # no make_parents: a late task of an aborted run fails here instead of re-creating staging
        write_manifest(sub, staging / rel, meta, make_parents=False)
        parts.append({"path": rel, "rows": sub.num_rows, "source": key[0], "split": key[1], "unit": index})
        offsets[key] = 0
    runs = []
    for key, a, b in run_keys:
        rel = f"{partition_dir(*key)}/part-{index:05d}.parquet"
        runs.append([rel, offsets[key], b - a])
        offsets[key] += b - a
    return parts, runs


# --- the staged dataset (driver side) ----------------------------------------------------------------------

class StagedDataset:
    """A dataset directory being written: parts go to a hidden staging directory beside ``output``;
    :meth:`finalize` writes ``_manifest.json``, :meth:`publish` writes ``_SUCCESS`` and renames it onto
    ``output``; :meth:`abort` removes it."""

    def __init__(self, output: str | os.PathLike, overwrite: bool = True, for_file: bool = False) -> None:
        self.output = Path(output).absolute()
        if not for_file:  # a run killed between the two renames of a publish: its complete old dataset back
            restore_replaced(self.output, complete=lambda p: (p / SUCCESS_FILE).is_file())
            if self.output.exists() and not overwrite:
                raise ManifestError(f"{self.output} exists (pass overwrite=True to replace it)")
            if self.output.exists() and not self.output.is_dir():
                raise ManifestError(f"{self.output} exists and is not a dataset directory")
            if self.output.is_dir() and any(self.output.iterdir()) and not (self.output / MANIFEST_FILE).exists():
                raise ManifestError(f"{self.output} is a non-empty directory that is not a dataset; refusing to "
                                    "replace it")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.output)  # of earlier runs on this output that were killed
        self.staging = owned_name(self.output, "staging")
        self.staging.mkdir()
        self.doc: dict | None = None

    def finalize(self, units: Sequence[tuple[list[dict], list[list]]], metadata: Mapping,
                 extra: Mapping | None = None) -> dict:
        """Check the parts against what the units reported (``(parts, runs)`` per unit, in unit order),
        drop strays, write ``_manifest.json``."""
        parts = [p for unit_parts, _ in units for p in unit_parts]
        runs = [run for _, unit_runs in units for run in unit_runs]
        listed = {p["path"] for p in parts}
        on_disk = {str(p.relative_to(self.staging)) for p in self.staging.rglob("*.parquet")}
        missing = sorted(listed - on_disk)
        if missing:
            raise ManifestError(f"parts reported written are missing from {self.staging}: {missing[:5]}")
        for stray in sorted(on_disk - listed):  # e.g. left by a task whose worker was killed mid-write
            (self.staging / stray).unlink()
        for tmp in self.staging.rglob(".*.tmp"):
            tmp.unlink()
        doc = {
            "format": DATASET_FORMAT,
            "version": DATASET_VERSION,
            "partition_columns": list(PARTITION_COLUMNS),
            "rows": sum(p["rows"] for p in parts),
            "units": len(units),
            "metadata": dict(metadata),
            "parts": parts,
            "order": runs,
        }
        if extra:
            doc.update(extra)
        write_text_durable(self.staging / MANIFEST_FILE, json.dumps(doc, sort_keys=True, indent=1) + "\n")
        self.doc = doc
        return doc

    def publish(self) -> Path:
        """Write ``_SUCCESS`` and rename the staging directory onto the output (replacing an old dataset)."""
        if self.doc is None:
            raise ManifestError("finalize() must run before publish()")
        write_text_durable(self.staging / SUCCESS_FILE,
                    json.dumps({"parts": len(self.doc["parts"]), "rows": self.doc["rows"]}) + "\n")
        fsync_dir(self.staging)
        old = None
        if self.output.exists():
            old = owned_name(self.output, "old")
            if exchange_paths(self.staging, self.output):  # one atomic step: never a moment without a dataset
                os.rename(self.staging, old)
            else:  # no renameat2: two renames; a kill between them is repaired by the next run (restore_replaced)
                os.rename(self.output, old)
                os.rename(self.staging, self.output)
        else:
            os.rename(self.staging, self.output)
        fsync_dir(self.output.parent)
        # the running command keeps the old dataset until it ends (rolled back if it fails after this)
        if not folder_published(self.output, old) and old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.output

    def abort(self) -> None:
        """Remove the staging directory: renamed away first (atomic), so that a task still running on a
        worker cannot write into it any more, then deleted."""
        gone = owned_name(self.output, "aborted")
        try:
            os.rename(self.staging, gone)
        except FileNotFoundError:
            return
        shutil.rmtree(gone, ignore_errors=True)


# --- reading datasets ----------------------------------------------------------------------------------------

def read_dataset_info(path: str | os.PathLike, *, check_parts: bool = True) -> dict:
    """The ``_manifest.json`` of a complete dataset: the one gate every read of a dataset goes through.
    Raises :class:`ManifestError` when the dataset is incomplete (no ``_SUCCESS``), not a dataset, of a
    newer dataset version or manifest format than this one reads, or inconsistent (a part listed twice, rows
    ordered twice or never: :func:`~.checks.check_dataset_doc`). ``check_parts``: also each part's footer
    (its file exists, is Parquet of a format this version reads, and holds the rows the list says: a part
    replaced by a bigger or smaller file is refused); ``validate`` lists those problems one by one instead."""
    path = Path(path)
    if not path.is_dir():
        raise ManifestError(f"{path}: not a dataset directory")
    if not (path / SUCCESS_FILE).exists():
        raise ManifestError(f"{path}: no {SUCCESS_FILE} marker; the dataset is incomplete (its run failed or is running)")
    try:
        doc = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path / MANIFEST_FILE}: cannot read: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != DATASET_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ManifestError(f"{path / MANIFEST_FILE}: format {found!r}; expected {DATASET_FORMAT!r}")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ManifestError(f"{path / MANIFEST_FILE}: version {version!r} is not a dataset version (a whole number)")
    if version > DATASET_VERSION:
        raise ManifestError(f"{path / MANIFEST_FILE}: dataset version {version} is newer than this landmark_unify "
                            f"reads (up to {DATASET_VERSION}); upgrade landmark_unify to read it")
    doc = check_dataset_doc(doc, path / MANIFEST_FILE)
    if check_parts:
        for part in doc["parts"]:
            _check_part(path / part["path"], part["rows"])
        _check_unique_ids(path, doc)
    return doc


def _check_unique_ids(path: Path, doc: Mapping) -> None:
    """A ManifestError when a sample_id appears twice across the parts (a part copied under another name
    and listed, rows of one face written twice): reads only the sample_id column."""
    keys, owner = [], []
    for k, part in enumerate(doc["parts"]):
        try:
            ids = pq.read_table(path / part["path"], columns=["sample_id"])
        except (OSError, pa.ArrowInvalid, KeyError):
            return  # a part without the column: the schema check of the read names it
        keys.append(id_keys(ids))
        owner.append(np.full(ids.num_rows, k, np.int64))
    if not keys:
        return
    allk = np.concatenate(keys)
    order = np.argsort(allk, kind="stable")
    same = np.flatnonzero(allk[order][1:] == allk[order][:-1])
    if same.size:
        a, b = order[same[0]], order[same[0] + 1]
        parts = doc["parts"]
        pa_, pb = parts[int(np.concatenate(owner)[a])]["path"], parts[int(np.concatenate(owner)[b])]["path"]
        where = f"in {pa_} and {pb}" if pa_ != pb else f"twice in {pa_}"
        raise ManifestError(f"{path}: {same.size} sample_id values appear more than once ({where}); a part is "
                            f"repeated or its rows were written twice. Run `landmark_unify validate {path}`")


def _check_part(path: Path, rows: int) -> None:
    """A ManifestError unless the part at ``path`` is a Parquet file of a readable format with ``rows`` rows
    (read from its footer only)."""
    with parquet_read(path, missing="listed part not found; the dataset is damaged"):
        md = pq.read_metadata(path)
    if md.num_rows != rows:
        raise ManifestError(f"{path}: {md.num_rows} rows; {MANIFEST_FILE} says {rows} (the part was replaced or "
                            "changed after the dataset was written)")
    raw = (md.metadata or {}).get(METADATA_KEY)
    if raw is not None:
        try:
            meta = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            meta = None
        if isinstance(meta, dict):
            check_format_version(meta.get("format_version"), path)


def iter_segments(path: str | os.PathLike, rows_per_batch: int | None = None) -> Iterator[pa.Table]:
    """The rows of a complete dataset in its row order (the local path's order), as tables of at most
    ``rows_per_batch`` rows (one run each when None). Holds one part in memory at a time."""
    return iter_doc_segments(Path(path), read_dataset_info(path), rows_per_batch)


def iter_doc_segments(root: Path, doc: Mapping, rows_per_batch: int | None = None) -> Iterator[pa.Table]:
    """Rows in order, one unit at a time: a unit whose rows all sit in one part is a slice of it, one that
    was split over several (source, split) parts is reassembled from slices of its parts."""
    unit_of = {p["path"]: p["unit"] for p in doc["parts"]}
    for _, group in itertools.groupby(doc["order"], key=lambda r: unit_of[r[0]]):
        group = list(group)
        rels = list(dict.fromkeys(r[0] for r in group))
        if len(group) == 1:
            rel, off, length = group[0]
            table = read_table(root / rel).slice(off, length)
        else:
            tables = {r: read_table(root / r) for r in rels}
            table = pa.concat_tables([tables[r].slice(off, length) for r, off, length in group])
        step = rows_per_batch or max(table.num_rows, 1)
        for a in range(0, table.num_rows, step):
            yield table.slice(a, step)


def read_dataset_table(path: str | os.PathLike) -> pa.Table:
    """All rows of a complete dataset as one table, in its row order, with the dataset's metadata."""
    return _dataset_table(Path(path), read_dataset_info(path))


def _dataset_table(path: Path, doc: Mapping) -> pa.Table:
    tables = list(iter_doc_segments(path, doc))
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    meta = json.dumps(doc["metadata"], sort_keys=True).encode("utf-8")
    return table.replace_schema_metadata({METADATA_KEY: meta})


def read_dataset(path: str | os.PathLike) -> pd.DataFrame:
    """Read a partitioned manifest like :func:`manifest.read_manifest` reads a file: same columns, same
    row order as the single-file form, ``df.attrs["manifest"]`` the metadata and ``df.attrs["path"]`` the
    dataset directory (relative source roots resolve against its parent folder)."""
    doc = read_dataset_info(path)
    df = dataframe_from_table(_dataset_table(Path(path), doc))
    df.attrs["manifest"] = doc["metadata"]
    df.attrs["path"] = str(Path(path).resolve())
    return df


# --- single-file form ------------------------------------------------------------------------------------------

def dataset_to_file(dataset: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write a complete dataset as one manifest file (its row order and metadata), streaming."""
    doc = read_dataset_info(dataset)
    return write_manifest_stream(iter_segments(dataset), path, doc["metadata"])


def read_columns(path: str | os.PathLike, columns: Sequence[str]) -> pa.Table:
    """Some columns of a manifest file or complete dataset (any row order), schema-checked."""
    path = Path(path)
    if not path.is_dir():
        return check_table(_read_parquet(path, columns), path, columns=columns)
    doc = read_dataset_info(path)
    tables = [check_table(_read_parquet(path / p["path"], columns), path / p["path"], columns=columns)
              for p in doc["parts"]]
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table().select(list(columns))


def _read_parquet(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """``pq.read_table`` with its failures (a missing file or column, not Parquet) as ManifestError."""
    with parquet_read(path):
        if columns is not None:
            schema = pq.read_schema(path)
            check_parquet_schema(path, schema, columns)
            columns = [c for c in columns if c in schema.names]  # a column of a later format: added by the check
        return pq.read_table(path, columns=list(columns) if columns is not None else None)


# --- commands on an existing manifest: slices of rows ------------------------------------------------------------

@dataclass(frozen=True)
class RowSlice:
    """Rows ``offset .. offset+length`` of one manifest file (a single file or a dataset part)."""

    path: str
    offset: int
    length: int

    def describe(self) -> str:
        return f"{self.path} rows {self.offset}-{self.offset + self.length}"


def plan_slices(input: str | os.PathLike, rows_per_partition: int = DEFAULT_ROWS_PER_PARTITION
                ) -> tuple[list[RowSlice], dict]:
    """Split a manifest (file or complete dataset) into row slices of at most ``rows_per_partition``
    rows, in its row order. Returns the slices and the manifest metadata."""
    if rows_per_partition < 1:
        raise ValueError(f"rows_per_partition must be >= 1; got {rows_per_partition}")
    path = Path(input)
    if path.is_dir():
        doc = read_dataset_info(path)
        runs = [(str((path / rel).resolve()), off, length) for rel, off, length in doc["order"]]
        meta = dict(doc["metadata"])
    else:
        meta = read_metadata(path)
        with parquet_read(path):
            pfile = pq.ParquetFile(path)
            n = pfile.metadata.num_rows
        check_parquet_schema(path, pfile.schema_arrow)  # a wrong column is named before any work starts
        runs = [(str(path.resolve()), 0, n)]
    slices = []
    for p, off, length in runs:
        for a in range(off, off + length, rows_per_partition):
            slices.append(RowSlice(p, a, min(rows_per_partition, off + length - a)))
    return slices, meta


def read_slice(s: RowSlice, columns: Sequence[str] | None = None) -> pa.Table:
    """The rows of a slice, reading only the row groups that hold them; schema-checked (:mod:`.checks`,
    errors name the file and the row in it)."""
    with parquet_read(s.path):
        pf = pq.ParquetFile(s.path)
        check_parquet_schema(s.path, pf.schema_arrow, columns)
    md = pf.metadata
    groups, first, start = [], None, 0
    for g in range(md.num_row_groups):
        n = md.row_group(g).num_rows
        if start + n > s.offset and start < s.offset + s.length:
            groups.append(g)
            if first is None:
                first = start
        start += n
    if not groups:
        return SCHEMA.empty_table() if columns is None else SCHEMA.empty_table().select(list(columns))
    present = [c for c in columns if c in pf.schema_arrow.names] if columns else None  # see upgrade_table
    table = pf.read_row_groups(groups, columns=present)
    table = table.slice(s.offset - first, s.length).replace_schema_metadata(None)
    return check_table(table, s.path, offset=s.offset, columns=columns)
