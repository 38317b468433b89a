"""Merging manifests: per-source weights and duplicate detection, on any engine.

:func:`merge_manifests` concatenates manifests (files or datasets) in priority order, drops the faces
that occur twice (the same ``sample_id``, or the same image content with landmarks that agree) and
multiplies each row's weight by its source's weight.

Phase 1 (per slice of rows, on the engine): a 64-bit key of each row's sample_id and of its image content
(the image files are read and hashed there, the expensive part). Then the duplicate rules run on those
keys; only the rows that share an image are read back to compare their landmarks. Phase 2 (per slice, on
the engine): the slice without its dropped rows, weights applied, written.
"""
from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from .. import manifest as mf
from ..engines import RunOptions
from ..errors import ManifestError
from ..io import write_sidecar
from ..manifest import (
    RowSlice,
    duplicates_path_for,
    hash_key,
    id_keys,
    plan_slices,
    read_slice,
    rebased_roots,
    take_rows,
)
from ..outputs import current, transactional
from .runner import UnitResult, run_units, wants_file

#: Two faces on the same image are the same face when the mean distance of their common valid points
#: is at most this fraction of the face size (the larger bbox side).
DUPLICATE_TOLERANCE = 0.05


@dataclass
class MergeReport:
    """What :func:`merge_manifests` did: rows in and out per source, and the duplicates it dropped."""

    rows_in: dict[str, int]
    rows_out: dict[str, int]
    weights: dict[str, float]
    duplicates: list[dict] = field(default_factory=list)
    run: object = None
    excluded: list[dict] = field(default_factory=list)

    @property
    def summary(self) -> str:
        lines = [f"{'source':<16} {'in':>8} {'out':>8} {'weight':>8}"]
        for s in sorted(self.rows_in):
            lines.append(f"{s:<16} {self.rows_in[s]:>8} {self.rows_out.get(s, 0):>8} {self.weights.get(s, 1.0):>8.3g}")
        kinds = {}
        for d in self.duplicates:
            kinds[d["reason"]] = kinds.get(d["reason"], 0) + 1
        by_reason = ", ".join(f"{n} by {reason}" for reason, n in sorted(kinds.items()))
        lines.append(f"duplicates dropped: {len(self.duplicates)}" + (f" ({by_reason})" if kinds else ""))
        if self.excluded:
            why: dict = {}
            for e in self.excluded:
                head = e["reason"].split(":", 1)[0]
                why[head] = why.get(head, 0) + 1
            lines.append(f"excluded: {len(self.excluded)} (" + ", ".join(f"{n} {r}" for r, n in sorted(why.items()))
                         + "); each id and reason in OUT.excluded.jsonl")
        return "\n".join(lines)


def parse_weights(items) -> dict[str, float]:
    """``["wflw=1", "lapa=2.5"]`` (or a mapping) -> ``{"wflw": 1.0, "lapa": 2.5}``; weights must be >= 0."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            name, sep, value = str(item).partition("=")
            if not sep or not name.strip():
                raise ManifestError(f"bad weight {item!r}: expected SOURCE=WEIGHT")
            pairs.append((name.strip(), value))
    out = {}
    for name, value in pairs:
        try:
            w = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ManifestError(f"bad weight for source {name!r}: {value!r} is not a number") from None
        if not np.isfinite(w) or w < 0 or w > float(np.finfo(np.float32).max):
            raise ManifestError(f"bad weight for source {name!r}: {value} (must be finite in float32 and >= 0)")
        out[name] = w
    return out


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str | None:
    """SHA-1 of a file's bytes, or None when it cannot be read."""
    h = hashlib.sha1()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def same_face(lm_a: np.ndarray, valid_a: np.ndarray, box_a: np.ndarray, lm_b: np.ndarray, valid_b: np.ndarray,
              box_b: np.ndarray, tolerance: float = DUPLICATE_TOLERANCE) -> bool:
    """Whether two annotations of one image are the same face: the mean distance of their common valid
    points (at least 3; else the bbox centres) is at most ``tolerance`` times the larger bbox side."""
    size = max(float(np.max(box_a[2:] - box_a[:2])), float(np.max(box_b[2:] - box_b[:2])), 1.0)
    common = valid_a & valid_b
    if common.sum() >= 3:
        d = np.linalg.norm(lm_a[common] - lm_b[common], axis=-1).mean()
    else:
        d = np.linalg.norm((box_a[:2] + box_a[2:]) / 2 - (box_b[:2] + box_b[2:]) / 2)
    return bool(d <= tolerance * size)


def resolve_root(root: str, manifest: Path) -> Path:
    p = Path(root)
    return p if p.is_absolute() else (manifest.resolve().parent / p).resolve()


def dup_record(df, i: int, kept: int, reason: str) -> dict:
    def where(j):
        line = df["origin_line"].iloc[j]
        return {"sample_id": df["sample_id"].iloc[j], "source": df["source"].iloc[j],
                "image_path": df["image_path"].iloc[j], "origin_file": df["origin_file"].iloc[j],
                "origin_line": None if pd.isna(line) else int(line)}

    return {"reason": reason, "dropped": where(i), "kept": where(kept)}


@dataclass(frozen=True)
class MergeUnit:
    """Rows of input manifest number ``input`` (in priority order); ``drop``: row offsets within the
    slice to leave out (phase 2 only)."""

    input: int
    slice: RowSlice
    drop: tuple[int, ...] = ()


def _merge_keys_task(inputs: Sequence[tuple[str, dict]], hash_images: bool, exclude: frozenset, index: int,
                     unit: MergeUnit) -> UnitResult:
    """Phase 1 on a worker: per row the sample_id key and the image-content key (SHA-1 of the image file,
    or its resolved path when unreadable, the keys of the duplicate rules), as uint64."""
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
                digests[p] = hash_key(file_digest(p) or f"path:{Path(p).resolve()}")
            hkeys[i], has[i] = digests[p], True
    counts = dict(Counter(df["source"].tolist()))  # faces per source, in order of first appearance
    excluded = df["sample_id"].isin(exclude).to_numpy(bool) if exclude else np.zeros(n, bool)
    return UnitResult(None, index=index, rows=n, ids=id_keys(table),
                      seconds={"read": 0.0, "process": time.perf_counter() - t0},
                      extra={"hkeys": hkeys, "has_image": has, "sources": counts, "excluded": excluded})


def _merge_write_task(inputs: Sequence[tuple[str, dict]], weights: Mapping[str, float], index: int,
                      unit: MergeUnit) -> UnitResult:
    """Phase 2: the slice without its dropped rows, weights multiplied."""
    t0 = time.perf_counter()
    path, meta = inputs[unit.input]
    df = mf.dataframe_from_table(read_slice(unit.slice))
    df.attrs["manifest"] = meta
    df.attrs["path"] = str(Path(path).resolve())
    keep = np.ones(len(df), bool)
    keep[list(unit.drop)] = False
    merged = df[keep].reset_index(drop=True)
    if len(merged):
        factor = merged["source"].map(lambda s: weights.get(s, 1.0)).to_numpy(np.float64)
        with np.errstate(over="ignore"):  # an overflow to inf is refused by the runner's last check
            merged["weight"] = (merged["weight"].to_numpy(np.float64) * factor).astype(np.float32)
    table = mf.table_from_dataframe(merged) if len(merged) else mf.SCHEMA.empty_table()
    return UnitResult(table, seconds={"process": time.perf_counter() - t0})


@dataclass
class MergeKeys:
    """Phase 1's keys of every input row, in global row order (inputs in priority order)."""

    ids: np.ndarray  # uint64 sample_id keys
    hkeys: np.ndarray  # uint64 image-content keys
    has_image: np.ndarray  # bool
    excluded: np.ndarray  # bool: the row's sample_id is listed in ``exclude``
    offsets: np.ndarray  # row offset of each unit
    rows_in: dict  # faces per source
    units: list  # the per-unit results, in unit order


def _collect_keys(eng, inputs, all_slices, hash_images: bool, roots: Mapping, exclude=()) -> MergeKeys:
    """Phase 1 on the engine: the sample_id and image-content keys of every row, and whether it is excluded."""
    ex = frozenset(exclude or ())
    keyed = sorted((r for _, r in eng.map(partial(_merge_keys_task, inputs, hash_images, ex), all_slices,
                                          lambda i: all_slices[i].slice.describe())), key=lambda r: r.index)
    ids = np.concatenate([r.ids for r in keyed]) if keyed else np.zeros(0, np.uint64)
    hk = np.concatenate([r.extra["hkeys"] for r in keyed]) if keyed else np.zeros(0, np.uint64)
    has = np.concatenate([r.extra["has_image"] for r in keyed]) if keyed else np.zeros(0, bool)
    excluded = np.concatenate([r.extra["excluded"] for r in keyed]) if keyed else np.zeros(0, bool)
    rows_in = dict.fromkeys(roots, 0)
    for r in keyed:
        for s, c in r.extra["sources"].items():
            rows_in[s] = rows_in.get(s, 0) + c
    return MergeKeys(ids, hk, has, excluded, np.cumsum([0] + [r.rows for r in keyed]), rows_in, keyed)


def _rows_reader(all_slices, offsets):
    def rows_frame(rows: np.ndarray):
        """Manifest rows by global index (sorted; few: duplicates and rows sharing an image)."""
        unit_of = np.searchsorted(offsets, rows, side="right") - 1
        frames = [mf.dataframe_from_table(take_rows(read_slice(all_slices[u].slice), rows[unit_of == u] - offsets[u]))
                  for u in np.unique(unit_of)]
        return pd.concat(frames, ignore_index=True)

    return rows_frame


def _apply_rules(keys: MergeKeys, rows_frame, hash_images: bool, tolerance: float,
                 exclude: Mapping[str, str] | None = None) -> tuple[np.ndarray, list[dict], list[dict]]:
    """The rows to drop: (0) ids listed in ``exclude`` (id -> reason), (1) a repeated sample_id, (2) the same
    image content with landmarks that agree. Returns the drop mask, the duplicate records and the exclusion
    records."""
    ids, hk, has = keys.ids, keys.hkeys, keys.has_image
    drop = np.zeros(ids.size, bool)
    duplicates: list[dict] = []
    excluded: list[dict] = []
    # (0) excluded by an audit, a duplicates file or a list (--exclude, --drop-leaks)
    if exclude:
        hit = np.flatnonzero(keys.excluded)
        if hit.size:
            df = rows_frame(hit)
            for j, g in enumerate(hit.tolist()):
                sid = str(df["sample_id"].iloc[j])
                reason = exclude.get(sid, "")
                drop[g] = True
                excluded.append({"sample_id": sid, "source": str(df["source"].iloc[j]),
                                 "split": str(df["split"].iloc[j]), "image_path": str(df["image_path"].iloc[j]),
                                 "reason": reason})
    # (1) the same sample_id again: every repeat after the first
    _, first = np.unique(ids, return_index=True)
    rep = np.ones(ids.size, bool)
    rep[first] = False
    rep_rows = np.flatnonzero(rep & ~drop)
    if rep_rows.size:
        first_of = {int(k): int(i) for k, i in zip(ids[first], first)}
        kept_rows = np.array([first_of[int(ids[i])] for i in rep_rows])
        both = np.unique(np.concatenate([rep_rows, kept_rows]))
        df = rows_frame(both)
        pos = {int(g): j for j, g in enumerate(both)}
        for i, k in zip(rep_rows.tolist(), kept_rows.tolist()):
            drop[i] = True
            duplicates.append(dup_record(df, pos[i], pos[k], "sample_id"))
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
                        duplicates.append(dup_record(df, j, match, "image content and landmarks"))
    return drop, duplicates, excluded


def _write_merged(opts: RunOptions, inputs, paths, all_slices, keys: MergeKeys, drop, duplicates, excluded, roots,
                  w_by_source, out: Path, *, metadata, exclusion_meta):
    """Phase 2 on the engine: every slice without its dropped rows, weights applied, written with the
    metadata and the sidecars (``OUT.duplicates.jsonl``, ``OUT.excluded.jsonl``)."""
    offsets = keys.offsets
    units = [MergeUnit(mu.input, mu.slice, tuple((np.flatnonzero(drop[offsets[i]:offsets[i + 1]])).tolist()))
             for i, mu in enumerate(all_slices)]
    used = set(keys.rows_in) | set(roots)
    report_weights = {s: w_by_source.get(s, 1.0) for s in sorted(used)}
    merged_from = []
    for k in range(len(inputs)):
        n = sum(r.rows for r, mu in zip(keys.units, all_slices) if mu.input == k)
        srcs = sorted({s for r, mu in zip(keys.units, all_slices) if mu.input == k for s in r.extra["sources"]})
        merged_from.append({"path": str(paths[k]), "rows": n, "sources": srcs})
    outside = {"allow_outside_root": True} if any(m.get("allow_outside_root") for _, m in inputs) else {}
    extra = {"excluded": exclusion_meta} if exclusion_meta else {}
    meta = mf.make_metadata({k: v for k, v in roots.items() if k in used}, command="merge",
                            merged_from=merged_from, source_weights=report_weights,
                            num_duplicates=len(duplicates), **outside, **extra)
    meta.update(metadata or {})
    files = {"_duplicates.jsonl": duplicates}
    if excluded:
        files["_excluded.jsonl"] = excluded
    run = run_units(partial(_merge_write_task, inputs, w_by_source), units, out, lambda state: meta,
                    run=opts, describe=lambda i: units[i].slice.describe(),
                    dataset_files=lambda state, skipped: files,
                    total_rows=int(offsets[-1]) - int(drop.sum()))
    if wants_file(out):
        write_sidecar(duplicates, duplicates_path_for(out))
        write_sidecar(excluded, excluded_path_for(out))
    return run, report_weights


def excluded_path_for(out) -> Path:
    """The sidecar listing every row an exclusion dropped, with its reason: ``OUT.excluded.jsonl``."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".parquet") + ".excluded.jsonl")


@transactional
def merge_manifests(paths, output: str | os.PathLike, weights=None, *, hash_images: bool = True,
                    tolerance: float | None = None, metadata: Mapping | None = None, overwrite: bool = False,
                    exclude: Mapping[str, str] | None = None, exclusion_meta: Mapping | None = None,
                    run: RunOptions | None = None, **engine) -> MergeReport:
    """Merge manifests (files or datasets, in priority order: of two rows that are the same face the
    earlier is kept) into ``output`` (a ``.parquet`` file or a dataset directory), on any engine.

    weights: per-source weight (mapping or ``["SOURCE=W", ...]``); a row's weight becomes its own weight
    times its source's (default 1); sources named must exist. Duplicates dropped: (1) a repeated
    ``sample_id``; (2) with ``hash_images``, two rows whose images have the same content (SHA-1 of the
    file; where an image cannot be read, the same resolved path) and whose landmarks agree
    (:func:`same_face`, ``tolerance``). A source label used by two inputs must have the same root.
    The dropped duplicates go to ``OUT.duplicates.jsonl`` beside a file, ``_duplicates.jsonl`` inside a
    dataset. exclude: ``{sample_id: reason}`` of rows to leave out (:mod:`landmark_unify.ops.exclude`:
    ``--exclude``, ``--drop-leaks``), listed with their reasons in ``OUT.excluded.jsonl``
    (``_excluded.jsonl``); exclusion_meta: what they came from, recorded in the metadata. metadata: keys to
    add to (or replace in) the written metadata. Returns a :class:`MergeReport` whose ``run`` is the
    :class:`~landmark_unify.ops.runner.RunResult`. overwrite: allow ``output`` to be one of the inputs. run:
    the engine settings (:class:`~landmark_unify.engines.RunOptions`, or its fields as keywords); the engine
    is started once for both phases.
    """
    opts = RunOptions.of(run, **engine)
    tolerance = DUPLICATE_TOLERANCE if tolerance is None else float(tolerance)
    paths = [Path(p) for p in paths]
    if not paths:
        raise ManifestError("merge needs at least one manifest")
    out = Path(output)
    current().manifest(out, inputs=paths, overwrite=overwrite)
    current().manifest(opts.single_file, inputs=paths, overwrite=overwrite)
    w_by_source = parse_weights(weights)
    inputs, roots, all_slices = _plan_inputs(paths, out, opts.rows_per_partition)

    t0 = time.perf_counter()
    with opts.started() as opts:
        keys = _collect_keys(opts.engine, inputs, all_slices, hash_images, roots, exclude)
        key_seconds = time.perf_counter() - t0
        known = set(keys.rows_in) | set(roots)
        unknown = sorted(set(w_by_source) - known)
        if unknown:
            raise ManifestError(f"weights given for sources {unknown} that no input holds; sources: {sorted(known)}")
        drop, duplicates, excluded = _apply_rules(keys, _rows_reader(all_slices, keys.offsets), hash_images,
                                                  tolerance, exclude)
        dedupe_seconds = time.perf_counter() - t0 - key_seconds
        run, report_weights = _write_merged(opts, inputs, paths, all_slices, keys, drop, duplicates, excluded, roots,
                                            w_by_source, out, metadata=metadata, exclusion_meta=exclusion_meta)
    run.seconds = {"keys": key_seconds, "dedupe": dedupe_seconds, **run.seconds}
    dropped_src: dict = {}
    for d in duplicates:
        dropped_src[d["dropped"]["source"]] = dropped_src.get(d["dropped"]["source"], 0) + 1
    for e in excluded:
        dropped_src[e["source"]] = dropped_src.get(e["source"], 0) + 1
    rows_out = {s: c - dropped_src.get(s, 0) for s, c in keys.rows_in.items() if c - dropped_src.get(s, 0)}
    report = MergeReport({k: int(v) for k, v in keys.rows_in.items()}, rows_out, report_weights, duplicates,
                         excluded=excluded)
    report.run = run
    return report


def _plan_inputs(paths, out: Path, rows_per_partition: int):
    """The inputs' slices and metadata, and their source roots rebased to ``out`` (a label used twice must
    have one root)."""
    inputs, roots, all_slices = [], {}, []
    for k, p in enumerate(paths):
        slices, meta = plan_slices(p, rows_per_partition)
        rebased = rebased_roots(meta.get("source_roots", {}), p, out)
        for name, root in rebased.items():
            if name in roots and resolve_root(roots[name], out) != resolve_root(root, out):
                raise ManifestError(f"{p}: source {name!r} has root {root!r} but an earlier manifest gives "
                                    f"{roots[name]!r}; relabel one of them (build-manifest --source LABEL:KIND=ROOT)")
            roots.setdefault(name, root)
        inputs.append((str(p), meta))
        all_slices += [MergeUnit(k, s) for s in slices]
    return inputs, roots, all_slices


def merge_manifest_files(*args, **kwargs) -> MergeReport:
    """Deprecated: the name of :func:`merge_manifests` before it took an engine; warns and calls it."""
    warnings.warn("merge_manifest_files is deprecated; call merge_manifests", DeprecationWarning, stacklevel=2)
    return merge_manifests(*args, **kwargs)
