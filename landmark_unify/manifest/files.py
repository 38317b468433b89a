"""Single-file manifests: atomic, deterministic Parquet writes and checked reads."""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ManifestError
from ..io import atomic_path
from .checks import check_metadata, check_table
from .convert import dataframe_from_table, table_from_columns, table_from_dataframe
from .schema import METADATA_KEY, SCHEMA, check_schema, schema_metadata

#: Parquet writer settings of every manifest file (with row groups of :data:`ROW_GROUP_SIZE` rows).
WRITE_OPTIONS = {"compression": "zstd", "write_statistics": True}
ROW_GROUP_SIZE = 65536

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
    # one chunk per column: the pages (so the bytes) do not depend on how the rows were assembled
    table = table.combine_chunks().replace_schema_metadata(schema_metadata(metadata))
    path = Path(path)
    with atomic_path(path, make_parents=make_parents) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE, **WRITE_OPTIONS)
    return path


# --- reading ------------------------------------------------------------------------------------------

@contextlib.contextmanager
def parquet_read(path: str | os.PathLike, missing: str = "file not found"):
    """The one translation of a Parquet read's failures (footer, schema, row groups) into a ManifestError
    naming the file: ``missing`` when it does not exist, "cannot read as Parquet" with Arrow's reason when
    it is not Parquet or is damaged. A ManifestError raised inside (a schema check) passes unchanged."""
    try:
        yield
    except FileNotFoundError:
        raise ManifestError(f"{path}: {missing}") from None
    except (OSError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ManifestError(f"{path}: cannot read as Parquet: {exc}") from None


def read_metadata(path: str | os.PathLike) -> dict:
    with parquet_read(path):
        schema = pq.read_schema(path)
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ManifestError(f"{path}: no {METADATA_KEY.decode()!r} metadata; not a manifest")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: metadata is not valid JSON: {exc}") from None
    return check_metadata(meta, path)


def read_table(path: str | os.PathLike, *, check: bool = True) -> pa.Table:
    """All rows of a manifest file. ``check``: the schema check of every read (:mod:`.checks`: a missing
    column, a wrong type or list length, a null in a required column is a ManifestError naming the file,
    column and first bad row); ``validate`` reads with ``check=False`` to list every problem instead."""
    with parquet_read(path):
        table = pq.read_table(path)
    return check_table(table, path) if check else table



def read_manifest_file(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest into a DataFrame.

    ``landmarks`` cells are ``(98, 2)`` float32 arrays, ``valid`` cells ``(98,)`` bool, ``bbox`` cells
    ``(4,)`` float32 (views into one contiguous block; use :func:`landmarks_array` for the stacked
    ``(N, 98, 2)`` array). Attribute flags are pandas nullable booleans. ``df.attrs["manifest"]`` holds
    the metadata dict and ``df.attrs["path"]`` the file.
    """
    meta = read_metadata(path)
    table = read_table(path)  # checked: columns, types, list lengths, nulls
    df = dataframe_from_table(table)
    df.attrs["manifest"] = meta
    df.attrs["path"] = str(Path(path).resolve())
    return df



# --- streaming ---------------------------------------------------------------------------------------------

class ManifestWriter:
    """Write a manifest file from tables that arrive one after another, in constant memory.

    Rows are written in row groups of exactly :data:`ROW_GROUP_SIZE` rows with the settings of
    :func:`write_manifest`, so the file has the same bytes as ``write_manifest`` of all the rows at once.
    Row groups are encoded and written on a background thread (pyarrow releases the GIL there) while the
    caller prepares the next table; at most two row groups wait for it.

    The metadata of a Parquet file is fixed when its writer opens, but some metadata (the number of
    skipped records, fit counts) is known only at the end. So the file is opened as late as possible:
    when the first row group is complete, with ``metadata()`` at that moment. If :meth:`close` is given
    different metadata, the row groups are copied into a file with the final metadata (one more pass,
    only for outputs of more than one row group whose metadata changed). The output appears atomically
    at ``path`` on :meth:`close`; :meth:`abort` (or an exception inside ``with``) leaves nothing behind.
    """

    def __init__(self, path: str | os.PathLike, metadata, *, make_parents: bool = True) -> None:
        import concurrent.futures

        self.path = Path(path)
        self._metadata = metadata if callable(metadata) else (lambda: metadata)
        self._atomic = atomic_path(self.path, make_parents=make_parents)
        self._tmp = self._atomic.__enter__()
        self._writer: pq.ParquetWriter | None = None
        self._opened_with: dict | None = None
        self._buf: list[pa.Table] = []
        self._held = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="manifest-writer")
        self._pending: list = []
        self.rows = 0
        self._closed = False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            if not self._closed:
                self.close()
        else:
            self.abort()

    def write(self, table: pa.Table) -> None:
        """Append the rows of ``table`` (manifest schema)."""
        check_schema(table)
        if table.num_rows == 0:
            return
        self._buf.append(table.replace_schema_metadata(None))
        self._held += table.num_rows
        self.rows += table.num_rows
        while self._held >= ROW_GROUP_SIZE:
            merged = pa.concat_tables(self._buf)
            self._submit(merged.slice(0, ROW_GROUP_SIZE))
            rest = merged.slice(ROW_GROUP_SIZE)
            self._buf, self._held = [rest], rest.num_rows

    def _open(self, metadata: Mapping) -> None:
        self._opened_with = dict(metadata)
        schema = SCHEMA.with_metadata(schema_metadata(metadata))
        self._writer = pq.ParquetWriter(self._tmp, schema, **WRITE_OPTIONS)

    def _submit(self, group: pa.Table) -> None:
        if self._writer is None:
            self._open(self._metadata())
        while len(self._pending) >= 2:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(self._write_group, group))

    def _write_group(self, group: pa.Table) -> None:
        # one chunk per column, as write_manifest writes: the same pages however the rows arrived
        group = group.combine_chunks().replace_schema_metadata(self._writer.schema.metadata)
        self._writer.write_table(group, row_group_size=ROW_GROUP_SIZE)

    def close(self, metadata: Mapping | None = None) -> Path:
        """Write what is held and move the file into place. ``metadata``: the final metadata (default:
        ``metadata()`` now)."""
        final = dict(self._metadata() if metadata is None else metadata)
        try:
            for fut in self._pending:
                fut.result()
            self._pending = []
            if self._writer is None:
                self._open(final)
            rest = pa.concat_tables(self._buf) if self._buf else SCHEMA.empty_table()
            if rest.num_rows or self.rows == 0:
                self._write_group(rest)
            self._buf, self._held = [], 0
            self._writer.close()
            if schema_metadata(self._opened_with) != schema_metadata(final):
                self._rewrite(final)
        except BaseException:
            self.abort()
            raise
        self._pool.shutdown()
        self._atomic.__exit__(None, None, None)
        self._closed = True
        return self.path

    def _rewrite(self, metadata: Mapping) -> None:
        """Give the file written so far the final ``metadata``: its data pages stay as they are and only the
        footer is replaced (the footer a writer opened with ``metadata`` gives the same rows: the result has
        the bytes of a file written with ``metadata`` from the start). Where that cannot be done the row
        groups are copied into a new file instead."""
        try:
            _replace_footer(self._tmp, metadata, self.rows)
            return
        except (OSError, ValueError, pa.ArrowException):
            pass
        src = pq.ParquetFile(self._tmp)
        schema = SCHEMA.with_metadata(schema_metadata(metadata))
        copy = f"{self._tmp}.final"
        try:
            with pq.ParquetWriter(copy, schema, **WRITE_OPTIONS) as writer:
                for g in range(src.num_row_groups):
                    group = src.read_row_group(g).replace_schema_metadata(schema.metadata)
                    writer.write_table(group, row_group_size=ROW_GROUP_SIZE)
            os.replace(copy, self._tmp)
        finally:
            Path(copy).unlink(missing_ok=True)

    def abort(self) -> None:
        """Stop and remove the partial file; the output path is left as it was."""
        if self._closed:
            return
        self._closed = True
        for fut in self._pending:
            fut.cancel()
        self._pool.shutdown(wait=True)
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)


def _replace_footer(path: str | os.PathLike, metadata: Mapping, rows: int) -> None:
    """Replace the footer of the manifest file ``path`` by one with ``metadata`` (same row groups)."""
    import io
    import struct

    schema = SCHEMA.with_metadata(schema_metadata(metadata))
    empty = io.BytesIO()
    with pq.ParquetWriter(empty, schema, **WRITE_OPTIONS):
        pass
    footer = pq.ParquetFile(io.BytesIO(empty.getvalue())).metadata
    footer.append_row_groups(pq.ParquetFile(path).metadata)
    new = io.BytesIO()
    footer.write_metadata_file(new)
    new = new.getvalue()
    if new[:4] != b"PAR1" or new[-4:] != b"PAR1":
        raise ValueError("unexpected footer layout")
    with open(path, "r+b") as f:
        f.seek(-8, os.SEEK_END)
        length, magic = struct.unpack("<i4s", f.read(8))
        if magic != b"PAR1":
            raise ValueError(f"{path}: not a Parquet file")
        body = f.seek(0, os.SEEK_END) - 8 - length
        f.truncate(body)
        f.seek(body)
        f.write(new[4:])  # the footer file's own leading magic is the data file's, already there
    check = pq.ParquetFile(path)
    if check.metadata.num_rows != rows or check.schema_arrow.metadata != schema.metadata:
        raise ValueError(f"{path}: the new footer does not describe the rows written")


def write_manifest_stream(tables: Iterable[pa.Table], path: str | os.PathLike, metadata: Mapping) -> Path:
    """Stream tables (manifest schema) into one manifest file, atomically; the bytes equal those of
    :func:`write_manifest` of the concatenated rows. Memory: about two row groups."""
    with ManifestWriter(path, metadata) as writer:
        for t in tables:
            writer.write(t)
        return writer.close(metadata)


# --- sidecars ------------------------------------------------------------------------------------------------

def skipped_path_for(out: str | os.PathLike) -> Path:
    """The sidecar of skipped records: ``OUT`` with ``.skipped.jsonl`` in place of its suffix."""
    out = Path(out)
    return out.with_name(out.stem + ".skipped.jsonl")


def duplicates_path_for(out) -> Path:
    """The sidecar of dropped duplicates: ``OUT.duplicates.jsonl`` beside the manifest ``OUT.parquet``."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".parquet") + ".duplicates.jsonl")
