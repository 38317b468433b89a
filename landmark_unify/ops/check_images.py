"""Image checks on an existing manifest: decode every image, fill its size, drop or report bad ones."""
from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial

import numpy as np
import pandas as pd

from ..engines import RunOptions
from ..errors import ErrorPolicy, ParseError
from ..manifest import derived_metadata, image_paths
from .build import image_size
from .runner import RunResult, map_manifest


def _check_images_fn(roots: Mapping | None, on_error: str, df: pd.DataFrame):
    paths = image_paths(df, roots)
    n = len(df)
    width = np.full(n, np.nan)
    height = np.full(n, np.nan)
    keep = np.ones(n, bool)
    policy = ErrorPolicy(on_error, source=None, kind=None)
    cache: dict = {}
    for i, p in enumerate(paths):
        if p is None:
            got = ParseError(str(df["image_path"].iloc[i]), f"source {df['source'].iloc[i]!r} has no root", field="image")
        else:
            got = cache.get(p)
            if got is None:
                got = cache[p] = image_size(p)
        if isinstance(got, ParseError):
            keep[i] = False
            policy.context["source"] = str(df["source"].iloc[i])
            policy(ParseError(got.path, f"{got.reason} (row sample_id {df['sample_id'].iloc[i]})", field="image")
                   if policy.raises else got, sample_id=str(df["sample_id"].iloc[i]))
        else:
            width[i], height[i] = got
    out = df.copy()
    out.attrs = dict(df.attrs)
    out["image_width"] = pd.array([None if not np.isfinite(v) else int(v) for v in width], dtype="Int32")
    out["image_height"] = pd.array([None if not np.isfinite(v) else int(v) for v in height], dtype="Int32")
    out = out[keep].reset_index(drop=True)
    return out, {"checked": n, "bad": int((~keep).sum()), "skipped": policy.skipped}


def check_images(input: str | os.PathLike, output: str | os.PathLike, *, on_error: str = "raise",
                 roots: Mapping[str, str] | None = None, overwrite: bool = False, run: RunOptions | None = None,
                 **engine) -> RunResult:
    """Decode every image of a manifest on an engine (the check of ``build-manifest --check-images``, for a
    manifest already built): fills ``image_width`` / ``image_height``; a missing or corrupt image raises
    (``on_error="raise"``, nothing written) or drops its row and is listed in ``RunResult.skipped``.
    ``roots`` overrides the manifest's source roots (e.g. where the images are mounted on the workers).
    run: the engine settings (:class:`~landmark_unify.engines.RunOptions`, or its fields as keywords)."""
    ErrorPolicy.check(on_error)

    def meta(in_meta, sums):
        return derived_metadata(in_meta, input, output, "check-images",
                                images_checked={"checked": int(sums.get("checked", 0)), "bad": int(sums.get("bad", 0))})

    return map_manifest(input, output, partial(_check_images_fn, dict(roots) if roots else None, on_error),
                        metadata=meta, run=RunOptions.of(run, **engine) if run is not None else
                        RunOptions.of(**{"rows_per_partition": 5_000, **engine}),
                        overwrite=overwrite)
