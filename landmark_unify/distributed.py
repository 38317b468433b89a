"""Scale-out: the library's batched pure core run on an existing engine, written as a partitioned dataset.

The work of every command is split into *units* (partitions of faces). Each unit is processed by the same
pure functions as the local path (``build.process_unit``, ``pose.estimate_pose``, ``eyes.eye_columns``,
...) and written by the worker that processed it as Parquet *parts* of a dataset directory in hive layout::

    OUT/
      _manifest.json                       parts, row counts, row order, the manifest metadata
      _SUCCESS                             written last: the dataset is complete
      source=wflw/split=test/part-00000.parquet
      source=wflw/split=test/part-00001.parquet
      source=lapa/split=test/part-00002.parquet

Each part is itself a valid manifest file (full :data:`manifest.SCHEMA`, ``source`` and ``split`` kept in
the file). Parts are written into a hidden staging directory beside ``OUT`` and the directory is renamed
onto ``OUT`` only after every unit has succeeded, with ``_SUCCESS`` in it: a failed or killed run leaves
no directory at ``OUT``. A path ending in ``.parquet`` asks for the single-file form instead (assembled
from the parts with bounded memory, same rows in the same order as the local path, written atomically).

Engines (:data:`ENGINES`): ``local`` runs the units one after the other in this process and needs nothing
beyond the base install; ``dask`` runs them on a ``dask.distributed`` cluster (the ``dask`` extra): a
``LocalCluster`` of ``workers`` processes on 127.0.0.1 started for the run, or an existing cluster given
by its scheduler address. Workers must see the input files, the image roots and the output directory at
the same paths (see ``docs/scale-out.md``). A worker killed mid-run is retried on another worker by the
scheduler (up to ``distributed.scheduler.allowed-failures`` times); beyond that the run fails with
:class:`EngineError` and nothing is left at ``OUT``.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import manifest as mf
from ._io import atomic_path, write_jsonl_atomic, write_sidecar
from .errors import LandmarkUnifyError, ManifestError
from .manifest import take_rows

ENGINES = ("local", "dask")
DATASET_FORMAT = "landmark_unify.partitioned"
DATASET_VERSION = 1
MANIFEST_FILE = "_manifest.json"
SUCCESS_FILE = "_SUCCESS"
PARTITION_COLUMNS = ("source", "split")
#: Default faces per unit for commands that read an existing manifest.
DEFAULT_ROWS_PER_PARTITION = 50_000
#: Environment variable naming a dask scheduler address used when ``scheduler`` is not given.
SCHEDULER_ENV = "LANDMARK_UNIFY_SCHEDULER"


class EngineError(LandmarkUnifyError):
    """The engine could not complete a run (a worker died too often, the cluster went away, ...)."""


# --- engines ---------------------------------------------------------------------------------------------

@dataclass
class TaskResult:
    """What a worker sends back for one unit: small, the data itself stays in the part files."""

    index: int
    rows: int
    parts: list[dict]
    runs: list[list]
    skipped: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    ids: object = None  # (rows,) uint64 sample ids in row order, where the run checks duplicates


class LocalEngine:
    """Runs units one after the other in this process: the reference path, no extra dependency."""

    name = "local"
    workers = 1

    def map(self, fn: Callable, items: Sequence, describe: Callable[[int], str] | None = None) -> Iterator:
        for i, item in enumerate(items):
            yield i, fn(i, item)

    def worker_peak_rss(self) -> dict:
        return {f"local-{os.getpid()}": _peak_rss()}

    def close(self) -> None:
        pass


class DaskEngine:
    """Runs units as ``dask.distributed`` tasks, one task per unit, results returned as they complete.

    scheduler: address of a running scheduler (``tcp://host:8786``); when None, a ``LocalCluster`` of
    ``workers`` worker processes (one thread each) is started on 127.0.0.1 with the dashboard off, and
    closed with the engine. ``memory_limit`` is passed to the local workers (``"auto"`` by default).
    """

    name = "dask"

    def __init__(self, workers: int | None = None, scheduler: str | None = None, memory_limit="auto",
                 timeout: float = 60.0) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise EngineError(
                "engine 'dask' needs dask.distributed: pip install 'landmark-unify[dask]'"
            ) from None
        scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
        self._cluster = None
        if scheduler is None:
            n = int(workers or 1)
            if n < 1:
                raise ValueError(f"workers must be >= 1; got {workers}")
            import dask

            # dask's workers start with MALLOC_TRIM_THRESHOLD_=65536, which also turns off glibc's adaptive
            # mmap threshold: every decoded image buffer is then mmapped and unmapped, and image checks run
            # 2.2x slower than in a plain process (measured). Short-lived local workers do not need it.
            with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
                    warnings.catch_warnings():
                # without a dashboard the scheduler still serves /health on 127.0.0.1 (8787, or any free port)
                warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)
                self._cluster = LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=None, memory_limit=memory_limit, silence_logs=40,
                )
            self.client = Client(self._cluster, timeout=timeout)
            # n processes share this machine's cores: give each worker's Arrow pool its share (dask already
            # sets OMP/MKL/OpenBLAS threads to 1 in its workers), or the workers oversubscribe the CPU
            self.client.run(_limit_arrow_threads, max(1, (os.cpu_count() or 1) // n))
        else:
            self.client = Client(scheduler, timeout=timeout)
            if workers:
                self.client.wait_for_workers(int(workers), timeout=timeout)
        self.workers = len(self.client.scheduler_info(n_workers=-1)["workers"]) if _has_n_workers_kw(self.client) \
            else len(self.client.scheduler_info()["workers"])

    def map(self, fn: Callable, items: Sequence, describe: Callable[[int], str] | None = None) -> Iterator:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        token = uuid.uuid4().hex[:8]
        keys = [f"landmark-unify-{token}-{i:05d}" for i in range(len(items))]
        futures = self.client.map(fn, list(range(len(items))), list(items), key=keys, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in as_completed(futures):
                i = index[fut.key]
                try:
                    result = fut.result()
                except KilledWorker as exc:
                    what = describe(i) if describe else f"unit {i}"
                    raise EngineError(
                        f"partition {i + 1} of {len(items)} ({what}) was running on a worker that died, and "
                        f"died again on each retry (dask gives up after "
                        f"distributed.scheduler.allowed-failures retries; last worker {exc.last_worker}); "
                        "the run is aborted and no output was written"
                    ) from None
                except Exception as exc:
                    if _is_comm_error(exc):
                        raise EngineError(f"lost the dask cluster while running partition {i + 1} of "
                                          f"{len(items)}: {exc}") from exc
                    raise  # the task's own error (e.g. a ParseError naming file, line and field), as it is
                yield i, result
        finally:
            self.client.cancel(futures)

    def worker_peak_rss(self) -> dict:
        return self.client.run(_peak_rss)

    def worker_pids(self) -> dict:
        return self.client.run(os.getpid)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close()


def _limit_arrow_threads(n: int) -> int:
    pa.set_cpu_count(n)
    return n


def _has_n_workers_kw(client) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def _is_comm_error(exc: BaseException) -> bool:
    try:
        from distributed.comm.core import CommClosedError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, CommClosedError | TimeoutError)


def get_engine(engine: str | object = "local", workers: int | None = None, scheduler: str | None = None,
               **options):
    """An engine by name (``local`` or ``dask``), or ``engine`` itself when it is already one."""
    if not isinstance(engine, str):
        return engine
    if engine == "local":
        return LocalEngine()
    if engine == "dask":
        return DaskEngine(workers=workers, scheduler=scheduler, **options)
    if engine == "ray":
        raise EngineError("engine 'ray' is not provided by this version: use --engine dask (see docs/scale-out.md "
                          "for why), or --engine local")
    raise ValueError(f"unknown engine {engine!r}; valid: {list(ENGINES)}")


@contextlib.contextmanager
def engine_context(engine="local", workers=None, scheduler=None, **options):
    """Start an engine for one run and close it afterwards (an engine object passed in is left open)."""
    owned = isinstance(engine, str)
    eng = get_engine(engine, workers, scheduler, **options)
    try:
        yield eng
    finally:
        if owned:
            eng.close()


def _peak_rss() -> int:
    """Peak resident set size of this process in bytes (Linux ``ru_maxrss`` is in KiB)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# --- writing parts (worker side) ---------------------------------------------------------------------------

def partition_dir(source: str, split: str) -> str:
    """Hive directory of one (source, split): ``source=<quoted>/split=<quoted>`` (URL quoting, as pyarrow's
    and DuckDB's hive readers expect)."""
    return f"source={quote(str(source), safe='')}/split={quote(str(split), safe='')}"


def _part_metadata(metadata: Mapping, depth: int = 3) -> dict:
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
        raise EngineError(f"staging directory {staging} is gone (the run was aborted)")
    meta = _part_metadata(metadata)
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
        mf.write_manifest(sub, staging / rel, meta, make_parents=False)
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
    :meth:`commit` writes ``_manifest.json`` and ``_SUCCESS`` and renames it onto ``output``;
    :meth:`abort` removes it."""

    def __init__(self, output: str | os.PathLike, overwrite: bool = True, for_file: bool = False) -> None:
        self.output = Path(output).absolute()
        if not for_file:
            if self.output.exists() and not overwrite:
                raise ManifestError(f"{self.output} exists (pass overwrite=True to replace it)")
            if self.output.exists() and not self.output.is_dir():
                raise ManifestError(f"{self.output} exists and is not a dataset directory")
            if self.output.is_dir() and any(self.output.iterdir()) and not (self.output / MANIFEST_FILE).exists():
                raise ManifestError(f"{self.output} is a non-empty directory that is not a dataset; refusing to "
                                    "replace it")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.staging = self.output.parent / f".{self.output.name}.staging-{uuid.uuid4().hex[:12]}"
        self.staging.mkdir()
        self.doc: dict | None = None

    def finalize(self, results: Sequence[TaskResult], metadata: Mapping, extra: Mapping | None = None) -> dict:
        """Check the parts against what the tasks reported, drop strays, write ``_manifest.json``."""
        results = sorted(results, key=lambda r: r.index)
        parts = [p for r in results for p in r.parts]
        runs = [run for r in results for run in r.runs]
        listed = {p["path"] for p in parts}
        on_disk = {str(p.relative_to(self.staging)) for p in self.staging.rglob("*.parquet")}
        missing = sorted(listed - on_disk)
        if missing:
            raise EngineError(f"parts reported written are missing from {self.staging}: {missing[:5]}")
        for stray in sorted(on_disk - listed):  # e.g. left by a task whose worker was killed mid-write
            (self.staging / stray).unlink()
        for tmp in self.staging.rglob(".*.tmp"):
            tmp.unlink()
        doc = {
            "format": DATASET_FORMAT,
            "version": DATASET_VERSION,
            "partition_columns": list(PARTITION_COLUMNS),
            "rows": sum(p["rows"] for p in parts),
            "units": len(results),
            "metadata": dict(metadata),
            "parts": parts,
            "order": runs,
        }
        if extra:
            doc.update(extra)
        _write_text(self.staging / MANIFEST_FILE, json.dumps(doc, sort_keys=True, indent=1) + "\n")
        self.doc = doc
        return doc

    def publish(self) -> Path:
        """Write ``_SUCCESS`` and rename the staging directory onto the output (replacing an old dataset)."""
        if self.doc is None:
            raise EngineError("finalize() must run before publish()")
        _write_text(self.staging / SUCCESS_FILE,
                    json.dumps({"parts": len(self.doc["parts"]), "rows": self.doc["rows"]}) + "\n")
        _fsync_dir(self.staging)
        old = None
        if self.output.exists():
            old = self.output.parent / f".{self.output.name}.old-{uuid.uuid4().hex[:12]}"
            os.rename(self.output, old)
        os.rename(self.staging, self.output)
        _fsync_dir(self.output.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.output

    def commit(self, results: Sequence[TaskResult], metadata: Mapping, extra: Mapping | None = None) -> Path:
        self.finalize(results, metadata, extra)
        return self.publish()

    def abort(self) -> None:
        """Remove the staging directory: renamed away first (atomic), so that a task still running on a
        worker cannot write into it any more, then deleted."""
        gone = self.staging.parent / f".{self.output.name}.aborted-{uuid.uuid4().hex[:12]}"
        try:
            os.rename(self.staging, gone)
        except FileNotFoundError:
            return
        shutil.rmtree(gone, ignore_errors=True)


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- reading datasets ----------------------------------------------------------------------------------------

def read_dataset_info(path: str | os.PathLike) -> dict:
    """The ``_manifest.json`` of a complete dataset; raises :class:`ManifestError` when the dataset is
    incomplete (no ``_SUCCESS``) or not a dataset."""
    path = Path(path)
    if not path.is_dir():
        raise ManifestError(f"{path}: not a dataset directory")
    if not (path / SUCCESS_FILE).exists():
        raise ManifestError(f"{path}: no {SUCCESS_FILE} marker; the dataset is incomplete (its run failed or is running)")
    try:
        doc = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path / MANIFEST_FILE}: cannot read: {exc}") from None
    if doc.get("format") != DATASET_FORMAT:
        raise ManifestError(f"{path / MANIFEST_FILE}: format {doc.get('format')!r}; expected {DATASET_FORMAT!r}")
    return doc


def iter_segments(path: str | os.PathLike, rows_per_batch: int | None = None) -> Iterator[pa.Table]:
    """The rows of a complete dataset in its row order (the local path's order), as tables of at most
    ``rows_per_batch`` rows (one run each when None). Holds one part in memory at a time."""
    return _iter_doc_segments(Path(path), read_dataset_info(path), rows_per_batch)


def _iter_doc_segments(root: Path, doc: Mapping, rows_per_batch: int | None = None) -> Iterator[pa.Table]:
    """Rows in order, one unit at a time: a unit whose rows all sit in one part is a slice of it, one that
    was split over several (source, split) parts is reassembled from slices of its parts."""
    unit_of = {p["path"]: p["unit"] for p in doc["parts"]}
    for _, group in itertools.groupby(doc["order"], key=lambda r: unit_of[r[0]]):
        group = list(group)
        rels = list(dict.fromkeys(r[0] for r in group))
        if len(group) == 1:
            rel, off, length = group[0]
            table = mf.read_table(root / rel).slice(off, length)
        else:
            tables = {r: mf.read_table(root / r) for r in rels}
            table = pa.concat_tables([tables[r].slice(off, length) for r, off, length in group])
        step = rows_per_batch or max(table.num_rows, 1)
        for a in range(0, table.num_rows, step):
            yield table.slice(a, step)


def read_dataset_table(path: str | os.PathLike) -> pa.Table:
    """All rows of a complete dataset as one table, in its row order, with the dataset's metadata."""
    return _dataset_table(Path(path), read_dataset_info(path))


def _dataset_table(path: Path, doc: Mapping) -> pa.Table:
    tables = list(_iter_doc_segments(path, doc))
    table = pa.concat_tables(tables) if tables else mf.SCHEMA.empty_table()
    meta = json.dumps(doc["metadata"], sort_keys=True).encode("utf-8")
    return table.replace_schema_metadata({mf.METADATA_KEY: meta})


def read_dataset(path: str | os.PathLike) -> pd.DataFrame:
    """Read a partitioned manifest like :func:`manifest.read_manifest` reads a file: same columns, same
    row order as the single-file form, ``df.attrs["manifest"]`` the metadata and ``df.attrs["path"]`` the
    dataset directory (relative source roots resolve against its parent folder)."""
    doc = read_dataset_info(path)
    df = mf.dataframe_from_table(_dataset_table(Path(path), doc))
    df.attrs["manifest"] = doc["metadata"]
    df.attrs["path"] = str(Path(path).resolve())
    return df


def read_any(path: str | os.PathLike):
    """:func:`read_dataset` for a dataset directory, :func:`manifest.read_manifest` for a file."""
    return read_dataset(path) if Path(path).is_dir() else mf.read_manifest(path)


def compare_manifests(a: str | os.PathLike, b: str | os.PathLike, atol: float = 0.0) -> list[str]:
    """Differences in rows and values between two manifests (files or datasets), in row order; NaN equals
    NaN; float columns (angles, EAR, weight) may differ by ``atol`` (default: exactly equal). Empty when
    they hold the same rows with the same values (metadata is not compared)."""
    da, db = read_any(a), read_any(b)
    if len(da) != len(db):
        return [f"{a} has {len(da)} rows, {b} has {len(db)}"]
    out = []
    for name, fn in (("landmarks", mf.landmarks_array), ("valid", mf.valid_array), ("bbox", mf.bbox_array)):
        x, y = fn(da), fn(db)
        same = (x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else x == y
        rows = np.flatnonzero(~same.reshape(len(da), -1).all(1))
        if rows.size:
            out.append(f"column {name!r} differs in {rows.size} rows (first row {rows[0]})")
    for name in mf.COLUMN_NAMES:
        if name in ("landmarks", "valid", "bbox"):
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


def validate_dataset(path: str | os.PathLike) -> list[str]:
    """Problems of a partitioned manifest (empty when valid): completeness, the part list against the
    files on disk, each part against the spec and hive keys, and sample_id unique across parts."""
    path = Path(path)
    try:
        doc = read_dataset_info(path)
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
            meta = mf.read_metadata(path / rel)
            table = mf.read_table(path / rel)
        except ManifestError as exc:
            problems.append(str(exc))
            continue
        problems += mf.validate_table(table, meta, where=str(path / rel))
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


# --- single-file form ------------------------------------------------------------------------------------------

def write_single_file(tables: Iterator[pa.Table], path: str | os.PathLike, metadata: Mapping,
                      row_group_size: int = mf.ROW_GROUP_SIZE) -> Path:
    """Stream tables (manifest schema) into one manifest file, atomically, with the same writer settings
    as :func:`manifest.write_manifest` and row groups of exactly ``row_group_size`` rows (so the file
    matches the one ``write_manifest`` writes for the concatenated table). Memory: one row group."""
    schema = mf.SCHEMA.with_metadata(mf.schema_metadata(metadata))
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, **mf.WRITE_OPTIONS) as writer:
        buf: list[pa.Table] = []
        held, wrote = 0, False
        for t in tables:
            mf.check_schema(t)
            buf.append(t.replace_schema_metadata(schema.metadata))
            held += t.num_rows
            while held >= row_group_size:
                merged = pa.concat_tables(buf)
                writer.write_table(merged.slice(0, row_group_size), row_group_size=row_group_size)
                wrote = True
                rest = merged.slice(row_group_size)
                buf, held = [rest], rest.num_rows
        if held or not wrote:
            merged = pa.concat_tables(buf) if buf else schema.empty_table()
            writer.write_table(merged, row_group_size=row_group_size)
    return Path(path)


def dataset_to_file(dataset: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write a complete dataset as one manifest file (its row order and metadata), streaming."""
    doc = read_dataset_info(dataset)
    return write_single_file(iter_segments(dataset), path, doc["metadata"])


# --- a run: units -> parts -> committed dataset or file -----------------------------------------------------------

@dataclass
class RunResult:
    """What a distributed run did: where it wrote, how many rows, what it skipped, where time went."""

    output: Path
    rows: int
    units: int
    parts: int
    skipped: list
    engine: str
    workers: int
    seconds: dict
    worker_peak_rss: dict
    extra: dict = field(default_factory=dict)

    def summary(self) -> str:
        s = self.seconds
        busy = ", ".join(f"{k} {v:.2f}s" for k, v in s.items())
        return (f"{self.output}: {self.rows} faces in {self.units} partitions ({self.parts} parts), engine "
                f"{self.engine} x{self.workers}, {len(self.skipped)} skipped; {busy}")


def _single_file_wanted(output: str | os.PathLike) -> bool:
    return str(output).endswith(".parquet")


def run_units(task: Callable, units: Sequence, output: str | os.PathLike, metadata: Mapping, *,
              engine="local", workers: int | None = None, scheduler: str | None = None,
              single_file: str | os.PathLike | None = None, describe: Callable[[int], str] | None = None,
              final_metadata: Callable[[list[TaskResult]], Mapping] | None = None,
              post_run: Callable[[Path, list[TaskResult]], list[TaskResult]] | None = None,
              progress: bool = True, engine_options: Mapping | None = None) -> RunResult:
    """Run ``task(index, unit, staging) -> TaskResult`` for every unit on an engine and commit the output.

    ``output`` is a dataset directory, or a ``.parquet`` path for the single-file form only (the parts
    are then staged in a hidden directory and removed after assembly). ``single_file``: also write the
    single-file form there. ``post_run(staging, results) -> results`` may fix parts up on the driver once
    every unit is done (the build's global duplicate check) and drop files to commit with the dataset
    into ``staging``. ``final_metadata(results)``: metadata of the dataset and single file computed
    once all units are done (defaults to ``metadata``). On any failure the staging directory is removed
    and the error re-raised: nothing is left at ``output``. A function ``fn`` of :func:`map_manifest` may
    return skipped records under ``extra["skipped"]``; they end up in ``RunResult.skipped``.
    """
    from tqdm import tqdm

    t_start = time.perf_counter()
    want_file = _single_file_wanted(output)
    staged = StagedDataset(output, for_file=want_file)
    results: list[TaskResult] = []
    seconds: dict[str, float] = {}
    stack = contextlib.ExitStack()
    stack.enter_context(_terminate_as_exception())
    try:
        t0 = time.perf_counter()
        with engine_context(engine, workers, scheduler, **(engine_options or {})) as eng:
            seconds["engine_start"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            bound = partial(_call_task, task, str(staged.staging))
            bar = tqdm(total=len(units), desc=f"partitions ({eng.name})", unit="part", disable=not progress,
                       leave=False)
            for _, res in eng.map(bound, units, describe):
                results.append(res)
                bar.update(1)
            bar.close()
            seconds["run"] = time.perf_counter() - t0
            rss = eng.worker_peak_rss()
            n_workers = eng.workers
            eng_name = eng.name
        t0 = time.perf_counter()
        if post_run is not None:
            results = post_run(staged.staging, results)
        meta = dict(final_metadata(results)) if final_metadata else dict(metadata)
        doc = staged.finalize(results, meta)
        if want_file:
            # assembled from the staging directory, which is never exposed as a dataset
            write_single_file(_iter_doc_segments(staged.staging, doc), output, meta)
            staged.abort()
            final = Path(output)
        else:
            final = staged.publish()
            if single_file is not None:
                dataset_to_file(final, single_file)
        seconds["commit"] = time.perf_counter() - t0
    except BaseException:
        staged.abort()
        raise
    finally:
        stack.close()
    for key in ("read", "process", "write"):
        vals = [r.seconds.get(key, 0.0) for r in results]
        if any(vals):
            seconds[f"tasks_{key}_sum"] = float(sum(vals))
    seconds["tasks_max"] = max((sum(r.seconds.values()) for r in results), default=0.0)
    seconds["total"] = time.perf_counter() - t_start
    skipped = [s for r in sorted(results, key=lambda r: r.index) for s in r.skipped]
    extra: dict = {}
    for r in results:
        for k, v in r.extra.items():
            if isinstance(v, int | float):
                extra[k] = extra.get(k, 0) + v
    return RunResult(output=final, rows=sum(r.rows for r in results), units=len(units),
                     parts=sum(len(r.parts) for r in results), skipped=skipped, engine=eng_name,
                     workers=n_workers, seconds=seconds, worker_peak_rss=rss, extra=extra)


class Terminated(EngineError):
    """The driver received SIGTERM during a run (the run was aborted and its staging directory removed)."""


@contextlib.contextmanager
def _terminate_as_exception():
    """In the main thread, turn SIGTERM into an exception for the duration of a run, so that ``kill PID``
    (like Ctrl-C) aborts it cleanly: staging directory removed, nothing left at the output."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated("terminated by SIGTERM; the run is aborted and no output was written")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _call_task(task: Callable, staging: str, index: int, unit) -> TaskResult:
    return task(index, unit, staging)


# --- commands: build ---------------------------------------------------------------------------------------------

def _build_task(policy: str, on_error: str, check_images: bool, metadata: Mapping, index: int, unit,
                staging: str) -> TaskResult:
    from .build import process_unit

    t0 = time.perf_counter()
    table, skipped = process_unit(unit, policy=policy, on_error=on_error, check_images=check_images)
    t1 = time.perf_counter()
    parts, runs = write_parts(table, staging, index, metadata)
    t2 = time.perf_counter()
    return TaskResult(index=index, rows=table.num_rows, parts=parts, runs=runs, skipped=list(skipped),
                      seconds={"process": t1 - t0, "write": t2 - t1}, ids=_id_keys(table))


def _id_keys(table: pa.Table):
    """sample_id (16 hex digits) as uint64, for a compact global duplicate check on the driver."""
    ids = table.column("sample_id").to_pylist()
    try:
        return np.fromiter((int(x, 16) for x in ids), dtype=np.uint64, count=len(ids))
    except ValueError:  # ids that are not 16 hex digits: hash them (collisions are re-checked exactly)
        return np.fromiter((_hash_key(x) for x in ids), dtype=np.uint64, count=len(ids))


def _drop_global_duplicates(staging: Path, results: list[TaskResult], on_error: str, part_metadata: Mapping,
                            dup_records: list) -> list[TaskResult]:
    """The local build's duplicate rule across all units: a sample_id seen before (in unit order) is a
    duplicate; raise on it or drop it from its unit's parts and record it, as ``build.finish_build`` does."""
    from .build import duplicate_record

    results = sorted(results, key=lambda r: r.index)
    keys = [r.ids if r.ids is not None else np.zeros(0, np.uint64) for r in results]
    if not keys:
        return results
    allk = np.concatenate(keys)
    _, first = np.unique(allk, return_index=True)
    if first.size == allk.size:
        return results
    dup = np.ones(allk.size, bool)
    dup[first] = False
    offsets = np.cumsum([0] + [k.size for k in keys])
    for ri, r in enumerate(results):
        rows = np.flatnonzero(dup[offsets[ri]:offsets[ri + 1]])
        if rows.size == 0:
            continue
        doc = {"parts": r.parts, "order": r.runs}
        tables = list(_iter_doc_segments(staging, doc))
        table = pa.concat_tables(tables) if tables else mf.SCHEMA.empty_table()
        cols = {c: table.column(c).to_pylist() for c in ("sample_id", "source", "origin_file", "origin_line",
                                                           "origin_key")}
        for i in rows.tolist():
            dup_records.append(duplicate_record(on_error, cols["source"][i], cols["sample_id"][i],
                                                cols["origin_file"][i], cols["origin_line"][i], cols["origin_key"][i]))
        keep = np.ones(table.num_rows, bool)
        keep[rows] = False
        for p in r.parts:
            (staging / p["path"]).unlink()
        r.parts, r.runs = write_parts(take_rows(table, np.flatnonzero(keep)), staging, r.index, part_metadata)
        r.rows = int(keep.sum())
        r.ids = r.ids[keep]
    return results


def build_manifest_distributed(sources, out, policy: str = "strict", on_error: str = "raise",
                               check_images: bool = False, command: str | None = None, engine="dask",
                               workers: int | None = None, chunk_bytes: int | None = None, progress: bool = True,
                               scheduler: str | None = None, single_file: str | os.PathLike | None = None,
                               engine_options: Mapping | None = None):
    """``build-manifest`` on an engine: plan the units here, run :func:`build.process_unit` on each on the
    workers, which write their parts; commit once all are done.

    Same arguments as :func:`build.build_manifest`, plus ``scheduler`` (an existing dask cluster) and
    ``single_file``. ``out`` is a dataset directory, or a ``.parquet`` path for the single file only; the
    rows, their order, the values and the metadata equal those of the local build of the same sources.
    Skipped records go to ``OUT``'s ``.skipped.jsonl`` sidecar for a file and to ``_skipped.jsonl`` inside
    a dataset. Returns a :class:`build.BuildReport` whose ``extra["run"]`` is the :class:`RunResult`.
    """
    from .build import (
        BuildReport,
        build_metadata,
        check_options,
        faces_per_source,
        parse_sources,
        plan_units,
        write_skipped,
    )
    from .summary import summary_text

    check_options(policy, on_error)
    srcs = parse_sources(sources)
    units = plan_units(srcs, chunk_bytes)

    def metadata(num_skipped: int) -> dict:
        return build_metadata(srcs, command, policy=policy, on_error=on_error, check_images=check_images,
                              num_skipped=num_skipped)

    part_meta = metadata(0)
    dup_records: list = []
    all_skipped: list = []

    def post_run(staging: Path, results: list[TaskResult]) -> list[TaskResult]:
        results = _drop_global_duplicates(staging, results, on_error, part_meta, dup_records)
        all_skipped.extend(s for r in results for s in r.skipped)
        all_skipped.extend(dup_records)
        if all_skipped and not _single_file_wanted(out):
            write_jsonl_atomic(all_skipped, staging / "_skipped.jsonl")
        return results

    task = partial(_build_task, policy, on_error, bool(check_images), part_meta)
    run = run_units(task, units, out, part_meta, engine=engine, workers=workers, scheduler=scheduler,
                    single_file=single_file, describe=lambda i: units[i].describe(),
                    final_metadata=lambda results: metadata(len(all_skipped)), post_run=post_run,
                    progress=progress, engine_options=engine_options)
    meta = metadata(len(all_skipped))
    if _single_file_wanted(out):
        side = write_skipped(all_skipped, out)
    else:
        side = Path(run.output) / "_skipped.jsonl" if all_skipped else None
    cols = ["source", "split", "valid", "source_schema", "bbox_source", "pose_source", "eye_state"]
    table = _read_columns(run.output, cols)
    report = BuildReport(Path(run.output), run.rows, faces_per_source(table, srcs), all_skipped, side, meta,
                         units=len(units), extra={"run": run})
    report.summary = summary_text(table, meta, all_skipped, title=str(run.output), sidecar=report.skipped_path) + \
        "\n" + run.summary()
    return report


def _read_columns(path: str | os.PathLike, columns: Sequence[str]) -> pa.Table:
    """Some columns of a manifest file or complete dataset (any row order)."""
    path = Path(path)
    if not path.is_dir():
        return pq.read_table(path, columns=list(columns))
    doc = read_dataset_info(path)
    tables = [pq.read_table(path / p["path"], columns=list(columns)) for p in doc["parts"]]
    return pa.concat_tables(tables) if tables else mf.SCHEMA.empty_table().select(list(columns))


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
        meta = mf.read_metadata(path)
        try:
            n = pq.ParquetFile(path).metadata.num_rows
        except (OSError, pa.ArrowInvalid) as exc:
            raise ManifestError(f"{path}: cannot read as Parquet: {exc}") from None
        runs = [(str(path.resolve()), 0, n)]
    slices = []
    for p, off, length in runs:
        for a in range(off, off + length, rows_per_partition):
            slices.append(RowSlice(p, a, min(rows_per_partition, off + length - a)))
    return slices, meta


def read_slice(s: RowSlice, columns: Sequence[str] | None = None) -> pa.Table:
    """The rows of a slice, reading only the row groups that hold them."""
    pf = pq.ParquetFile(s.path)
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
        return mf.SCHEMA.empty_table() if columns is None else mf.SCHEMA.empty_table().select(list(columns))
    table = pf.read_row_groups(groups, columns=list(columns) if columns else None)
    return table.slice(s.offset - first, s.length).replace_schema_metadata(None)


def _slice_frame(s: RowSlice, metadata: Mapping, input_path: str) -> pd.DataFrame:
    df = mf.dataframe_from_table(read_slice(s))
    df.attrs["manifest"] = dict(metadata)
    df.attrs["path"] = str(Path(input_path).resolve())
    return df


def _frame_task(fn: Callable, metadata: Mapping, part_metadata: Mapping, input_path: str, index: int,
                unit: RowSlice, staging: str) -> TaskResult:
    """Read a slice, apply ``fn(df) -> (df, extra)`` (a pure per-row function of the local path), write."""
    t0 = time.perf_counter()
    df = _slice_frame(unit, metadata, input_path)
    t1 = time.perf_counter()
    out, extra = fn(df)
    extra = dict(extra)
    skipped = list(extra.pop("skipped", []))
    table = mf.table_from_dataframe(out) if len(out) else mf.SCHEMA.empty_table()
    t2 = time.perf_counter()
    parts, runs = write_parts(table, staging, index, part_metadata)
    t3 = time.perf_counter()
    return TaskResult(index=index, rows=table.num_rows, parts=parts, runs=runs, skipped=skipped,
                      seconds={"read": t1 - t0, "process": t2 - t1, "write": t3 - t2}, extra=extra)


def map_manifest(input: str | os.PathLike, output: str | os.PathLike, fn: Callable, *,
                 metadata: Callable[[dict, dict], Mapping], engine="local", workers: int | None = None,
                 scheduler: str | None = None, rows_per_partition: int = DEFAULT_ROWS_PER_PARTITION,
                 single_file: str | os.PathLike | None = None, progress: bool = True,
                 engine_options: Mapping | None = None) -> RunResult:
    """Apply a per-row function to a manifest, partition by partition, on an engine.

    fn: ``fn(df) -> (df_out, extra)``, picklable (a module-level function or a ``functools.partial`` of
    one), taking a manifest DataFrame of one slice (``attrs`` as :func:`read_manifest` sets them, for the
    input) and returning the rows to write plus a dict of numbers summed over slices. It must treat each
    row independently of the others (true of the pose fit, the eye columns, the image checks), which is
    what makes the partitioned result equal the local one. metadata: ``metadata(input_meta, extra_sums)
    -> output metadata``, called on the driver once every slice is done.
    """
    slices, in_meta = plan_slices(input, rows_per_partition)
    part_meta = metadata(in_meta, {})
    task = partial(_frame_task, fn, in_meta, part_meta, str(input))

    def final(results):
        sums: dict = {}
        for r in results:
            for k, v in r.extra.items():
                sums[k] = sums.get(k, 0) + v
        return metadata(in_meta, sums)

    return run_units(task, slices, output, part_meta, engine=engine, workers=workers, scheduler=scheduler,
                     single_file=single_file, describe=lambda i: slices[i].describe(), final_metadata=final,
                     progress=progress, engine_options=engine_options)


# --- mine-closed-eyes ----------------------------------------------------------------------------------------------

def _closed_eyes_fn(threshold: float, mode: str, df: pd.DataFrame):
    from .eyes import closed_eye_mask, with_eye_columns

    df = with_eye_columns(df, threshold)
    ear = np.stack([df["ear_left"].to_numpy(np.float64), df["ear_right"].to_numpy(np.float64)], 1) \
        if len(df) else np.zeros((0, 2))
    keep = closed_eye_mask(ear, threshold, mode)
    return df[keep].reset_index(drop=True), {"kept": int(keep.sum()), "total": len(df)}


def mine_closed_eyes_distributed(input: str | os.PathLike, output: str | os.PathLike, *, threshold: float | None = None,
                                 mode: str = "either", engine="local", workers: int | None = None,
                                 scheduler: str | None = None, rows_per_partition: int = DEFAULT_ROWS_PER_PARTITION,
                                 single_file: str | os.PathLike | None = None, progress: bool = True) -> RunResult:
    """``mine-closed-eyes`` on an engine: the rows and values of :func:`eyes.mine_closed_eyes_file`,
    written as a dataset at ``output`` (or one file when it ends in ``.parquet``). ``input`` is a manifest
    file or a dataset directory."""
    from .eyes import CLOSED_THRESHOLD, MINE_MODES
    from .merge import derived_metadata

    threshold = CLOSED_THRESHOLD if threshold is None else float(threshold)
    if mode not in MINE_MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {list(MINE_MODES)}")

    def meta(in_meta, sums):
        return derived_metadata(in_meta, input, output, "mine-closed-eyes",
                                mined_closed_eyes={"from": str(input), "threshold": threshold, "mode": mode,
                                                   "kept": int(sums.get("kept", 0)),
                                                   "total": int(sums.get("total", 0))})

    return map_manifest(input, output, partial(_closed_eyes_fn, threshold, mode), metadata=meta, engine=engine,
                        workers=workers, scheduler=scheduler, rows_per_partition=rows_per_partition,
                        single_file=single_file, progress=progress)


# --- relabel-pose --------------------------------------------------------------------------------------------------

POSE_FIT_METHOD = "scaled-orthographic fit with expression modes"


def _relabel_fn(model, fit_options: Mapping, df: pd.DataFrame):
    from .pose import relabel_dataframe

    out, counts = relabel_dataframe(df, model=model, **dict(fit_options))
    return out, counts


def relabel_pose_distributed(input: str | os.PathLike, output: str | os.PathLike, *, mean_shape=None,
                             shape_key: str | None = None, engine="local", workers: int | None = None,
                             scheduler: str | None = None, rows_per_partition: int = DEFAULT_ROWS_PER_PARTITION,
                             single_file: str | os.PathLike | None = None, progress: bool = True,
                             **fit_options) -> RunResult:
    """``relabel-pose`` on an engine: :func:`pose.relabel_dataframe` on every partition, the rows, values
    and metadata of :func:`pose.relabel_manifest_file`. The face model is loaded once here and shipped to
    the workers, so they do not need the mean-shape file. ``RunResult.extra`` holds the counts (filled,
    kept, unknown)."""
    from .merge import derived_metadata
    from .pose import DEFAULT_SHAPE_KEY, load_face_model

    model = load_face_model(mean_shape, shape_key or DEFAULT_SHAPE_KEY)

    def meta(in_meta, sums):
        counts = {k: int(sums.get(k, 0)) for k in ("filled", "kept", "unknown")}
        return derived_metadata(in_meta, input, output, "relabel-pose",
                                pose_fit={"model": model.source, "method": POSE_FIT_METHOD, **counts})

    return map_manifest(input, output, partial(_relabel_fn, model, dict(fit_options)), metadata=meta, engine=engine,
                        workers=workers, scheduler=scheduler, rows_per_partition=rows_per_partition,
                        single_file=single_file, progress=progress)


# --- image checks on an existing manifest ----------------------------------------------------------------------------

def _check_images_fn(roots: Mapping | None, on_error: str, df: pd.DataFrame):
    from .build import _image_size
    from .errors import ParseError

    paths = mf.image_paths(df, roots)
    n = len(df)
    width = np.full(n, np.nan)
    height = np.full(n, np.nan)
    keep = np.ones(n, bool)
    skipped = []
    cache: dict = {}
    for i, p in enumerate(paths):
        if p is None:
            got = ParseError(str(df["image_path"].iloc[i]), f"source {df['source'].iloc[i]!r} has no root", field="image")
        else:
            got = cache.get(p)
            if got is None:
                got = cache[p] = _image_size(p)
        if isinstance(got, ParseError):
            if on_error == "raise":
                raise ParseError(got.path, f"{got.reason} (row sample_id {df['sample_id'].iloc[i]})", field="image")
            keep[i] = False
            rec = {"source": str(df["source"].iloc[i]), "kind": None}
            rec.update(got.as_record())
            rec["sample_id"] = str(df["sample_id"].iloc[i])
            skipped.append(rec)
        else:
            width[i], height[i] = got
    out = df.copy()
    out.attrs = dict(df.attrs)
    out["image_width"] = pd.array([None if not np.isfinite(v) else int(v) for v in width], dtype="Int32")
    out["image_height"] = pd.array([None if not np.isfinite(v) else int(v) for v in height], dtype="Int32")
    out = out[keep].reset_index(drop=True)
    return out, {"checked": n, "bad": int((~keep).sum()), "skipped": skipped}


def check_images_distributed(input: str | os.PathLike, output: str | os.PathLike, *, on_error: str = "raise",
                             roots: Mapping[str, str] | None = None, engine="local", workers: int | None = None,
                             scheduler: str | None = None, rows_per_partition: int = 5_000,
                             single_file: str | os.PathLike | None = None, progress: bool = True) -> RunResult:
    """Decode every image of a manifest on an engine (the check of ``build-manifest --check-images``, for a
    manifest already built): fills ``image_width`` / ``image_height``; a missing or corrupt image raises
    (``on_error="raise"``, nothing written) or drops its row and is listed in ``RunResult.skipped``.
    ``roots`` overrides the manifest's source roots (e.g. where the images are mounted on the workers)."""
    if on_error not in ("raise", "skip"):
        raise LandmarkUnifyError(f"on_error must be one of ['raise', 'skip']; got {on_error!r}")
    from .merge import derived_metadata

    def meta(in_meta, sums):
        return derived_metadata(in_meta, input, output, "check-images",
                                images_checked={"checked": int(sums.get("checked", 0)), "bad": int(sums.get("bad", 0))})

    run = map_manifest(input, output, partial(_check_images_fn, dict(roots) if roots else None, on_error),
                       metadata=meta, engine=engine, workers=workers, scheduler=scheduler,
                       rows_per_partition=rows_per_partition, single_file=single_file, progress=progress)
    return run


# --- merge -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MergeUnit:
    """Rows of input manifest number ``input`` (in priority order); ``drop``: row offsets within the
    slice to leave out (phase 2 only)."""

    input: int
    slice: RowSlice
    drop: tuple[int, ...] = ()


def _hash_key(text: str) -> int:
    import hashlib

    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:16], 16)


def _merge_keys_task(inputs: Sequence[tuple[str, dict]], hash_images: bool, index: int, unit: MergeUnit) -> TaskResult:
    """Phase 1 on a worker: per row the sample_id key and the image-content key (SHA-1 of the image file,
    or its resolved path when unreadable, as :func:`merge.merge_manifests` defines them), as uint64."""
    from .merge import file_digest

    t0 = time.perf_counter()
    path, meta = inputs[unit.input]
    table = read_slice(unit.slice, columns=["sample_id", "source", "image_path"])
    df = table.to_pandas()
    df.attrs["manifest"] = meta
    df.attrs["path"] = str(Path(path).resolve())
    n = len(df)
    hkeys = np.zeros(n, np.uint64)
    has = np.zeros(n, bool)
    if hash_images and n:
        digests: dict = {}
        for i, p in enumerate(mf.image_paths(df)):
            if p is None:
                continue
            p = str(p)
            if p not in digests:
                digests[p] = _hash_key(file_digest(p) or f"path:{Path(p).resolve()}")
            hkeys[i], has[i] = digests[p], True
    counts: dict = {}
    for s in df["source"].tolist():
        counts[s] = counts.get(s, 0) + 1
    return TaskResult(index=index, rows=n, parts=[], runs=[], ids=_id_keys(table),
                      seconds={"read": 0.0, "process": time.perf_counter() - t0},
                      extra={"hkeys": hkeys, "has_image": has, "sources": counts})


def _merge_write_task(inputs: Sequence[tuple[str, dict]], weights: Mapping[str, float], part_meta: Mapping,
                      index: int, unit: MergeUnit, staging: str) -> TaskResult:
    """Phase 2 on a worker: the slice without its dropped rows, weights multiplied, written as parts."""
    t0 = time.perf_counter()
    path, meta = inputs[unit.input]
    df = _slice_frame(unit.slice, meta, path)
    keep = np.ones(len(df), bool)
    keep[list(unit.drop)] = False
    merged = df[keep].reset_index(drop=True)
    if len(merged):
        factor = merged["source"].map(lambda s: weights.get(s, 1.0)).to_numpy(np.float64)
        merged["weight"] = (merged["weight"].to_numpy(np.float64) * factor).astype(np.float32)
    table = mf.table_from_dataframe(merged) if len(merged) else mf.SCHEMA.empty_table()
    t1 = time.perf_counter()
    parts, runs = write_parts(table, staging, index, part_meta)
    return TaskResult(index=index, rows=table.num_rows, parts=parts, runs=runs,
                      seconds={"process": t1 - t0, "write": time.perf_counter() - t1})


def merge_distributed(paths, output: str | os.PathLike, weights=None, *, hash_images: bool = True,
                      tolerance: float | None = None, engine="local", workers: int | None = None,
                      scheduler: str | None = None, rows_per_partition: int = DEFAULT_ROWS_PER_PARTITION,
                      single_file: str | os.PathLike | None = None, progress: bool = True):
    """``merge`` on an engine, with the rows, order, values and duplicate records of
    :func:`merge.merge_manifest_files`. Inputs are manifest files or datasets, in priority order.

    Phase 1 (workers): per row a 64-bit key of its sample_id and of its image content (the image files
    are read and hashed on the workers, the expensive part). Driver: the duplicate rules of the local
    merge on those keys; only the rows that share an image are read back to compare their landmarks.
    Phase 2 (workers): every slice without its dropped rows, weights applied, written as parts.
    Duplicates go to ``OUT.duplicates.jsonl`` beside a file, ``_duplicates.jsonl`` inside a dataset.
    Returns ``(MergeReport, RunResult)``.
    """
    from .merge import (
        DUPLICATE_TOLERANCE,
        MergeReport,
        _dup_record,
        _resolve,
        duplicates_path_for,
        parse_weights,
        rebased_roots,
        same_face,
    )

    tolerance = DUPLICATE_TOLERANCE if tolerance is None else float(tolerance)
    paths = [Path(p) for p in paths]
    if not paths:
        raise ManifestError("merge needs at least one manifest")
    out = Path(output)
    w_by_source = parse_weights(weights)
    inputs, roots, all_slices = [], {}, []
    for k, p in enumerate(paths):
        slices, meta = plan_slices(p, rows_per_partition)
        rebased = rebased_roots(meta.get("source_roots", {}), p, out)
        for name, root in rebased.items():
            if name in roots and _resolve(roots[name], out) != _resolve(root, out):
                raise ManifestError(f"{p}: source {name!r} has root {root!r} but an earlier manifest gives "
                                    f"{roots[name]!r}; relabel one of them (build-manifest --source LABEL:KIND=ROOT)")
            roots.setdefault(name, root)
        inputs.append((str(p), meta))
        all_slices += [MergeUnit(k, s) for s in slices]

    t0 = time.perf_counter()
    with engine_context(engine, workers, scheduler) as eng:
        keyed = sorted((r for _, r in eng.map(partial(_merge_keys_task, inputs, hash_images), all_slices,
                                              lambda i: all_slices[i].slice.describe())), key=lambda r: r.index)
        key_seconds = time.perf_counter() - t0
        ids = np.concatenate([r.ids for r in keyed]) if keyed else np.zeros(0, np.uint64)
        hk = np.concatenate([r.extra["hkeys"] for r in keyed]) if keyed else np.zeros(0, np.uint64)
        has = np.concatenate([r.extra["has_image"] for r in keyed]) if keyed else np.zeros(0, bool)
        offsets = np.cumsum([0] + [r.rows for r in keyed])
        rows_in = dict.fromkeys(roots, 0)
        for r in keyed:
            for s, c in r.extra["sources"].items():
                rows_in[s] = rows_in.get(s, 0) + c
        known = set(rows_in) | set(roots)
        unknown = sorted(set(w_by_source) - known)
        if unknown:
            raise ManifestError(f"weights given for sources {unknown} that no input holds; sources: {sorted(known)}")

        def rows_frame(rows: np.ndarray):
            """Manifest rows by global index (sorted; few: duplicates and rows sharing an image)."""
            unit_of = np.searchsorted(offsets, rows, side="right") - 1
            frames = [mf.dataframe_from_table(take_rows(read_slice(all_slices[u].slice), rows[unit_of == u] - offsets[u]))
                      for u in np.unique(unit_of)]
            return pd.concat(frames, ignore_index=True)

        # (1) the same sample_id again: every repeat after the first
        drop = np.zeros(ids.size, bool)
        duplicates: list[dict] = []
        _, first = np.unique(ids, return_index=True)
        rep = np.ones(ids.size, bool)
        rep[first] = False
        rep_rows = np.flatnonzero(rep)
        if rep_rows.size:
            first_of = {int(k): int(i) for k, i in zip(ids[first], first)}
            kept_rows = np.array([first_of[int(ids[i])] for i in rep_rows])
            both = np.unique(np.concatenate([rep_rows, kept_rows]))
            df = rows_frame(both)
            pos = {int(g): j for j, g in enumerate(both)}
            for i, k in zip(rep_rows.tolist(), kept_rows.tolist()):
                drop[i] = True
                duplicates.append(_dup_record(df, pos[i], pos[k], "sample_id"))
        # (2) the same image content and nearby landmarks
        if hash_images and ids.size:
            cand = np.flatnonzero(~drop & has)
            uk, inv, cnt = np.unique(hk[cand], return_inverse=True, return_counts=True)
            shared = cand[cnt[inv] > 1]
            if shared.size:
                df = rows_frame(shared)
                lm, valid, box = mf.landmarks_array(df), mf.valid_array(df), mf.bbox_array(df)
                groups: dict[int, list[int]] = {}
                for j, g in enumerate(shared.tolist()):
                    groups.setdefault(int(hk[g]), []).append(j)
                # the local merge visits groups in order of their first row, members in row order
                for members in groups.values():
                    kept: list[int] = []
                    for j in members:
                        match = next((k for k in kept if same_face(lm[k], valid[k], box[k], lm[j], valid[j], box[j],
                                                                    tolerance)), None)
                        if match is None:
                            kept.append(j)
                        else:
                            drop[shared[j]] = True
                            duplicates.append(_dup_record(df, j, match, "image content and landmarks"))
        dedupe_seconds = time.perf_counter() - t0 - key_seconds

        units = [MergeUnit(mu.input, mu.slice, tuple((np.flatnonzero(drop[offsets[i]:offsets[i + 1]])).tolist()))
                 for i, mu in enumerate(all_slices)]
        used = set(rows_in) | set(roots)
        report_weights = {s: w_by_source.get(s, 1.0) for s in sorted(used)}
        merged_from = []
        for k in range(len(inputs)):
            n = sum(r.rows for r, mu in zip(keyed, all_slices) if mu.input == k)
            srcs = sorted({s for r, mu in zip(keyed, all_slices) if mu.input == k for s in r.extra["sources"]})
            merged_from.append({"path": str(paths[k]), "rows": n, "sources": srcs})
        meta = mf.make_metadata({k: v for k, v in roots.items() if k in used}, command="merge",
                                merged_from=merged_from, source_weights=report_weights,
                                num_duplicates=len(duplicates))
        def post_run(staging: Path, results):
            if duplicates and not _single_file_wanted(out):
                write_jsonl_atomic(duplicates, staging / "_duplicates.jsonl")
            return results

        run = run_units(partial(_merge_write_task, inputs, w_by_source, meta), units, out, meta,
                        engine=eng, workers=workers, scheduler=scheduler, single_file=single_file,
                        describe=lambda i: units[i].slice.describe(), post_run=post_run, progress=progress)
    run.seconds = {"keys": key_seconds, "dedupe": dedupe_seconds, **run.seconds}
    if _single_file_wanted(out):
        write_sidecar(duplicates, duplicates_path_for(out))
    rows_out: dict = {}
    dropped_src: dict = {}
    for d in duplicates:
        dropped_src[d["dropped"]["source"]] = dropped_src.get(d["dropped"]["source"], 0) + 1
    for s, c in rows_in.items():
        if c - dropped_src.get(s, 0):
            rows_out[s] = c - dropped_src.get(s, 0)
    report = MergeReport({k: int(v) for k, v in rows_in.items()}, rows_out, report_weights, duplicates)
    return report, run


# --- command-line options shared by the commands ----------------------------------------------------------------------

def add_engine_arguments(parser, *, partition_rows: bool = True) -> None:
    """``--engine``, ``--workers``, ``--scheduler`` (and ``--partition-rows``, ``--single-file``) for a
    command that can run on an engine. With ``--engine dask``, ``-o`` names a dataset directory, or a
    single file when it ends in ``.parquet``."""
    g = parser.add_argument_group("scale-out (docs/scale-out.md)")
    g.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: this process (default); dask: partitions on a dask.distributed cluster "
                        "(pip install 'landmark-unify[dask]'). With dask, -o DIR writes a partitioned dataset "
                        "(hive layout source=/split=), -o FILE.parquet one file")
    g.add_argument("--workers", type=int, default=None,
                   help="dask: start a local cluster of this many worker processes (default 1)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help=f"dask: use the running cluster at this scheduler address (tcp://host:8786) instead of "
                        f"starting one; default ${SCHEDULER_ENV}")
    if partition_rows:
        g.add_argument("--partition-rows", type=int, default=DEFAULT_ROWS_PER_PARTITION, metavar="N",
                       help=f"faces per partition (default {DEFAULT_ROWS_PER_PARTITION}); bounds a worker's memory")
    g.add_argument("--single-file", default=None, metavar="FILE",
                   help="with a dataset output, also write the single-file form here")


def engine_kwargs(args) -> dict:
    """The keyword arguments of the ``*_distributed`` functions from :func:`add_engine_arguments` options."""
    kw = {"engine": args.engine, "workers": args.workers, "scheduler": args.scheduler,
          "single_file": args.single_file}
    if getattr(args, "partition_rows", None) is not None:
        kw["rows_per_partition"] = args.partition_rows
    return kw


def wants_engine(args) -> bool:
    """True when the command should take the distributed path: a non-local engine, or a dataset input."""
    inputs = [getattr(args, "input", None)] + list(getattr(args, "inputs", None) or [])
    return getattr(args, "engine", "local") != "local" or any(p and Path(p).is_dir() for p in inputs)
