"""The CPU time of each step of build-manifest's WFLW fast path, per input of ``bench_build_manifest.py``:
which steps depend on the values in the lines.

Each input (``--inputs``, default all) is written at N faces (default 65536: one row group); the steps run
on one thread, one after the other, as a build runs them for its units (32 MB units; the row group written
as the build's writer writes it), and each step's CPU time on that thread (``time.thread_time``) is taken.
``--repeat`` rounds go over all inputs in turn; the least time of each step is printed (the machine's other
load only adds time). The last column is the spread of each step across the inputs: (most - least) /
least.

* ``read+parse``: the reader: the bytes of each unit, pyarrow's CSV parse, the value checks of the lines,
  the face batch (``readers.read_unit``);
* ``rows``: the batch to manifest rows: the canonical map, the last value checks, sample ids, eye columns,
  the attribute columns, the table (``ops.build._batch_table``);
* ``stats``: the summary counts of the rows (``report.summary.table_stats``);
* ``ids+check``: the duplicate keys and the runner's last row check (``manifest.id_keys``,
  ``ops.runner.check_rows``);
* ``write``: the row group combined and encoded as the manifest writer does (``WRITE_OPTIONS``, into
  memory; the second of two passes, as the first pays for fresh memory); ``of it landmarks``: the same for
  the landmarks column alone.

Run: ``python benchmarks/profile_build_steps.py [N] [--inputs NAME ...] [--repeat R] [--tree CHECKOUT]``
(``--tree``: profile another checkout's code, e.g. a worktree of main, for a before/after).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench_build_manifest import INPUTS, REPO, on_error, real_lines, write_input

STEPS = ("read+parse", "rows", "stats", "ids+check", "write", "of it landmarks")


def profile(root: Path, errors: str = "raise") -> dict[str, float]:
    """Thread CPU seconds of each step over the whole input at ``root`` (``errors``: the build's on_error)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from landmark_unify import manifest as mf
    from landmark_unify.manifest.files import ROW_GROUP_SIZE, WRITE_OPTIONS
    from landmark_unify.ops import build
    from landmark_unify.ops.runner import check_rows
    from landmark_unify.readers import ErrorSink, read_unit
    from landmark_unify.report.summary import table_stats

    clock = time.thread_time
    out = dict.fromkeys(STEPS, 0.0)
    tables = []
    for unit in build.plan_units([f"wflw={root}"]):
        t0 = clock()
        batches, _ = read_unit(unit, errors, notes={}, arrow=True)
        t1 = clock()
        sink = ErrorSink(errors, unit.source, unit.kind)
        table = pa.concat_tables([build._batch_table(unit, b, "strict", sink, False) for b in batches])
        t2 = clock()
        table_stats(table)
        t3 = clock()
        mf.id_keys(table)
        check_rows(table, "profile")
        t4 = clock()
        out["read+parse"] += t1 - t0
        out["rows"] += t2 - t1
        out["stats"] += t3 - t2
        out["ids+check"] += t4 - t3
        tables.append(table)
    rows = pa.concat_tables(tables)
    for start in range(0, rows.num_rows, ROW_GROUP_SIZE):
        group = rows.slice(start, ROW_GROUP_SIZE)
        for step, part in (("write", group), ("of it landmarks", group.select(["landmarks"]))):
            for warm in (True, False):  # the first pass pays for fresh memory, whatever the values
                t0 = clock()
                combined = part.combine_chunks()
                with pq.ParquetWriter(pa.BufferOutputStream(), combined.schema, **WRITE_OPTIONS) as writer:
                    writer.write_table(combined, row_group_size=ROW_GROUP_SIZE)
                if not warm:
                    out[step] += clock() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size", nargs="?", type=int, default=65536, help="faces in each input (default 65536)")
    ap.add_argument("--inputs", nargs="+", choices=INPUTS, default=list(INPUTS))
    ap.add_argument("--repeat", type=int, default=3, help="rounds over the inputs (default 3)")
    ap.add_argument("--tree", type=Path, default=REPO, help="the checkout whose code is profiled (default this one)")
    args = ap.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    import landmark_unify

    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="profile_build_") as tmp:
        roots = {}
        for kind in args.inputs:
            roots[kind] = Path(tmp) / kind
            write_input(roots[kind], real_lines(kind), args.size)
        for _ in range(args.repeat):
            for kind, root in roots.items():
                got = profile(root, on_error(kind))
                acc = best.setdefault(kind, got)
                for step, v in got.items():
                    acc[step] = min(acc[step], v)
    print(f"code: {Path(landmark_unify.__file__).parent.parent}; {args.size} faces an input; least thread CPU "
          f"seconds of {args.repeat} rounds")
    kinds = list(best)
    print(f"{'step':<16}" + "".join(f"{k:>14}" for k in kinds) + f"{'spread':>9}")
    for step in (*STEPS, "total"):
        vals = [sum(v for s, v in best[k].items() if s != "of it landmarks") if step == "total" else best[k][step]
                for k in kinds]
        spread = (max(vals) - min(vals)) / min(vals) if min(vals) > 0 else 0.0
        print(f"{step:<16}" + "".join(f"{v:>14.3f}" for v in vals) + f"{spread:>8.0%}")


if __name__ == "__main__":
    main()
