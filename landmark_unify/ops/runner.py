"""Run an operation's units on an engine and commit the output: the one execution path of every operation.

An operation is a list of *units* (a batch of annotation files, a byte range of a list file, a slice of
manifest rows) and a picklable per-unit function ``task(index, unit) -> UnitResult`` that returns the
unit's manifest rows. :func:`run_units` runs the task on any engine and writes what it returns:

- ``output`` ending in ``.parquet``: one manifest file. With an in-process engine (``local``) the unit
  tables are streamed into it in unit order as they come (:class:`~landmark_unify.manifest.ManifestWriter`,
  constant memory, the write of one row group overlapping the next unit's work). With other engines the
  workers write their rows as parts of a hidden staged dataset, assembled into the file at the end.
- any other ``output``: a partitioned dataset (``docs/spec/manifest.md``), staged and renamed into place
  only when every unit has succeeded.

Either way a failed, interrupted (Ctrl-C) or terminated (SIGTERM) run leaves the output as it was, and
the same inputs give the same bytes. :func:`map_manifest` is the same for an operation that maps the rows
of an existing manifest (mine, relabel, image checks).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa

from .. import manifest as mf
from ..engines import RunOptions
from ..errors import ManifestError
from ..io import write_jsonl_atomic
from ..outputs import current, terminate_as_exception, transactional
from ..progress import Progress


@dataclass
class UnitResult:
    """What one unit produced. ``table`` holds its rows (manifest schema) until they are written; a
    worker of a remote engine writes them as parts and sends back only ``parts`` and ``runs``."""

    table: pa.Table | None
    skipped: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # numbers, summed over the units
    ids: np.ndarray | None = None  # uint64 sample_id keys in row order, where the run checks duplicates
    stats: object = None  # unit_stats of the rows written, where the run asks for them
    seconds: dict = field(default_factory=dict)
    index: int = 0
    rows: int = 0
    parts: list = field(default_factory=list)
    runs: list = field(default_factory=list)


@dataclass
class RunState:
    """What the metadata of an output may depend on: numbers summed over the units and the skip count."""

    sums: dict = field(default_factory=dict)
    skipped: int = 0
    rows: int = 0


@dataclass
class RunResult:
    """What a run did: where it wrote, how many rows, what it skipped, where time went."""

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
    metadata: dict = field(default_factory=dict)
    stats: list = field(default_factory=list)  # unit_stats of every unit, in unit order

    def summary(self) -> str:
        busy = ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items())
        return (f"{self.output}: {self.rows} faces in {self.units} units ({self.parts} parts), engine "
                f"{self.engine} x{self.workers}, {len(self.skipped)} skipped; {busy}")


def wants_file(output: str | Path) -> bool:
    """True when ``output`` names a single manifest file (``.parquet``), False for a dataset directory."""
    return str(output).endswith(".parquet")


_terminate_as_exception = terminate_as_exception  # SIGTERM ends a run like Ctrl-C (landmark_unify.outputs)


class _SeenIds:
    """sample_id keys seen so far: 8 bytes a face, no tables kept. The keys are held as a few sorted runs
    of growing size (like a binary counter), so a look-up is a binary search per run and adding
    keys costs O(log n) amortised per key."""

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def repeats(self, ids: np.ndarray) -> np.ndarray:
        """Rows of ``ids`` whose key was seen before (in an earlier unit or earlier in this one); adds
        the new keys."""
        ids = np.asarray(ids, np.uint64)
        if ids.size == 0:
            return np.zeros(0, np.intp)
        order = np.argsort(ids, kind="stable")
        s = ids[order]
        repeat = np.zeros(ids.size, bool)
        repeat[order[1:][s[1:] == s[:-1]]] = True  # a later copy within the unit
        for run in self.runs:  # sorted needles: numpy's search walks the run once
            pos = np.minimum(np.searchsorted(run, s), run.size - 1)
            repeat[order[run[pos] == s]] = True
        fresh = np.sort(ids[~repeat])
        if fresh.size:
            self.runs.append(fresh)
            while len(self.runs) > 1 and self.runs[-2].size <= self.runs[-1].size:
                last = self.runs.pop()
                self.runs[-1] = np.sort(np.concatenate([self.runs[-1], last]))
        return np.flatnonzero(repeat)


def check_rows(table: pa.Table, where: str) -> pa.Table:
    """The last check before a unit's rows are written (every operation, every engine): the values that
    ``validate`` checks row by row (points finite in float32 exactly where valid, box finite and not
    inverted, angles within +-180 degrees, weight finite and >= 0). An unforeseen bad value (a weight
    that overflows float32 after a merge, ...) is a ManifestError naming the unit and row, not an invalid
    output. Returns ``table``."""
    if table.num_rows == 0:
        return table
    for name, (bad, what) in mf.row_problems(table).items():
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise ManifestError(f"{where}, row {r}: column {name!r}: {what} ({int(bad.sum())} rows); nothing "
                                "was written")
    return table


def _task_with_stats(task: Callable, unit_stats: Callable, index: int, unit) -> UnitResult:
    res = task(index, unit)
    res.stats = unit_stats(res.table)
    return res


def _staged_task(task: Callable, staging: str, part_meta: Mapping, index: int, unit, describe=None) -> UnitResult:
    """On a worker: run the unit and write its rows as parts of the staged dataset."""
    res = task(index, unit)
    check_rows(res.table, describe or f"unit {index}")
    t0 = time.perf_counter()
    res.index, res.rows = index, res.table.num_rows
    res.parts, res.runs = mf.write_parts(res.table, staging, index, part_meta)
    res.table = None
    res.seconds["write"] = res.seconds.get("write", 0.0) + time.perf_counter() - t0
    return res


def run_units(task: Callable, units: Sequence, output: str | Path, metadata: Callable[[RunState], Mapping], *,
              run: RunOptions | None = None, describe: Callable[[int], str] | None = None,
              on_duplicate: Callable[[pa.Table, np.ndarray], list[dict]] | None = None,
              dataset_files: Callable[[RunState, list], Mapping[str, list]] | None = None,
              total_rows: int | None = None, unit_stats: Callable[[pa.Table], object] | None = None) -> RunResult:
    """Run ``task(index, unit) -> UnitResult`` for every unit on the engine of ``run`` (a
    :class:`~landmark_unify.engines.RunOptions`; default: local) and commit the output.

    metadata: ``metadata(state) -> dict``, the output's metadata from the summed unit numbers and the
    skip count (called with an empty state for the parts, and once more at the end). on_duplicate: when
    given, a row whose ``ids`` key was produced before (in unit order) is a duplicate:
    ``on_duplicate(table, rows)`` returns the skipped records of those rows of a unit's table (or raises),
    and the rows are dropped; the records follow every unit's own skipped records. dataset_files:
    ``dataset_files(state, skipped) -> {name: records}``, JSONL files committed inside a dataset output.
    ``run.single_file``: with a dataset output, also write the single-file form there. unit_stats: a picklable
    ``unit_stats(table)`` of each unit's rows as written (computed where the unit runs; again on the driver
    for a unit that lost duplicate rows), returned in ``RunResult.stats``: what a summary needs, without
    reading the output back. On any failure nothing is left at ``output``.
    """
    run = RunOptions.of(run)
    single_file = run.single_file
    if unit_stats is not None:
        task = partial(_task_with_stats, task, unit_stats)
    t_start = time.perf_counter()
    output = Path(output)
    acc = _Accounts(on_duplicate, unit_stats)
    seconds: dict[str, float] = {}
    bar = Progress(total=total_rows, desc=output.name, unit="faces", enabled=run.progress)
    with _terminate_as_exception():
        t0 = time.perf_counter()
        with run.start() as eng:
            seconds["engine_start"] = time.perf_counter() - t0
            if wants_file(output) and run.in_process:
                final, n_parts, final_meta = _commit_streamed(eng, task, units, output, metadata, describe, acc, bar,
                                                              seconds)
            else:
                final, n_parts, final_meta = _commit_staged(eng, task, units, output, metadata, describe, acc, bar,
                                                            seconds, single_file, dataset_files)
            rss = eng.worker_peak_rss()
            n_workers, eng_name = eng.workers, eng.name
    bar.close()
    results = acc.results
    for key in ("read", "process", "write"):
        vals = [r.seconds.get(key, 0.0) for r in results]
        if any(vals):
            seconds[f"tasks_{key}_sum"] = float(sum(vals))
    seconds["total"] = time.perf_counter() - t_start
    return RunResult(output=final, rows=sum(r.rows for r in results), units=len(units), parts=n_parts,
                     skipped=acc.skipped(), engine=eng_name, workers=n_workers, seconds=seconds, worker_peak_rss=rss,
                     extra=dict(acc.state.sums), metadata=final_meta, stats=[r.stats for r in results])


class _Accounts:
    """What both commits share: the units' results, the summed numbers and skips (:class:`RunState`), and
    the duplicate check across units (in unit order)."""

    def __init__(self, on_duplicate, unit_stats) -> None:
        self.on_duplicate, self.unit_stats = on_duplicate, unit_stats
        self.results: list[UnitResult] = []
        self.dup_records: list[dict] = []
        self.state = RunState()
        self.seen = _SeenIds() if on_duplicate is not None else None

    def repeats(self, res: UnitResult):
        return self.seen.repeats(_ids(res)) if self.seen is not None else ()

    def account(self, res: UnitResult) -> None:
        self.state.rows += res.rows
        self.state.skipped += len(res.skipped)
        for k, v in res.extra.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                self.state.sums[k] = self.state.sums.get(k, 0) + v

    def drop_rows(self, res: UnitResult, table: pa.Table, rows: np.ndarray) -> pa.Table:
        """Drop the duplicate ``rows`` of a unit's table: their records counted as skipped."""
        recs = self.on_duplicate(table, rows)
        self.dup_records.extend(recs)
        self.state.skipped += len(recs)
        keep = np.ones(table.num_rows, bool)
        keep[rows] = False
        res.ids = res.ids[keep]
        kept = mf.take_rows(table, keep)
        if self.unit_stats is not None:
            res.stats = self.unit_stats(kept)
        return kept

    def skipped(self) -> list[dict]:
        return [s for r in self.results for s in r.skipped] + self.dup_records


def _commit_streamed(eng, task, units, output: Path, metadata, describe, acc: _Accounts, bar, seconds: dict):
    """In this process, to one file: each unit's rows appended in unit order as they arrive."""
    t0 = time.perf_counter()
    with mf.ManifestWriter(output, lambda: metadata(acc.state)) as writer:
        for i, res in eng.map(task, units, describe):
            res.index = i
            table = res.table
            repeats = acc.repeats(res)
            if len(repeats):
                table = acc.drop_rows(res, table, repeats)
            res.rows, res.table = table.num_rows, None
            writer.write(check_rows(table, describe(i) if describe else f"unit {i}"))
            acc.account(res)
            acc.results.append(res)
            bar.update(res.rows)
        seconds["run"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        final_meta = dict(metadata(acc.state))
        writer.close(final_meta)
    seconds["commit"] = time.perf_counter() - t0
    return output, 0, final_meta


def _commit_staged(eng, task, units, output: Path, metadata, describe, acc: _Accounts, bar, seconds: dict,
                   single_file, dataset_files):
    """Units write parts of a staged dataset (on any engine); the dataset is published, or streamed into
    the file output (and ``single_file``)."""
    want_file = wants_file(output)
    t0 = time.perf_counter()
    staged = mf.StagedDataset(output, for_file=want_file)
    try:
        part_meta = metadata(RunState())
        bound = partial(_staged_task, task, str(staged.staging), part_meta)
        for _, res in eng.map(bound, units, describe):
            acc.results.append(res)
            bar.update(res.rows)
        seconds["run"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        acc.results.sort(key=lambda r: r.index)
        for res in acc.results:
            repeats = acc.repeats(res)
            if len(repeats):
                _restage(res, staged.staging, part_meta, partial(acc.drop_rows, rows=repeats))
            acc.account(res)
        final_meta = dict(metadata(acc.state))
        if not want_file and dataset_files is not None:
            for name, records in dataset_files(acc.state, acc.skipped()).items():
                if records:
                    write_jsonl_atomic(records, staged.staging / name)
        doc = staged.finalize([(r.parts, r.runs) for r in acc.results], final_meta)
        if want_file:
            mf.write_manifest_stream(mf.dataset.iter_doc_segments(staged.staging, doc), output, final_meta)
            staged.abort()
            final = output
        else:
            if single_file is not None:  # before publishing: a failure here leaves no dataset
                mf.write_manifest_stream(mf.dataset.iter_doc_segments(staged.staging, doc), single_file, final_meta)
            final = staged.publish()
    except BaseException:
        staged.abort()
        raise
    seconds["commit"] = time.perf_counter() - t0
    return final, sum(len(r.parts) for r in acc.results), final_meta


def _ids(res: UnitResult) -> np.ndarray:
    return res.ids if res.ids is not None else np.zeros(0, np.uint64)


def _restage(res: UnitResult, staging: Path, part_meta: Mapping, drop: Callable) -> None:
    """Staged path: read a unit's parts back, drop rows with ``drop(res, table)``, write them again."""
    tables = list(mf.dataset.iter_doc_segments(staging, {"parts": res.parts, "order": res.runs}))
    table = pa.concat_tables(tables) if tables else mf.SCHEMA.empty_table()
    kept = drop(res, table)
    for p in res.parts:
        (staging / p["path"]).unlink()
    res.parts, res.runs = mf.write_parts(kept, staging, res.index, part_meta)
    res.rows = kept.num_rows


# --- operations on the rows of an existing manifest -------------------------------------------------------------

def _frame_task(fn: Callable, metadata: Mapping, input_path: str, index: int, unit: mf.RowSlice) -> UnitResult:
    """Read a slice of rows, apply ``fn(df) -> (df, extra)`` (a pure per-row function), return the rows."""
    t0 = time.perf_counter()
    df = mf.dataframe_from_table(mf.read_slice(unit))
    df.attrs["manifest"] = dict(metadata)
    df.attrs["path"] = str(Path(input_path).resolve())
    t1 = time.perf_counter()
    out, extra = fn(df)
    extra = dict(extra)
    skipped = list(extra.pop("skipped", []))
    table = mf.table_from_dataframe(out) if len(out) else mf.SCHEMA.empty_table()
    return UnitResult(table, skipped=skipped, extra=extra,
                      seconds={"read": t1 - t0, "process": time.perf_counter() - t1})


@transactional
def map_manifest(input: str | Path, output: str | Path, fn: Callable, *,
                 metadata: Callable[[dict, dict], Mapping], run: RunOptions | None = None, overwrite: bool = False,
                 **engine) -> RunResult:
    """Apply a per-row function to a manifest (file or dataset), slice by slice (``run.rows_per_partition``
    rows each), on the engine of ``run`` (:class:`~landmark_unify.engines.RunOptions`, or its fields as
    keywords).

    fn: ``fn(df) -> (df_out, extra)``, picklable (a module-level function or a ``functools.partial`` of
    one), taking the manifest DataFrame of one slice (``attrs`` as :func:`manifest.read` sets them) and
    returning the rows to write plus a dict of numbers summed over slices (and ``"skipped"``: records).
    Each row must be treated independently of the others, which makes every engine's result the same.
    metadata: ``metadata(input_meta, sums) -> output metadata``. overwrite: allow ``output`` (or
    ``single_file``) to be ``input`` itself (refused otherwise, :func:`~landmark_unify.io.check_overwrite`).
    """
    run = RunOptions.of(run, **engine)
    current().manifest(output, inputs=[input], overwrite=overwrite)
    current().manifest(run.single_file, inputs=[input], overwrite=overwrite)
    slices, in_meta = mf.plan_slices(input, run.rows_per_partition)
    task = partial(_frame_task, fn, in_meta, str(input))
    return run_units(task, slices, output, lambda state: metadata(in_meta, state.sums), run=run,
                     describe=lambda i: slices[i].describe(), total_rows=sum(s.length for s in slices))

