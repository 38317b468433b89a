"""Merging manifests: per-source weights and duplicate detection.

:func:`merge_manifests` concatenates manifests in priority order, drops the faces that occur twice
(the same ``sample_id``, or the same image content with landmarks that agree) and multiplies each row's
weight by its source's weight. :func:`rebased_roots` and :func:`derived_metadata` are shared by the
commands that read one manifest and write another.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._io import write_sidecar
from .errors import ManifestError
from .manifest import make_metadata


def rebased_roots(roots: Mapping[str, str], from_manifest: str | os.PathLike, to_manifest: str | os.PathLike) -> dict[str, str]:
    """Source roots of a manifest at ``from_manifest`` rewritten for a manifest written at ``to_manifest``.

    Relative roots are relative to the manifest's folder; they are kept relative (to the new folder)
    when possible, else made absolute.
    """
    src_dir = Path(from_manifest).resolve().parent
    dst_dir = Path(to_manifest).resolve().parent
    out = {}
    for name, root in roots.items():
        p = Path(root)
        if p.is_absolute():
            out[name] = str(p)
            continue
        absolute = (src_dir / p).resolve()
        try:
            out[name] = os.path.relpath(absolute, dst_dir)
        except ValueError:  # different drives
            out[name] = str(absolute)
    return out


def derived_metadata(meta: Mapping, from_manifest, to_manifest, command: str, **extra) -> dict:
    """Metadata for a manifest derived from one read at ``from_manifest``: the roots rebased, the
    input's extra keys kept, ``command`` recorded and ``extra`` added."""
    roots = rebased_roots(meta.get("source_roots", {}), from_manifest, to_manifest)
    kept = {k: v for k, v in meta.items() if k not in ("format_version", "canonical_layout", "point_names",
                                                       "source_roots", "library_version", "command")}
    kept.update(extra)
    return make_metadata(roots, command=command, **kept)


# --- merging ------------------------------------------------------------------------------------------

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
        except (TypeError, ValueError):
            raise ManifestError(f"bad weight for source {name!r}: {value!r} is not a number") from None
        if not np.isfinite(w) or w < 0:
            raise ManifestError(f"bad weight for source {name!r}: {w} (must be finite and >= 0)")
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


def merge_manifests(
    paths,
    weights=None,
    *,
    out=None,
    hash_images: bool = True,
    tolerance: float = DUPLICATE_TOLERANCE,
    progress: bool = False,
):
    """Merge manifests into one DataFrame.

    paths: manifests, in priority order (when two rows are the same face, the earlier one is kept).
    weights: per-source weight (mapping or ``["SOURCE=W", ...]``); a row's weight becomes its own
    weight times its source's (default 1). Sources named in ``weights`` must exist.
    out: where the result will be written (relative source roots are rebased onto its folder).
    Duplicates dropped: (1) a repeated ``sample_id`` (the same face read twice); (2) with
    ``hash_images``, two rows whose images have the same content (SHA-1 of the file; where an image
    cannot be read, the same resolved file path) and whose landmarks agree (:func:`same_face`). A source label used by two manifests must have the same root.
    Returns ``(df, metadata, report)``: the merged DataFrame (manifest columns), the metadata to write
    it with, and a :class:`MergeReport`.
    """
    import pandas as pd

    from .manifest import bbox_array, image_paths, landmarks_array, read_manifest, valid_array

    paths = [Path(p) for p in paths]
    if not paths:
        raise ManifestError("merge needs at least one manifest")
    out = Path(out) if out is not None else paths[0]
    w_by_source = parse_weights(weights)
    frames, roots, merged_from, files = [], {}, [], []
    for p in paths:
        df = read_manifest(p)
        meta = df.attrs["manifest"]
        rebased = rebased_roots(meta.get("source_roots", {}), p, out)
        for name, root in rebased.items():
            if name in roots and _resolve(roots[name], out) != _resolve(root, out):
                raise ManifestError(f"{p}: source {name!r} has root {root!r} but an earlier manifest gives {roots[name]!r}; "
                                    "relabel one of them (build-manifest --source LABEL:KIND=ROOT)")
            roots.setdefault(name, root)
        files += [str(q) if q is not None else None for q in image_paths(df)]
        frames.append(df)
        merged_from.append({"path": str(p), "rows": len(df), "sources": sorted(set(df["source"]))})
    df = pd.concat(frames, ignore_index=True)
    known = set(df["source"]) | set(roots)
    unknown = sorted(set(w_by_source) - known)
    if unknown:
        raise ManifestError(f"weights given for sources {unknown} that no input holds; sources: {sorted(known)}")
    rows_in = {s: 0 for s in roots}
    rows_in.update(df["source"].value_counts().to_dict())
    drop = np.zeros(len(df), bool)
    duplicates: list[dict] = []

    # (1) the same face twice: every row whose sample_id an earlier row has
    _, first, inverse = np.unique(df["sample_id"].to_numpy(), return_index=True, return_inverse=True)
    first_row = first[inverse.ravel()]
    for i in np.flatnonzero(first_row != np.arange(len(df))):
        drop[i] = True
        duplicates.append(_dup_record(df, i, int(first_row[i]), "sample_id"))

    # (2) the same image content and nearby landmarks
    if hash_images and len(df):
        from tqdm import tqdm

        digests: dict[str, str | None] = {}
        for path in tqdm(sorted({p for p in files if p}), desc="hash images", disable=not progress, leave=False):
            digests[path] = file_digest(path)
        # an unreadable image is still the same image as another row's when both name the same file
        h = np.array([(digests.get(p) or f"path:{Path(p).resolve()}") if p else None for p in files], dtype=object)
        lm, valid, box = landmarks_array(df), valid_array(df), bbox_array(df)
        groups: dict[str, list[int]] = {}
        for i in np.flatnonzero(~drop):
            if h[i] is not None:
                groups.setdefault(h[i], []).append(int(i))
        for members in groups.values():
            kept: list[int] = []
            for i in members:
                match = next((k for k in kept if same_face(lm[k], valid[k], box[k], lm[i], valid[i], box[i], tolerance)), None)
                if match is None:
                    kept.append(i)
                else:
                    drop[i] = True
                    duplicates.append(_dup_record(df, i, match, "image content and landmarks"))

    merged = df[~drop].reset_index(drop=True)
    factor = merged["source"].map(lambda s: w_by_source.get(s, 1.0)).to_numpy(np.float64)
    merged["weight"] = (merged["weight"].to_numpy(np.float64) * factor).astype(np.float32)
    rows_out = merged["source"].value_counts().to_dict()
    # rows_in names every source: those of the inputs' roots and those of their rows
    report = MergeReport({k: int(v) for k, v in rows_in.items()}, {k: int(v) for k, v in rows_out.items()},
                         {s: w_by_source.get(s, 1.0) for s in sorted(rows_in)}, duplicates)
    meta = make_metadata(roots, command="merge",
                         merged_from=merged_from, source_weights=report.weights,
                         num_duplicates=len(duplicates))
    return merged, meta, report


def _resolve(root: str, manifest: Path) -> Path:
    p = Path(root)
    return p if p.is_absolute() else (manifest.resolve().parent / p).resolve()


def _dup_record(df, i: int, kept: int, reason: str) -> dict:
    import pandas as pd

    def where(j):
        line = df["origin_line"].iloc[j]
        return {"sample_id": df["sample_id"].iloc[j], "source": df["source"].iloc[j],
                "image_path": df["image_path"].iloc[j], "origin_file": df["origin_file"].iloc[j],
                "origin_line": None if pd.isna(line) else int(line)}

    return {"reason": reason, "dropped": where(i), "kept": where(kept)}


def duplicates_path_for(out) -> Path:
    """The sidecar of dropped duplicates: ``OUT.duplicates.jsonl`` beside the manifest ``OUT.parquet``."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".parquet") + ".duplicates.jsonl")


def merge_manifest_files(paths, out, weights=None, *, hash_images: bool = True,
                         tolerance: float = DUPLICATE_TOLERANCE, progress: bool = False,
                         metadata: Mapping | None = None) -> MergeReport:
    """Merge manifests (:func:`merge_manifests`) and write the result to ``out``; the dropped duplicates
    go to the sidecar ``OUT.duplicates.jsonl`` (removed when there are none). ``metadata``: keys to add to
    (or replace in, e.g. ``command``) the written metadata."""
    from .manifest import write_manifest

    out = Path(out)
    merged, meta, report = merge_manifests(paths, weights, out=out, hash_images=hash_images, tolerance=tolerance,
                                           progress=progress)
    meta.update(metadata or {})
    write_sidecar(report.duplicates, duplicates_path_for(out))
    write_manifest(merged, out, meta)
    return report
