"""Image paths that leave their source root are never resolved from a manifest (so never read or drawn),
unless the manifest was built with allow_outside_root; a merge keeps that permission."""
from __future__ import annotations

import pandas as pd

from landmark_unify.manifest import image_paths


def _frame(meta: dict) -> pd.DataFrame:
    df = pd.DataFrame({"source": ["a", "a", "a", "b"],
                       "image_path": ["x/y.jpg", "../secret.png", "/etc/passwd", "ok.jpg"]})
    df.attrs = {"manifest": {"source_roots": {"a": "/data/a"}, **meta}, "path": "/m/m.parquet"}
    return df


def test_outside_paths_are_not_resolved():
    paths = image_paths(_frame({}))
    assert [str(p) if p else None for p in paths] == ["/data/a/x/y.jpg", None, None, None]


def test_allowed_when_the_build_allowed_them():
    paths = image_paths(_frame({"allow_outside_root": True}))
    assert [str(p) if p else None for p in paths] == ["/data/a/x/y.jpg", "/data/a/../secret.png", "/etc/passwd", None]
