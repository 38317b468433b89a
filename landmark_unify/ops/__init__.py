"""Operations on datasets and manifests, each written once and run on any engine (``engine=``).

============================  ============================================================
:func:`build_manifest`        dataset sources -> manifest (``ops.build``)
:func:`merge_manifests`       manifests -> one manifest, weights, duplicates (``ops.merge``)
:func:`mine_closed_eyes`      manifest -> its closed-eye faces (``ops.mine``)
:func:`relabel_pose`          manifest -> the same with fitted head pose (``ops.relabel``)
:func:`check_images`          manifest -> the same with every image decoded (``ops.check_images``)
:func:`build_wflw2`           the ``wflw2`` recipe (``ops.recipes``)
:func:`export_coco`           manifest rows -> a COCO keypoint file (``ops.export``)
:func:`find_duplicates`       manifests -> pairs of copies and leaks (``ops.duplicates``)
============================  ============================================================
"""
from __future__ import annotations

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {
    "build_manifest": "build",
    "merge_manifests": "merge",
    "mine_closed_eyes": "mine",
    "relabel_pose": "relabel",
    "check_images": "check_images",
    "build_wflw2": "recipes",
    "export_coco": "export",
    "find_duplicates": "duplicates",
    "run_units": "runner",
    "map_manifest": "runner",
})
