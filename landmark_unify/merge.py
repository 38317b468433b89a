"""Merging manifests: per-source weights and duplicate detection.

Filled in by the merge step; :func:`rebased_roots` and :func:`derived_metadata` are shared by the
commands that read one manifest and write another.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

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
