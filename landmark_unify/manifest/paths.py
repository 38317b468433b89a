"""Where a manifest's images are: its source roots, the absolute image paths, and roots rebased for a
manifest written elsewhere (with the metadata of a derived manifest)."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .rules import nul_rule
from .schema import make_metadata


def source_roots(df: pd.DataFrame) -> dict[str, str]:
    return dict(df.attrs.get("manifest", {}).get("source_roots", {}))


def image_paths(df: pd.DataFrame, roots: Mapping[str, str] | None = None) -> list[Path | None]:
    """Absolute image paths: ``source_roots[source] / image_path``. Relative roots are taken relative to
    the manifest's folder. None where the source has no root, or where ``image_path`` leaves its root
    (``..``, absolute) and the manifest was not built with ``allow_outside_root``, or holds a NUL: such an
    image is never read or drawn, as the build would not have stored it."""
    roots = dict(roots) if roots is not None else source_roots(df)
    base = Path(df.attrs.get("path", ".")).parent
    resolved = {k: (base / v).resolve() if not Path(v).is_absolute() else Path(v) for k, v in roots.items()}
    rel = df["image_path"].to_list()
    allowed = bool(df.attrs.get("manifest", {}).get("allow_outside_root"))
    texts = [p if isinstance(p, str) else "" for p in rel]
    refused = np.zeros(len(rel), bool) if allowed else outside_root(texts)
    refused |= nul_rule(texts)  # no file system takes a NUL in a name: never opened (validate names the row)
    return [
        (resolved[s] / p) if s in resolved and isinstance(p, str) and not bad else None
        for s, p, bad in zip(df["source"].to_list(), rel, refused.tolist())
    ]


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


# --- paths relative to a source root ---------------------------------------------------------------------

def inside_root(rel_path: str) -> bool:
    """True when a '/'-separated path relative to a source root stays inside it (no absolute path, no
    ``..`` that climbs out)."""
    import posixpath

    if not rel_path or rel_path.startswith("/") or (len(rel_path) > 1 and rel_path[1] == ":"):
        return False
    norm = posixpath.normpath(rel_path.replace("\\", "/"))
    return norm != ".." and not norm.startswith("../")


def outside_root(rel_paths: Sequence[str]) -> np.ndarray:
    """``(N,)`` bool: the paths that leave their source root (not :func:`inside_root`). Only the paths a
    cheap vectorised test cannot clear (empty, absolute, a drive letter, a ``..`` or a backslash) are
    checked one by one."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(rel_paths)
    if n == 0:
        return np.zeros(0, bool)
    arr = getattr(rel_paths, "array", None)  # a reader's ArrowColumn
    if not isinstance(arr, (pa.Array, pa.ChunkedArray)):
        arr = pa.array(list(rel_paths), type=pa.string())
    suspect = pc.match_substring_regex(arr, r"\.\.|\\|^/|^.:|^$")
    out = np.zeros(n, bool)
    for i in np.flatnonzero(suspect.to_numpy(zero_copy_only=False)):
        out[i] = not inside_root(rel_paths[i])
    return out
