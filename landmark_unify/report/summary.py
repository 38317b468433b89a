"""The closing summary of a build, also printed by ``landmark_unify inspect``: faces per source and split,
eye state (and the EAR formula), WFLW attributes, pose provenance and yaw bins, weights, valid-point
coverage per group, and the skipped records grouped by reason (counts and a few examples; the sidecar
``OUT.skipped.jsonl`` keeps the full list)."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import manifest as mf
from ..core.layouts import CANONICAL, get_layout
from ..errors import describe_location

#: yaw bins of the summary (degrees): frontal within 15, then 15-30, 30-60, beyond 60, each side
YAW_EDGES = (-60.0, -30.0, -15.0, 15.0, 30.0, 60.0)
YAW_LABELS = ("<-60", "-60..-30", "-30..-15", "-15..15", "15..30", "30..60", ">=60", "unknown")
#: examples of skipped records shown per reason (the sidecar has them all)
SKIPPED_EXAMPLES = 3


def _counts(table: pa.Table, by: list[str]) -> dict[tuple, int]:
    """Row counts per distinct value tuple of the columns ``by`` (nulls included as None)."""
    if table.num_rows == 0:
        return {}
    if len(by) == 2 and by[0] == "source":
        only = _single_value(table.column("source"))
        if only is not None:  # one source (a build's unit): count the other column's values alone
            vc = pc.value_counts(table.column(by[1]))
            return {(only, v): int(n) for v, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())}
    g = table.select(by).group_by(by, use_threads=False).aggregate([([], "count_all")])
    cols = [g.column(c).to_pylist() for c in by]
    return {tuple(v): int(n) for *v, n in zip(*cols, g.column("count_all").to_pylist())}


def _single_value(col) -> str | None:
    """The value of a string column that holds one value (no nulls) in every row, else None."""
    if col.null_count or len(col) == 0:
        return None
    first = col[0].as_py()
    return first if pc.all(pc.equal(col, first)).as_py() else None


def _coverage_per_source(table: pa.Table) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per source: valid-point counts ``(98,)`` and faces, computed chunk by chunk (bounded memory)."""
    sums: dict[str, np.ndarray] = {}
    faces: dict[str, int] = {}
    only = _single_value(table.column("source")) if table.num_rows else None
    for batch in table.select(["source", "valid"]).to_batches(max_chunksize=65536):
        valid = batch.column(1).flatten().to_numpy(zero_copy_only=False).reshape(-1, mf.NUM_POINTS)
        if only is not None:
            sums[only] = sums.get(only, 0) + np.count_nonzero(valid, axis=0).astype(np.int64)
            faces[only] = faces.get(only, 0) + batch.num_rows
            continue
        src = batch.column(0).to_numpy(zero_copy_only=False)
        for s in dict.fromkeys(src.tolist()):
            m = src == s
            sums[s] = sums.get(s, 0) + valid[m].sum(0)
            faces[s] = faces.get(s, 0) + int(m.sum())
    return sums, faces


def _group_coverage(sums: np.ndarray | int, faces: int) -> dict[str, float]:
    layout = get_layout(CANONICAL)
    out = {}
    for g in layout.present_groups:
        idx = layout.group_indices(g)
        out[g] = float(np.asarray(sums)[idx].sum() / (faces * len(idx))) if faces else float("nan")
    return out


def _yaw_bins(table: pa.Table) -> dict[str, dict[str, int]]:
    """Per source: faces per :data:`YAW_LABELS` bin of the ``yaw`` column (the dataset's pose or the fit)."""
    out: dict[str, dict[str, int]] = {}
    if "yaw" not in table.column_names:
        return out
    for batch in table.select(["source", "yaw"]).to_batches(max_chunksize=65536):
        src = batch.column(0).to_numpy(zero_copy_only=False)
        yaw = batch.column(1).to_numpy(zero_copy_only=False).astype(np.float64)
        idx = np.where(np.isnan(yaw), len(YAW_LABELS) - 1, np.searchsorted(YAW_EDGES, np.nan_to_num(yaw), side="right"))
        for s in dict.fromkeys(src.tolist()):
            counts = np.bincount(idx[src == s], minlength=len(YAW_LABELS))
            acc = out.setdefault(s, dict.fromkeys(YAW_LABELS, 0))
            for lab, n in zip(YAW_LABELS, counts.tolist()):
                acc[lab] += int(n)
    return out


def table_stats(table: pa.Table) -> dict:
    """The additive counts behind the summary, per source: faces, splits, schemas, box and pose provenance,
    yaw bins, eye state and EAR formula, attribute flags (true / known), weights, valid points per
    canonical point. Sections whose columns ``table`` lacks are left out. Counts of pieces of a manifest
    add up with :func:`merge_stats` to the counts of the whole (a build counts each unit as it is written
    instead of reading its output back).

    Computed with Arrow group-bys and chunk by chunk, so memory stays small next to the table itself.
    """
    sums, faces = _coverage_per_source(table)
    has = set(table.column_names)

    def counts(col):
        return _counts(table, ["source", col]) if col in has else {}

    def per(c: dict, s: str) -> dict:
        return {k[1]: n for k, n in c.items() if k[0] == s}

    splits, schemas, boxes = counts("split"), counts("source_schema"), counts("bbox_source")
    poses, eyes, formulas = counts("pose_source"), counts("eye_state"), counts("ear_formula")
    yaw = _yaw_bins(table)
    attrs = {c: counts(c) for c in mf.ATTRIBUTE_COLUMNS if c in has}
    weights: dict[str, dict] = {}
    if "weight" in has and table.num_rows:
        g = table.select(["source", "weight"]).group_by("source", use_threads=False).aggregate(
            [("weight", "min"), ("weight", "max"), ("weight", "sum")])
        for s, lo, hi, tot in zip(*(g.column(c).to_pylist() for c in ("source", "weight_min", "weight_max", "weight_sum"))):
            weights[s] = {"min": float(lo), "max": float(hi), "sum": float(tot)}
    sources = {}
    for s in faces:
        info = {
            "faces": faces[s],
            "splits": per(splits, s),
            "schemas": per(schemas, s),
            "bbox_given": boxes.get((s, "given"), 0),
            "pose": per(poses, s),
            "eye_states": per(eyes, s),
            "ear_formulas": per(formulas, s),
            "yaw_bins": yaw.get(s, {}),
            "attributes": {c[5:]: {"true": v.get((s, True), 0), "known": v.get((s, True), 0) + v.get((s, False), 0)}
                           for c, v in attrs.items()},
            "valid_sums": np.asarray(sums[s], dtype=np.int64),
        }
        if s in weights:
            info["weight"] = weights[s]
        sources[s] = info
    return {"faces": table.num_rows, "sources": sources}


def merge_stats(parts: Sequence[dict]) -> dict:
    """:func:`table_stats` of a whole from those of its pieces, in row order (sources in order of first
    appearance, as for the whole)."""
    out: dict = {"faces": 0, "sources": {}}
    for part in parts:
        out["faces"] += part["faces"]
        for s, info in part["sources"].items():
            acc = out["sources"].get(s)
            if acc is None:
                out["sources"][s] = _copy_stats(info)
                continue
            for key, value in info.items():
                if key == "weight":
                    w = acc.get("weight")
                    acc["weight"] = dict(value) if w is None else {
                        "min": min(w["min"], value["min"]), "max": max(w["max"], value["max"]),
                        "sum": w["sum"] + value["sum"]}
                elif key == "attributes":
                    for name, tk in value.items():
                        cur = acc[key].setdefault(name, {"true": 0, "known": 0})
                        cur["true"] += tk["true"]
                        cur["known"] += tk["known"]
                elif isinstance(value, dict):
                    for k, n in value.items():
                        acc[key][k] = acc[key].get(k, 0) + n
                else:
                    acc[key] = acc[key] + value
    return out


def _copy_stats(info: dict) -> dict:
    out = {}
    for key, value in info.items():
        if key == "attributes":
            out[key] = {name: dict(tk) for name, tk in value.items()}
        elif isinstance(value, dict):
            out[key] = dict(value)
        elif isinstance(value, np.ndarray):
            out[key] = value.copy()
        else:
            out[key] = value
    return out


def _sorted(counts: dict, *, drop_null: bool = False) -> dict:
    items = [(k, n) for k, n in counts.items() if not (drop_null and k is None)]
    return dict(sorted(items, key=lambda kv: (kv[0] is None, str(kv[0]))))


def summary_dict(table: pa.Table | dict, skipped: Sequence[dict] = ()) -> dict:
    """Counts behind the summary of a manifest table (or of its :func:`table_stats`), per source, with
    coverage per group and the skipped records grouped by reason."""
    stats = table if isinstance(table, dict) else table_stats(table)
    per = {}
    for s, info in stats["sources"].items():
        out = {
            "faces": info["faces"],
            "splits": _sorted(info["splits"]),
            "schemas": _sorted(info["schemas"]),
            "bbox_given": info["bbox_given"],
            "pose": _sorted(info["pose"], drop_null=True),
            "eye_states": {k if k is not None else "unknown": n for k, n in _sorted(info["eye_states"]).items()},
            "ear_formulas": {k if k is not None else "none": n for k, n in _sorted(info["ear_formulas"]).items()},
            "yaw_bins": info["yaw_bins"],
            "attributes": info["attributes"],
            "coverage": _group_coverage(info["valid_sums"], info["faces"]),
        }
        if "weight" in info:
            out["weight"] = info["weight"]
        per[s] = out
    total = sum((info["valid_sums"] for info in stats["sources"].values()), np.zeros(mf.NUM_POINTS, np.int64))
    by_reason: dict[str, list] = {}
    for r in skipped:
        by_reason.setdefault(_reason_class(r), []).append(r)
    ordered = sorted(by_reason.items(), key=lambda kv: -len(kv[1]))  # most frequent first, stable
    return {
        "faces": stats["faces"],
        "sources": per,
        "coverage": _group_coverage(total, stats["faces"]),
        "skipped": len(skipped),
        "skipped_by_reason": {k: len(v) for k, v in ordered},
        "skipped_examples": {k: [f"{_where(r)}: {r.get('reason')}" for r in v[:SKIPPED_EXAMPLES]] for k, v in ordered},
    }


def _reason_class(rec: Mapping) -> str:
    # a reason that ends in a file's path (a missing image) is grouped without it
    reason = re.split(r": (?=/|[A-Za-z]:[\\/])", str(rec.get("reason", "")), maxsplit=1)[0]
    return f"{rec.get('source')}: {rec.get('field') or '-'}: {reason[:60]}"


def _where(rec: Mapping) -> str:
    return describe_location(rec.get("path"), rec.get("line"), rec.get("key"), rec.get("field"))


def _table_lines(header: Sequence[str], rows: Sequence[Sequence], first: int, text_last: bool = False) -> list[str]:
    """Rows under a header, the first column left-aligned to ``first`` characters, the others
    right-aligned (the last one left-aligned with ``text_last``)."""
    widths = [max([len(str(h))] + [len(str(r[j])) for r in rows]) for j, h in enumerate(header)]
    widths[0] = max(widths[0], first)
    left = {0, len(header) - 1} if text_last else {0}

    def fmt(cells):
        return "  " + " ".join(f"{str(c):<{widths[j]}}" if j in left else f"{str(c):>{widths[j]}}"
                               for j, c in enumerate(cells)).rstrip()
    return [fmt(header)] + [fmt(r) for r in rows]


def summary_text(table: pa.Table | dict, meta: Mapping | None = None, skipped: Sequence[dict] = (), *,
                 title: str | None = None, sidecar: str | Path | None = None) -> str:
    """The human-readable summary of a manifest table (or of its :func:`table_stats`): faces per source and
    split, eye state, attributes, pose and yaw, weights, coverage per group, and the skipped records grouped
    by reason with at most :data:`SKIPPED_EXAMPLES` examples each (``sidecar``: the file with the full list,
    named in the text)."""
    d = summary_dict(table, skipped)
    groups = list(get_layout(CANONICAL).present_groups)
    lines = [f"manifest {title or ''}: {d['faces']} faces"
             + (f" (format {meta.get('format_version')}, policy {meta.get('policy', '-')})" if meta else "")]
    src = d["sources"]
    width = max([len(s) for s in src] + [6])
    lines.append("faces per source:")
    for s, info in src.items():
        splits = ", ".join(f"{k} {v}" for k, v in info["splits"].items())
        schemas = ", ".join(f"{k} {v}" for k, v in info["schemas"].items())
        w = info.get("weight")
        weight = "" if w is None else (f"; weight {w['min']:g}" if w["min"] == w["max"]
                                       else f"; weights {w['min']:g}-{w['max']:g} (sum {w['sum']:g})")
        lines.append(f"  {s:<{width}} {info['faces']:>8}  splits: {splits}; schemas: {schemas}; "
                     f"box given {info['bbox_given']}{weight}")
    notes = (meta or {}).get("reader_notes") or {}
    if notes:
        lines.append("reader notes:")
        lines += [f"  {s}: {n}" for s, ns in notes.items() for n in ns]
    by_design = (meta or {}).get("by_design") or {}
    if by_design:  # what the readers repaired or left out on purpose, counted (readers.ErrorSink.note)
        lines.append("by design, not errors: " + "; ".join(f"{v} {k}" for k, v in by_design.items()))
    if src and any(info["eye_states"] for info in src.values()):
        lines.append("eye state (EAR formula: wflw8 = WFLW's 8 eye points, ibug6 = 6-point iBUG; docs/guides/curation.md):")
        states = ("open", "one_closed", "both_closed", "unknown")
        rows = [[s, *(info["eye_states"].get(k, 0) for k in states),
                 ", ".join(f"{k} {v}" for k, v in info["ear_formulas"].items()) or "-"] for s, info in src.items()]
        lines += _table_lines(["source", *states, "formula"], rows, width, text_last=True)
    if src and any(info["attributes"] for info in src.values()):
        names = [c[5:] for c in mf.ATTRIBUTE_COLUMNS]
        rows = [[s, *(_flag(info["attributes"].get(a)) for a in names)] for s, info in src.items()
                if any(v["known"] for v in info["attributes"].values())]
        if rows:
            lines.append("WFLW attributes (faces flagged / faces with the flag known):")
            lines += _table_lines(["source", *names], rows, width)
        else:
            lines.append("WFLW attributes: none known")
    if src and any(info["yaw_bins"] for info in src.values()):
        lines.append("pose (source of pitch/yaw/roll; none = no pose) and faces per yaw bin in degrees:")
        pose_kinds = sorted({k for info in src.values() for k in info["pose"]})
        rows = [[s, *(info["pose"].get(k, 0) for k in pose_kinds), info["faces"] - sum(info["pose"].values()), "|",
                 *(info["yaw_bins"].get(b, 0) for b in YAW_LABELS[:-1])] for s, info in src.items()]
        lines += _table_lines(["source", *pose_kinds, "none", "|", *YAW_LABELS[:-1]], rows, width)
    lines.append("valid-point coverage per group (share of the group's points that are valid):")
    rows = list(src.items()) + ([("all", {"coverage": d["coverage"]})] if len(src) > 1 else [])
    lines += _table_lines(["source", *groups],
                          [[s, *(f"{100 * info['coverage'][g]:.1f}%" for g in groups)] for s, info in rows], width)
    if skipped:
        lines.append(f"skipped: {len(skipped)} records, by reason"
                     + (f"; every record is listed in {sidecar}" if sidecar else ""))
        for reason, n in d["skipped_by_reason"].items():
            lines.append(f"  {n:>6} x {reason}")
            examples = d["skipped_examples"][reason]
            for ex in examples:
                lines.append(f"           e.g. {ex}")
            if n > len(examples):
                lines.append(f"           ... and {n - len(examples)} more")
    else:
        lines.append("skipped: 0 records")
    return "\n".join(lines)


def _flag(v: Mapping | None) -> str:
    if not v or not v["known"]:
        return "-"
    return f"{v['true']}/{v['known']}"


def read_skipped(path: str | Path) -> list[dict]:
    """Records of a ``.skipped.jsonl`` sidecar (empty when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def summarize_manifest(path: str | Path) -> str:
    """Summary of an existing manifest (a file, or a partitioned dataset directory written by a
    distributed build), with the skipped records of its sidecar when present."""
    path = Path(path)
    meta, table = mf.read_metadata(path), mf.read_table(path)
    side = path / "_skipped.jsonl" if path.is_dir() else mf.skipped_path_for(path)
    return summary_text(table, meta, read_skipped(side), title=str(path), sidecar=side if side.is_file() else None)
