"""The closing summary of a build, also printed by ``landmark_unify inspect``: faces per source and split,
valid-point coverage per group, pose and box provenance, and the skipped records with their reasons."""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from .. import manifest as mf
from ..core.layouts import CANONICAL, get_layout
from ..errors import describe_location


def _counts(table: pa.Table, by: list[str]) -> dict[tuple, int]:
    """Row counts per distinct value tuple of the columns ``by`` (nulls included as None)."""
    if table.num_rows == 0:
        return {}
    g = table.select(by).group_by(by, use_threads=False).aggregate([([], "count_all")])
    cols = [g.column(c).to_pylist() for c in by]
    return {tuple(v): int(n) for *v, n in zip(*cols, g.column("count_all").to_pylist())}


def _coverage_per_source(table: pa.Table) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per source: valid-point counts ``(98,)`` and faces, computed chunk by chunk (bounded memory)."""
    sums: dict[str, np.ndarray] = {}
    faces: dict[str, int] = {}
    for batch in table.select(["source", "valid"]).to_batches(max_chunksize=65536):
        src = batch.column(0).to_numpy(zero_copy_only=False)
        valid = batch.column(1).flatten().to_numpy(zero_copy_only=False).reshape(-1, mf.NUM_POINTS)
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


def summary_dict(table: pa.Table, skipped: Sequence[dict] = ()) -> dict:
    """Counts behind the summary, per source: faces, splits, schemas, box and pose provenance, coverage.

    Computed with Arrow group-bys and chunk by chunk, so memory stays small next to the table itself.
    """
    sums, faces = _coverage_per_source(table)
    splits = _counts(table, ["source", "split"])
    schemas = _counts(table, ["source", "source_schema"])
    boxes = _counts(table, ["source", "bbox_source"])
    poses = _counts(table, ["source", "pose_source"])
    eyes = _counts(table, ["source", "eye_state"])
    per = {}
    for s in faces:
        per[s] = {
            "faces": faces[s],
            "splits": dict(sorted((k[1], n) for k, n in splits.items() if k[0] == s)),
            "schemas": dict(sorted((k[1], n) for k, n in schemas.items() if k[0] == s)),
            "bbox_given": boxes.get((s, "given"), 0),
            "pose": {k[1]: n for k, n in sorted(poses.items(), key=str) if k[0] == s and k[1] is not None},
            "eye_states": dict(sorted((k[1], n) for k, n in eyes.items() if k[0] == s and k[1] is not None)),
            "coverage": _group_coverage(sums[s], faces[s]),
        }
    total = sum(sums.values()) if sums else 0
    return {
        "faces": table.num_rows,
        "sources": per,
        "coverage": _group_coverage(total, table.num_rows),
        "skipped": len(skipped),
        "skipped_by_reason": dict(Counter(_reason_class(r) for r in skipped).most_common()),
    }


def _reason_class(rec: Mapping) -> str:
    # a reason that ends in a file's path (a missing image) is grouped without it
    reason = re.split(r": (?=/|[A-Za-z]:[\\/])", str(rec.get("reason", "")), maxsplit=1)[0]
    return f"{rec.get('source')}: {rec.get('field') or '-'}: {reason[:60]}"


def _where(rec: Mapping) -> str:
    return describe_location(rec.get("path"), rec.get("line"), rec.get("key"), rec.get("field"))


def summary_text(table: pa.Table, meta: Mapping | None = None, skipped: Sequence[dict] = (), *,
                 title: str | None = None, sidecar: str | Path | None = None) -> str:
    """The human-readable summary."""
    d = summary_dict(table, skipped)
    groups = list(get_layout(CANONICAL).present_groups)
    lines = [f"manifest {title or ''}: {d['faces']} faces"
             + (f" (format {meta.get('format_version')}, policy {meta.get('policy', '-')})" if meta else "")]
    lines.append("faces per source:")
    width = max([len(s) for s in d["sources"]] + [6])
    weights = (meta or {}).get("source_weights") or {}
    for s, info in d["sources"].items():
        splits = ", ".join(f"{k} {v}" for k, v in info["splits"].items())
        schemas = ", ".join(f"{k} {v}" for k, v in info["schemas"].items())
        pose = ", ".join(f"{k} {v}" for k, v in info["pose"].items()) or "none"
        lines.append(f"  {s:<{width}} {info['faces']:>8}  splits: {splits}; schemas: {schemas}; "
                     f"box given {info['bbox_given']}; pose: {pose}"
                     + (f"; weight {weights[s]:g}" if s in weights else ""))
    lines.append("valid-point coverage per group (share of the group's points that are valid):")
    lines.append(f"  {'source':<{width}} " + " ".join(f"{g:>8}" for g in groups))
    rows = list(d["sources"].items()) + ([("all", {"coverage": d["coverage"]})] if len(d["sources"]) > 1 else [])
    for s, info in rows:
        lines.append(f"  {s:<{width}} " + " ".join(f"{100 * info['coverage'][g]:>7.1f}%" for g in groups))
    if skipped:
        lines.append(f"skipped: {len(skipped)} records" + (f" (also in {sidecar})" if sidecar else ""))
        for reason, n in d["skipped_by_reason"].items():
            lines.append(f"  {n:>6} x {reason}")
        lines.append("skipped records:")
        for rec in skipped:
            lines.append(f"  {_where(rec)}: {rec.get('reason')}")
    else:
        lines.append("skipped: 0 records")
    return "\n".join(lines)


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
