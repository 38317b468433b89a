"""Closed-eye mining: the faces of a manifest with one or both eyes closed, by eye aspect ratio."""
from __future__ import annotations

import os
import warnings
from functools import partial

import numpy as np
import pandas as pd

from ..core.eyes import CLOSED_THRESHOLD, MINE_MODES, closed_eye_mask, eye_columns, eye_state, thresholds_for
from ..engines import RunOptions
from ..manifest import derived_metadata, landmarks_array, valid_array
from ..manifest.filters import Filter, filter_rows, parse_filter
from .runner import RunResult, map_manifest


def with_eye_columns(df, closed: float = CLOSED_THRESHOLD):
    """A copy of manifest DataFrame ``df`` with ``ear_left``, ``ear_right``, ``ear_formula`` and
    ``eye_state`` brought up to date. A row whose ``ear_formula`` is set keeps its EAR (computed in the
    source layout at build time, e.g. ``ibug6`` for a 68-point source, which the canonical points cannot
    give); the others (manifests written before ``ear_formula``) get the 8-point EAR of their canonical
    points. ``eye_state`` follows with each formula's threshold for ``closed`` on the 8-point scale
    (:func:`landmark_unify.core.eyes.closed_thresholds`)."""
    out = df.copy()
    n = len(df)
    formula = (df["ear_formula"].to_numpy(dtype=object) if "ear_formula" in df else np.full(n, None, object))
    stored = np.array([isinstance(f, str) for f in formula], dtype=bool)
    ear = np.full((n, 2), np.nan)
    if stored.any():
        ear[stored, 0] = pd.to_numeric(df["ear_left"], errors="coerce").to_numpy(np.float64)[stored]
        ear[stored, 1] = pd.to_numeric(df["ear_right"], errors="coerce").to_numpy(np.float64)[stored]
    if (~stored).any():
        part = df[~stored]
        cols = eye_columns(landmarks_array(part), valid_array(part), closed)
        ear[~stored, 0], ear[~stored, 1] = cols["ear_left"], cols["ear_right"]
        formula = formula.copy()
        formula[~stored] = cols["ear_formula"]
    out["ear_left"] = ear[:, 0].astype(np.float32)
    out["ear_right"] = ear[:, 1].astype(np.float32)
    out["ear_formula"] = formula
    out["eye_state"] = eye_state(ear, thresholds_for(formula, closed)) if n else np.empty(0, object)
    out.attrs = dict(df.attrs)
    return out


def _closed_eyes_fn(threshold: float, mode: str, where: Filter | None, df: pd.DataFrame):
    df = with_eye_columns(filter_rows(df, where), threshold)
    ear = np.stack([df["ear_left"].to_numpy(np.float64), df["ear_right"].to_numpy(np.float64)], 1) \
        if len(df) else np.zeros((0, 2))
    keep = closed_eye_mask(ear, threshold, mode, formulas=df["ear_formula"].to_numpy(dtype=object))
    return df[keep].reset_index(drop=True), {"kept": int(keep.sum()), "total": len(df)}


def mine_closed_eyes(input: str | os.PathLike, output: str | os.PathLike, *, threshold: float | None = None,
                     mode: str = "either", where: Filter | str | None = None, overwrite: bool = False,
                     run: RunOptions | None = None, **engine) -> RunResult:
    """Write the faces of ``input`` (file or dataset) with a closed eye (``mode`` either|both) to
    ``output``, on any engine. ``threshold`` is on the 8-point EAR scale; faces whose EAR was computed with
    the 6-point iBUG formula are held to the matching threshold (``threshold * IBUG6_SCALE``,
    :func:`landmark_unify.core.eyes.closed_thresholds`). See :func:`with_eye_columns`.
    ``where``: a row filter, parsed (:class:`~landmark_unify.manifest.filters.Filter`) or its text, parsed here
    once (:mod:`landmark_unify.manifest.filters`); only matching faces are considered (``total`` counts
    those). ``RunResult.extra`` holds ``kept`` and ``total``. overwrite: allow ``output`` to be ``input``.
    run: the engine settings (:class:`~landmark_unify.engines.RunOptions`, or its fields as keywords)."""
    if isinstance(where, str):
        from ..manifest import COLUMN_NAMES

        where = parse_filter(where, COLUMN_NAMES)  # refused before anything is read
    threshold = CLOSED_THRESHOLD if threshold is None else float(threshold)
    if mode not in MINE_MODES:
        raise ValueError(f"unknown mode {mode!r}; valid: {list(MINE_MODES)}")

    def meta(in_meta, sums):
        return derived_metadata(in_meta, input, output, "mine-closed-eyes",
                                mined_closed_eyes={"from": str(input), "threshold": threshold, "mode": mode,
                                                   "where": None if where is None else where.text,
                                                   "kept": int(sums.get("kept", 0)),
                                                   "total": int(sums.get("total", 0))})

    return map_manifest(input, output, partial(_closed_eyes_fn, threshold, mode, where), metadata=meta,
                        run=RunOptions.of(run, **engine), overwrite=overwrite)


def mine_closed_eyes_file(in_path, out_path, threshold: float = CLOSED_THRESHOLD, mode: str = "either",
                          progress: bool = False) -> tuple[int, int]:
    """Deprecated (warns): :func:`mine_closed_eyes` on the local engine; returns (kept, total), which
    ``mine_closed_eyes(...).extra`` holds."""
    warnings.warn("mine_closed_eyes_file is deprecated; call mine_closed_eyes (its .extra holds kept and total)",
                  DeprecationWarning, stacklevel=2)
    run = mine_closed_eyes(in_path, out_path, threshold=threshold, mode=mode, progress=progress)
    return int(run.extra.get("kept", 0)), int(run.extra.get("total", 0))
