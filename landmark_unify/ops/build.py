"""Build a manifest from dataset sources: plan units, process each (pure), write as they finish.

1. :func:`plan_units` enumerates deterministic work units (a batch of files, or a byte range of a big
   list file) for every source;
2. :func:`process_unit` is a pure function of one unit: it reads it, maps the points onto the canonical
   layout with :func:`landmark_unify.core.maps.to_canonical`, and returns a ``pyarrow.Table`` with the
   manifest schema plus the records it skipped;
3. :func:`build_manifest` runs the units on an engine (:mod:`landmark_unify.ops.runner`), drops repeated
   faces, writes the manifest (streamed in unit order), the skipped-record sidecar and the summary.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import manifest as mf
from ..core.eyes import source_eye_columns
from ..core.maps import check_policy, finite_points, to_canonical
from ..engines import RunOptions
from ..errors import ErrorPolicy, LandmarkUnifyError, ParseError
from ..io import write_sidecar
from ..manifest import skipped_path_for
from ..manifest.identity import sample_id_array, sample_ids  # noqa: F401  (importable from here as before)
from ..outputs import current, transactional
from ..readers import (
    ArrowColumn,
    ErrorSink,
    FaceBatch,
    LineCounter,
    Source,
    Unit,
    outside_root,
    parse_source,
    plan_source,
    read_unit,
    repeat_string,
    source_notes,
)
from ..report.summary import merge_stats, summary_text, table_stats
from .merge import parse_weights
from .runner import UnitResult, run_units, wants_file


@dataclass
class BuildReport:
    """What a build did. ``summary`` is the text printed at the end of ``build-manifest``."""

    out: Path
    num_faces: int
    faces_per_source: dict[str, int]
    skipped: list[dict]
    skipped_path: Path | None
    metadata: dict
    summary: str = ""
    units: int = 0
    extra: dict = field(default_factory=dict)


# --- sources and units ---------------------------------------------------------------------------------

def parse_sources(sources: Iterable[str | Source]) -> list[Source]:
    """Sources from ``--source`` strings or :class:`Source` objects; labels must be unique."""
    out = [parse_source(s) for s in sources]
    if not out:
        raise LandmarkUnifyError("no sources given: pass at least one --source KIND=ROOT")
    labels = [s.label for s in out]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise LandmarkUnifyError(f"source labels {dupes} are used twice; name them apart with LABEL:KIND=ROOT")
    return out


def source_weights(weights, sources: Sequence[Source]) -> dict[str, float]:
    """Per-source weights ``{label: w}`` from ``["SOURCE=W", ...]`` or a mapping; SOURCE is a source label
    or a reader kind (that kind's sources). Every source is listed (default 1). Raises on a name that is no
    source of the build, or a weight that is not a finite number >= 0."""
    given = parse_weights(weights)
    unknown = sorted(set(given) - {s.label for s in sources} - {s.kind for s in sources})
    if unknown:
        raise LandmarkUnifyError(f"--weight for {unknown}, which are not sources of this build; "
                                 f"sources: {[s.label for s in sources]}")
    return {s.label: float(given.get(s.label, given.get(s.kind, 1.0))) for s in sources}


def _apply_weights(table: pa.Table, weights: dict[str, float]) -> pa.Table:
    """``table`` with its ``weight`` column set to its source's weight."""
    if table.num_rows == 0:
        return table
    labels, inverse = np.unique(table.column("source").to_numpy(zero_copy_only=False), return_inverse=True)
    w = np.array([weights.get(label, 1.0) for label in labels], dtype=np.float32)[inverse]
    i = table.schema.get_field_index("weight")
    return table.set_column(i, table.schema.field(i), pa.array(w, type=pa.float32()))


def plan_units(sources: Iterable[str | Source], chunk_bytes: int | None = None, count_lines: bool = True) -> list[Unit]:
    """Deterministic work units of all sources, in order (sources as given, units in file order).
    ``count_lines=False``: see :func:`~landmark_unify.readers.plan_source` (for runs in one process)."""
    units: list[Unit] = []
    for s in parse_sources(sources):
        units.extend(plan_source(s, chunk_bytes, count_lines))
    return units


# --- one unit -------------------------------------------------------------------------------------------

def process_unit(unit: Unit, policy: str = "strict", on_error: str = "raise",
                 check_images: bool = False, allow_outside_root: bool = False,
                 line_counter=None) -> tuple[pa.Table, list[dict]]:
    """Read one unit and turn it into manifest rows.

    Returns ``(table, skipped)``: a ``pyarrow.Table`` with :data:`manifest.SCHEMA` (no schema metadata)
    and the skipped records (dicts with source, kind, path, line, key, field, reason). Pure: the result
    depends only on the arguments and the files the unit names. Raises the first ParseError under
    ``on_error='raise'``. An image path that leaves the source root is such an error unless
    ``allow_outside_root``. What the reader repaired or left out by design (:meth:`ErrorSink.note`) rides
    in the table's schema metadata under :data:`NOTES_KEY` (see :func:`unit_notes`). ``line_counter``:
    for units planned without counting lines (:func:`plan_units` with ``count_lines=False``).
    """
    check_options(policy)
    notes: dict[str, int] = {}
    batches, skipped = read_unit(unit, on_error, notes=notes, line_counter=line_counter, arrow=True)
    sink = ErrorSink(on_error, unit.source, unit.kind)
    tables = [t for t in (_batch_table(unit, b, policy, sink, check_images, allow_outside_root) for b in batches) if t.num_rows]
    skipped = skipped + sink.skipped
    table = mf.SCHEMA.empty_table() if not tables else tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    if notes:
        table = table.replace_schema_metadata({NOTES_KEY: json.dumps({f"{unit.source}: {k}": v for k, v in notes.items()})})
    return table, skipped


#: Schema-metadata key of a unit table's reader notes (removed before the rows are written).
NOTES_KEY = b"landmark_unify.reader_notes"


def unit_notes(table: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    """``(table without its notes, {what: count})`` of a table from :func:`process_unit`."""
    raw = (table.schema.metadata or {}).get(NOTES_KEY)
    if raw is None:
        return table, {}
    return table.replace_schema_metadata(None), {k: int(v) for k, v in json.loads(raw).items()}


def _where(unit: Unit, b: FaceBatch, i: int) -> dict:
    i = int(i)
    return {"path": str(Path(unit.root) / b.origin_file[i]), "line": b.origin_line[i], "key": b.origin_key[i]}


def _masked(values: np.ndarray, typ: pa.DataType) -> pa.Array:
    values = np.asarray(values, dtype=np.float64)
    mask = ~np.isfinite(values)
    if mask.all():
        return pa.nulls(values.shape[0], type=typ)
    filled = np.where(mask, 0, values)
    if not mask.any():
        mask = None
    if pa.types.is_boolean(typ):
        return pa.array(filled != 0, type=typ, mask=mask)
    if pa.types.is_integer(typ):
        return pa.array(filled.astype(np.int64), mask=mask).cast(typ)
    return pa.array(filled.astype(np.float32), type=typ, mask=mask)


def _strings(values, typ: pa.DataType | None = None) -> pa.Array:
    """A batch column (list or :class:`ArrowColumn`) as an Arrow array."""
    if isinstance(values, ArrowColumn):
        return values.array
    return pa.array(values, type=typ or pa.string())


def _choice(mask: np.ndarray, yes: str, no: str | None) -> pa.Array:
    """``yes`` where ``mask``, else ``no`` (None: null), as a string array."""
    n = mask.shape[0]
    if mask.all():
        return repeat_string(yes, n)
    if not mask.any():
        return pa.nulls(n, type=pa.string()) if no is None else repeat_string(no, n)
    return pc.if_else(pa.array(mask), yes, pa.scalar(no, type=pa.string()))  # one pass, whatever the mix


def _batch_table(unit: Unit, b: FaceBatch, policy: str, sink: ErrorSink, check_images: bool,
                 allow_outside_root: bool = False) -> pa.Table:
    pts98, valid98 = to_canonical(b.points, b.schema, policy)
    src_ok = finite_points(b.points)
    keep = src_ok.any(1) & valid98.any(1)
    for i in np.flatnonzero(~keep):
        w = _where(unit, b, i)
        sink(ParseError(w["path"], f"no valid landmarks under policy {policy!r} (schema {b.schema})",
                        line=w["line"], key=w["key"], field="landmarks"))
    if not allow_outside_root:
        for i in np.flatnonzero(keep & outside_root(b.image_path)):
            w = _where(unit, b, i)
            sink(ParseError(w["path"], f"image path {b.image_path[i]!r} leaves the source root {unit.root} "
                                       "(pass --allow-outside-root to accept it)",
                            line=w["line"], key=w["key"], field="image_path"))
            keep[i] = False
    size = b.image_size
    if check_images:
        size = size.copy()
        cache: dict[str, tuple[int, int] | ParseError] = {}
        for i in np.flatnonzero(keep):
            rel_img = b.image_path[i]
            if rel_img not in cache:
                cache[rel_img] = image_size(Path(unit.root) / rel_img)
            got = cache[rel_img]
            if isinstance(got, ParseError):
                # located at the face's annotation (file, line or key); the reason names the image
                w = _where(unit, b, i)
                sink(ParseError(w["path"], f"{got.reason}: {got.path}", line=w["line"], key=w["key"], field="image"))
                keep[i] = False
            else:
                size[i] = got
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return mf.SCHEMA.empty_table()

    def sel(a):  # the kept rows (the array itself when all are kept, the usual case: no copy)
        return a if idx.size == len(b) else a[idx]

    pts98, valid98 = sel(pts98), sel(valid98)
    box_given = sel(b.bbox)
    given = np.isfinite(box_given).all(1)
    bbox = box_given if given.all() else _bbox(box_given, sel(b.points), sel(src_ok))
    pose = sel(b.pose)
    pose_known = np.isfinite(pose).all(1)
    pose = np.where(pose_known[:, None], pose, np.nan)
    ok = _guard(unit, b, idx, pts98, valid98, bbox, given, pose, size, sink)
    if not ok.all():  # an unforeseen bad value: an error (or a counted skip), never an invalid manifest
        idx, pts98, valid98, bbox, given, pose = idx[ok], pts98[ok], valid98[ok], bbox[ok], given[ok], pose[ok]
        pose_known = pose_known[ok]
        if idx.size == 0:
            return mf.SCHEMA.empty_table()
    attrs = sel(b.attributes)
    sz = sel(size)

    def take(seq):  # the batch's own column when every face is kept (the usual case)
        if idx.size == len(b):
            return seq
        if isinstance(seq, ArrowColumn):
            return seq.take(idx)
        return [seq[i] for i in idx.tolist()]

    n = idx.size
    split = take(b.split)
    cols = {
        "sample_id": sample_id_array(unit.source, split, take(b.identity)),
        "source": repeat_string(unit.source, n),
        "split": _strings(split),
        "image_path": _strings(take(b.image_path)),
        "landmarks": pts98,
        "valid": valid98,
        "bbox": bbox,
        "bbox_source": _choice(given, "given", "landmarks"),
        "pitch": _masked(pose[:, 0], pa.float32()),
        "yaw": _masked(pose[:, 1], pa.float32()),
        "roll": _masked(pose[:, 2], pa.float32()),
        "pose_source": _choice(pose_known, "dataset", None),
        "source_schema": repeat_string(b.schema, n),
        "origin_file": _strings(take(b.origin_file)),
        "origin_line": _strings(take(b.origin_line), pa.int32()),
        "origin_key": _strings(take(b.origin_key)),
        "image_width": _masked(sz[:, 0], pa.int32()),
        "image_height": _masked(sz[:, 1], pa.int32()),
    }
    for j, name in enumerate(mf.ATTRIBUTE_COLUMNS):
        cols[name] = _masked(attrs[:, j], pa.bool_())
    # EAR in the source layout: the canonical points cannot carry it for 68-point sources (docs/guides/curation.md)
    cols.update(source_eye_columns(sel(b.points), b.schema))
    return mf.table_from_columns(cols)


def _guard(unit: Unit, b: FaceBatch, idx: np.ndarray, pts98: np.ndarray, valid98: np.ndarray, bbox: np.ndarray,
           given: np.ndarray, pose: np.ndarray, size: np.ndarray, sink: ErrorSink) -> np.ndarray:
    """The last check before rows become a table: the rule every row of a manifest passes
    (:func:`landmark_unify.manifest.face_rule`, on the values as the manifest will store them). Returns the
    rows that pass; each other row goes to ``sink`` as a ParseError naming its annotation and the field."""
    paths = b.image_path if idx.size == len(b) else [b.image_path[i] for i in idx.tolist()]
    rule = mf.face_rule(pts98, valid98, bbox, given=given, pose=pose, image_size=size[idx],
                        attributes=b.attributes[idx], image_path=paths)
    pose_bad = rule.pop("pitch")[0] | rule.pop("yaw")[0] | rule.pop("roll")[0]
    rule["pose"] = (pose_bad, "an angle is beyond +-180 degrees")
    ok = np.ones(idx.size, bool)
    for field_name in ("landmarks", "bbox", "pose", "image_size", "attributes", "image_path"):
        bad, reason = rule[field_name]
        for j in np.flatnonzero(bad & ok):
            w = _where(unit, b, int(idx[j]))
            sink(ParseError(w["path"], reason, line=w["line"], key=w["key"], field=field_name))
            ok[j] = False
    return ok


def _bbox(given: np.ndarray, points: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """(N, 4): the given box where it is finite, else the extent of the valid source points."""
    has = np.isfinite(given).all(1)
    if has.all():
        return given
    x = np.where(ok, points[..., 0], np.nan)
    y = np.where(ok, points[..., 1], np.nan)
    with np.errstate(all="ignore"):
        extent = np.stack([np.nanmin(x, 1), np.nanmin(y, 1), np.nanmax(x, 1), np.nanmax(y, 1)], 1)
    return np.where(has[:, None], given, extent)


def image_size(path: Path) -> tuple[int, int] | ParseError:
    """``(width, height)`` of the image as :func:`landmark_unify.images.read_image` decodes it (upright by its
    EXIF orientation, as every command sees it), or the ParseError of a missing, corrupt, truncated or too
    large image. The image is decoded whole: the check of ``--check-images``."""
    from ..images import ImageError, read_image

    try:
        img = read_image(path, channel_order="bgr")
    except ImageError as exc:
        return ParseError(path, exc.reason, field="image")
    return int(img.shape[1]), int(img.shape[0])


# --- the whole build ------------------------------------------------------------------------------------

def check_options(policy: str, on_error: str | None = None) -> None:
    """Raise LandmarkUnifyError on a policy (or on_error) that is not one of the valid values."""
    if on_error is not None:
        ErrorPolicy.check(on_error)
    check_policy(policy)


def build_metadata(sources: Sequence[Source], command: str | None, *, policy: str, on_error: str,
                   check_images: bool, num_skipped: int, **extra) -> dict:
    """The manifest metadata of a build (the same for every engine)."""
    return mf.make_metadata({s.label: s.root for s in sources}, command, policy=policy,
                            sources=[s.spec() for s in sources], on_error=on_error,
                            check_images=bool(check_images), num_skipped=num_skipped, **extra)


def write_skipped(skipped: Sequence[dict], out: str | os.PathLike) -> Path | None:
    """Write the skipped records to ``OUT``'s sidecar (see :func:`skipped_path_for`), or remove a stale
    sidecar when there are none. Returns the sidecar written, or None."""
    return write_sidecar(skipped, skipped_path_for(out))


def duplicate_record(on_error: str, source: str, sample_id: str, file: str, line, key) -> dict:
    """The skipped record of a face whose ``sample_id`` was already produced; raises it under
    ``on_error='raise'``."""
    err = ParseError(file, f"duplicate face: sample_id {sample_id} was already produced", line=line, key=key,
                     field="sample_id")
    return ErrorPolicy(on_error, source=source, kind=None)(err)


def _build_task(policy: str, on_error: str, check_images: bool, weights: dict[str, float] | None,
                allow_outside_root: bool, index: int, unit: Unit, line_counter=None) -> UnitResult:
    """One unit of a build: its rows (weights applied), skipped records and sample_id keys."""
    t0 = time.perf_counter()
    extra = {"allow_outside_root": True} if allow_outside_root else {}
    if line_counter is not None:
        extra["line_counter"] = line_counter
    table, skipped = process_unit(unit, policy=policy, on_error=on_error, check_images=check_images, **extra)
    table, notes = unit_notes(table)
    if weights:
        table = _apply_weights(table, weights)
    return UnitResult(table, skipped=list(skipped), ids=mf.id_keys(table), seconds={"process": time.perf_counter() - t0},
                      extra={f"{NOTE_PREFIX}{k}": v for k, v in notes.items()})


NOTE_PREFIX = "note:"


def reader_notes(sums: Mapping) -> dict[str, int]:
    """The reader notes summed over a run's units (``{what: count}``, sorted)."""
    return {k[len(NOTE_PREFIX):]: int(v) for k, v in sorted(sums.items()) if k.startswith(NOTE_PREFIX) and v}


def _duplicates(on_error: str, table: pa.Table, rows: np.ndarray) -> list[dict]:
    cols = {c: table.column(c).to_pylist() for c in ("sample_id", "source", "origin_file", "origin_line", "origin_key")}
    return [duplicate_record(on_error, cols["source"][i], cols["sample_id"][i], cols["origin_file"][i],
                             cols["origin_line"][i], cols["origin_key"][i]) for i in rows.tolist()]


@transactional
def build_manifest(sources: Iterable[str | Source], out, policy: str = "strict", on_error: str = "raise",
                   check_images: bool = False, command: str | None = None, chunk_bytes: int | None = None,
                   weights=None, allow_outside_root: bool = False, overwrite: bool = False,
                   run: RunOptions | None = None, **engine) -> BuildReport:
    """Read the sources, map every face onto the canonical layout and write the manifest ``out``.

    sources: ``KIND=ROOT`` / ``LABEL:KIND=ROOT`` strings or :class:`~landmark_unify.readers.Source`.
    policy: ``strict`` or ``extended`` (see :mod:`landmark_unify.core.maps`). on_error: ``raise`` stops at
    the first bad record (nothing is written); ``skip`` leaves bad records out, writes the rest and lists
    the skipped ones in ``OUT``'s ``.skipped.jsonl`` sidecar (``_skipped.jsonl`` inside a dataset) and the
    summary. check_images: decode every image (missing or corrupt ones are errors) and fill image_width /
    image_height. weights: per-source training weights for the ``weight`` column, ``{"lapa": 2}`` or
    ``["lapa=2"]`` by source label or reader kind (default 1). run: where the units run, a
    :class:`~landmark_unify.engines.RunOptions` (or its fields as keywords: ``engine="dask"``,
    ``workers=4``, ``single_file=...``, ``progress=False``). ``out`` is a manifest file (``.parquet``) or a
    partitioned dataset directory; ``run.single_file``: with a dataset, also write the file form there.
    allow_outside_root: accept image paths that leave their source root (``../``, absolute); by default each
    is an error (or a counted skip). overwrite: allow ``out`` to be one of the sources' annotation files.
    """
    check_options(policy, on_error)
    run = RunOptions.of(run, **engine)
    single_file = run.single_file
    srcs = parse_sources(sources)
    w_by_label = source_weights(weights, srcs) if weights else None
    # in this process the lines of big list files are counted as their units are read (no pass over the
    # files before the first unit starts); other engines get units that carry their line numbers
    counter = None
    units = plan_units(srcs, chunk_bytes, count_lines=not run.in_process)
    if any(u.start is not None and u.first_line is None for u in units):
        counter = LineCounter(units)
    extra = {"source_weights": dict(sorted(w_by_label.items()))} if w_by_label else {}
    notes = {s.label: n for s in srcs if (n := source_notes(s))}  # files read or left out, 1-based coordinates
    if notes:
        extra["reader_notes"] = notes
    if allow_outside_root:
        extra["allow_outside_root"] = True
    annotations = [Path(u.root) / f for u in units for f in u.files]
    tx = current()
    tx.manifest(out, inputs=annotations, overwrite=overwrite, what="a source annotation file")
    tx.manifest(single_file, inputs=annotations, overwrite=overwrite, what="a source annotation file")

    def metadata(state) -> dict:
        notes = reader_notes(state.sums)  # what the readers repaired or left out by design, counted
        return build_metadata(srcs, command, policy=policy, on_error=on_error, check_images=check_images,
                              num_skipped=state.skipped, **extra, **({"by_design": notes} if notes else {}))

    def dataset_files(state, skipped) -> dict:
        return {"_skipped.jsonl": skipped}

    task = partial(_build_task, policy, on_error, bool(check_images), w_by_label, bool(allow_outside_root),
                   line_counter=counter)
    result = run_units(task, units, out, metadata, run=run, describe=lambda i: units[i].describe(),
                       on_duplicate=partial(_duplicates, on_error), dataset_files=dataset_files,
                       unit_stats=table_stats)
    if wants_file(out):
        side = write_skipped(result.skipped, out)
    else:
        side = Path(result.output) / "_skipped.jsonl" if result.skipped else None
    stats = merge_stats(result.stats)  # counted as the units were written: the output is not read back
    per_source = {s.label: int(stats["sources"].get(s.label, {}).get("faces", 0)) for s in srcs}
    report = BuildReport(Path(result.output), result.rows, per_source, result.skipped, side, result.metadata,
                         units=len(units), extra={"run": result})
    # the summary prints the metadata's reader_notes and by_design, so inspect shows the same text
    report.summary = summary_text(stats, result.metadata, result.skipped, title=str(result.output), sidecar=side)
    if result.engine != "local":
        report.summary += "\n" + result.summary()
    return report
