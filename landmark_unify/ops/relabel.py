"""Head-pose relabelling of a manifest: the pose fit of :mod:`landmark_unify.core.pose` on every row."""
from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from functools import partial

import numpy as np
import pandas as pd

from ..core.pose import PROJECTED_CONTOUR_SCHEMAS, FaceModel
from ..engines import RunOptions
from ..face_models import load_face_model
from ..face_models.fit import estimate_pose
from ..manifest import derived_metadata, landmarks_array, valid_array
from .runner import RunResult, map_manifest

POSE_FIT_METHOD = "scaled-orthographic fit with expression modes (occluded points down-weighted, refit)"
POSE_COUNTS = ("filled", "kept", "unknown")


def relabel_dataframe(df, *, model: FaceModel | None = None, **fit_options):
    """A copy of manifest DataFrame ``df`` with fitted poses.

    Rows without a dataset pose (none, or an earlier fit) get ``pitch``, ``yaw``, ``roll`` from the fit and
    ``pose_source = "fit"`` (or null when the fit is unknown). Rows whose ``source_schema`` has points projected
    from a 3D face model (:data:`PROJECTED_CONTOUR_SCHEMAS`) are fitted as ``projected`` (the model's face for
    such points, :data:`PROJECTED_CONTOUR_WEIGHTS`, one pass), the others with ``model.default_weights()`` and
    the model's occlusion pass. The default model is the shipped face. Rows with a dataset pose keep it; the fit goes to ``fit_pitch``,
    ``fit_yaw``, ``fit_roll`` beside it. Returns ``(df, counts)`` with counts of filled, kept, unknown rows.
    """
    model = model or load_face_model()
    out = df.copy()
    out.attrs = dict(df.attrs)
    n = len(df)
    if n and "projected" not in fit_options:
        fit_options["projected"] = df["source_schema"].isin(PROJECTED_CONTOUR_SCHEMAS).to_numpy()
    fit = estimate_pose(landmarks_array(df), valid_array(df), model=model, **fit_options) if n else np.zeros((0, 3), np.float32)
    known_fit = np.isfinite(fit).all(1)
    # only the dataset's own pose is kept: a pose from an earlier fit is fitted again (not kept as if it
    # were the dataset's, with the new fit beside it)
    # (a labelling model's own pose, pose_source "model", is kept the same way)
    own = df["pose_source"].astype(object).where(df["pose_source"].isin(["dataset", "model"]), None) if n else None
    has_dataset = own.notna().to_numpy(bool) if n else np.zeros(0, bool)
    for j, name in enumerate(("pitch", "yaw", "roll")):
        col = pd.to_numeric(df[name], errors="coerce").to_numpy(np.float64) if n else np.zeros(0)
        out[f"fit_{name}"] = np.where(has_dataset & known_fit, fit[:, j], np.nan).astype(np.float32)
        out[name] = np.where(has_dataset, col, fit[:, j]).astype(np.float32)
    out["pose_source"] = np.where(has_dataset, own.to_numpy(object) if n else [],
                                  np.where(known_fit, "fit", None)).astype(object)
    counts = {"filled": int((~has_dataset & known_fit).sum()), "kept": int(has_dataset.sum()),
              "unknown": int((~has_dataset & ~known_fit).sum())}
    return out, counts


def _relabel_fn(model: FaceModel, fit_options: Mapping, df: pd.DataFrame):
    return relabel_dataframe(df, model=model, **dict(fit_options))


def relabel_pose(input: str | os.PathLike, output: str | os.PathLike, *, mean_shape=None,
                 shape_key: str | None = None, overwrite: bool = False, run: RunOptions | None = None,
                 **options) -> RunResult:
    """Fit head pose for every row of a manifest (file or dataset) and write ``output``, on any engine.

    :func:`relabel_dataframe` on every slice of rows. The face model is loaded once here and shipped to
    the workers, so they do not need the mean-shape file. ``RunResult.extra`` holds the counts (filled,
    kept, unknown) and the written metadata records them with the model. overwrite: allow ``output`` to
    be ``input`` (relabel in place). run: the engine settings (:class:`~landmark_unify.engines.RunOptions`);
    ``options`` holds its fields as keywords (``engine="dask"``) and the fit's options (``min_points``).
    """
    run, fit_options = RunOptions.take(run, options)
    model = load_face_model(mean_shape, shape_key)

    def meta(in_meta, sums):
        counts = {k: int(sums.get(k, 0)) for k in POSE_COUNTS}
        return derived_metadata(in_meta, input, output, "relabel-pose",
                                pose_fit={"model": model.source, "method": POSE_FIT_METHOD, **counts,
                                          **({"model_projected": model.projected.source} if model.projected else {})})

    return map_manifest(input, output, partial(_relabel_fn, model, dict(fit_options)), metadata=meta, run=run,
                        overwrite=overwrite)


def relabel_manifest_file(in_path, out_path, *, mean_shape=None, shape_key: str | None = None,
                          progress: bool = False, **fit_options) -> dict:
    """Deprecated (warns): :func:`relabel_pose` on the local engine; returns the counts (filled, kept,
    unknown), which ``relabel_pose(...).extra`` holds."""
    warnings.warn("relabel_manifest_file is deprecated; call relabel_pose (its .extra holds the counts)",
                  DeprecationWarning, stacklevel=2)
    run = relabel_pose(in_path, out_path, mean_shape=mean_shape, shape_key=shape_key, progress=progress,
                       **fit_options)
    return {k: int(run.extra.get(k, 0)) for k in POSE_COUNTS}
