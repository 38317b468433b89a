"""Which faces to leave out of a merge or a recipe, and why: ``--exclude FILE`` and ``--drop-leaks PAIRS``.

``--exclude FILE`` (repeatable) takes the sample ids of

- an ``audit`` output or any Parquet file with a ``sample_id`` column (a manifest too): every row's id;
- a ``find-duplicates`` output: the second face of every pair (``sample_id_b``; the first, from the earlier
  input, is kept), never an origin outside the inputs;
- a CSV file with a ``sample_id`` column (else its first column), or a text file of one id per line (``#``
  starts a comment).

``--exclude-where EXPR`` filters the rows of those files first (the filter language of ``--where``, on the
file's own columns: ``"rank <= 50"``, ``"kind == 'exact'"``, ``"suspicion > 3"``). ``--drop-leaks PAIRS``
drops, for every pair of a ``find-duplicates`` output whose ``leak`` is true, the side that is not test data.
Each dropped id carries its reason, listed in ``OUT.excluded.jsonl`` by the merge.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import LandmarkUnifyError, ManifestError

#: Columns that mark a find-duplicates output.
PAIR_MARKERS = ("sample_id_a", "sample_id_b", "kind", "leak")


def _read_table(path: Path) -> pd.DataFrame | None:
    """A Parquet or CSV file as a DataFrame; None for a plain text list."""
    if not path.is_file():
        raise LandmarkUnifyError(f"{path}: exclusion file not found")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        import pyarrow.parquet as pq

        from ..manifest.files import parquet_read

        with parquet_read(path):
            return pq.read_table(path).to_pandas()
    if path.suffix.lower() == ".csv":
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{path}: cannot read as CSV ({exc})") from None
        if "sample_id" not in df.columns:
            if df.shape[1] == 0:
                raise ManifestError(f"{path}: no columns")
            # no header naming sample_id: the first column holds the ids, its header line one of them
            first = df.columns[0]
            df = pd.concat([pd.DataFrame({first: [first]}), df[[first]]], ignore_index=True)
            df = df.rename(columns={first: "sample_id"})
        return df
    return None


def _text_ids(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a text list of sample ids (not UTF-8)") from None
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def _filtered(df: pd.DataFrame, where: str | None, path: Path) -> pd.DataFrame:
    if not where:
        return df
    from ..manifest.filters import FilterError, parse_filter

    try:
        return parse_filter(where, list(df.columns)).apply(df)
    except FilterError as exc:
        raise FilterError(f"--exclude-where on {path}: {exc}") from None


def read_exclusions(files: Sequence[str | os.PathLike], where: str | None = None) -> dict[str, str]:
    """``{sample_id: reason}`` of the faces listed in ``files`` (see the module docstring); ``where`` filters
    the rows of table files first. A text list with ``where`` is an error (it has no columns)."""
    out: dict[str, str] = {}
    for f in files:
        path = Path(f)
        df = _read_table(path)
        if df is None:
            if where:
                raise LandmarkUnifyError(f"--exclude-where needs a table; {path} is a plain list of ids")
            for sid in _text_ids(path):
                out.setdefault(sid, f"listed: in {path.name}")
            continue
        df = _filtered(df, where, path)
        if all(c in df.columns for c in PAIR_MARKERS):
            for _, r in df.iterrows():
                if isinstance(r["sample_id_b"], str):
                    dist = "" if pd.isna(r.get("distance")) else f", {int(r['distance'])} bits"
                    out.setdefault(r["sample_id_b"], f"duplicate: {r['kind']} copy of {r['sample_id_a']}{dist} "
                                                     f"(in {path.name})")
            continue
        if "sample_id" not in df.columns:
            raise ManifestError(f"{path}: no sample_id column (columns: {list(df.columns)[:12]})")
        audit = "suspicion" in df.columns
        for _, r in df.iterrows():
            sid = r["sample_id"]
            if not isinstance(sid, str) or not sid:
                continue
            if audit:
                findings = r.get("findings")
                named = ", ".join(map(str, findings)) if findings is not None and len(findings) else "no finding named"
                rank = f"rank {int(r['rank'])}, " if "rank" in df.columns and not pd.isna(r["rank"]) else ""
                out.setdefault(sid, f"audit: {rank}suspicion {float(r['suspicion']):.3g}, {named} (in {path.name})")
            else:
                out.setdefault(sid, f"listed: in {path.name}")
    return out


def leak_drops(pairs_file: str | os.PathLike) -> dict[str, str]:
    """``{sample_id: reason}``: for every leaked pair of a find-duplicates output, the side that is not test
    data (both sides when neither is marked, which a leak never is)."""
    from .duplicates import KINDS, read_pairs

    path = Path(pairs_file)
    df = read_pairs(path)
    out: dict[str, str] = {}
    leaks = df[df["leak"].astype(bool)]
    # the strongest evidence names the reason: pixels (exact, near, mirror) before provenance
    leaks = leaks.iloc[np.argsort(leaks["kind"].map({k: i for i, k in enumerate(KINDS)}).to_numpy(), kind="stable")]
    for _, r in leaks.iterrows():
        if bool(r["test_a"]) and not bool(r["test_b"]):
            drop, keep, side = r["sample_id_b"], r["sample_id_a"], "a"
        elif bool(r["test_b"]) and not bool(r["test_a"]):
            drop, keep, side = r["sample_id_a"], r["sample_id_b"], "b"
        else:
            continue
        if not isinstance(drop, str):
            continue
        test_where = f"{r[f'source_{side}']}/{r[f'split_{side}']}"
        what = keep if isinstance(keep, str) else r[f"image_path_{side}"]
        out.setdefault(drop, f"leak: {r['kind']} of test face {what} ({test_where}) (in {path.name})")
    return out


def exclusions(exclude: Sequence[str | os.PathLike] = (), where: str | None = None,
               drop_leaks: str | os.PathLike | None = None) -> tuple[dict[str, str], dict]:
    """The merged ``{sample_id: reason}`` of ``--exclude`` / ``--exclude-where`` and ``--drop-leaks``, and
    what they came from (for the output's metadata)."""
    if where and not exclude:
        raise LandmarkUnifyError("--exclude-where filters the files of --exclude; give --exclude FILE")
    out = read_exclusions(exclude, where) if exclude else {}
    if drop_leaks:
        for sid, reason in leak_drops(drop_leaks).items():
            out.setdefault(sid, reason)
    meta = {"files": [str(f) for f in exclude], "where": where, "drop_leaks": str(drop_leaks) if drop_leaks else None,
            "ids": len(out)}
    return out, (meta if (exclude or drop_leaks) else {})
