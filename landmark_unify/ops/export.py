"""Export a manifest for other tools: a COCO keypoint file (MMPose, pycocotools, FiftyOne, ...).

One COCO category ``face`` with the 98 canonical point names (WFLW order), the flip pairs (0-based, as
MMPose's dataset-info files give them) and a skeleton (1-based index pairs, COCO's convention). One image
entry per distinct ``(source, image_path)``, with ``width`` / ``height``; one annotation per face, in
manifest row order:

- ``keypoints``: ``[x, y, v] * 98``, pixels as in the manifest (0-based, integer = pixel centre, the
  ``coco`` reader's convention, so the file reads back unchanged); ``v = 2`` where the point is valid,
  ``0, 0, 0`` where it is not. ``num_keypoints``: the valid points.
- ``bbox``: ``[x, y, w, h]`` of the manifest box; ``area = w * h``; ``iscrowd = 0``.
- ``center`` / ``scale``: the box centre and ``max(w, h) / 200`` (HRNet's pixel_std), which MMPose's face
  datasets (``WFLWDataset``, ``Face300WDataset``, ...) read.
- ``sample_id``, ``source``, ``split``: the manifest row the face came from.

Numbers are the float32 values of the manifest written exactly (as float64), so manifest -> COCO ->
``coco`` reader -> manifest gives the same landmarks, validity and boxes. The output depends only on the
manifest rows and the options (no dates, no temporary paths).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..core.layouts import CANONICAL, get_layout
from ..io import write_text_atomic
from ..manifest import bbox_array, image_paths, landmarks_array, valid_array

#: MMPose's pixel_std: ``scale`` is the box side over this
PIXEL_STD = 200.0

#: the canonical face's outline as chains of 0-based indices (closed chains repeat their first point)
_CHAINS = (
    list(range(0, 33)),                       # contour
    list(range(33, 42)) + [33],               # image-left brow
    list(range(42, 51)) + [42],               # image-right brow
    list(range(51, 55)),                      # nose bridge
    list(range(55, 60)),                      # nose base
    list(range(60, 68)) + [60],               # image-left eye
    list(range(68, 76)) + [68],               # image-right eye
    list(range(76, 88)) + [76],               # outer lip
    list(range(88, 96)) + [88],               # inner lip
)


def skeleton() -> list[list[int]]:
    """COCO skeleton of the canonical layout: 1-based index pairs along each part's outline."""
    return [[a + 1, b + 1] for chain in _CHAINS for a, b in zip(chain, chain[1:])]


def flip_pairs() -> list[list[int]]:
    """0-based ``[i, j]`` pairs (i < j) of points that swap under a horizontal flip."""
    flip = get_layout(CANONICAL).flip_indices
    return [[int(i), int(j)] for i, j in enumerate(flip) if i < j]


def coco_category() -> dict:
    layout = get_layout(CANONICAL)
    return {"id": 1, "name": "face", "supercategory": "face", "keypoints": list(layout.names),
            "skeleton": skeleton(), "flip_pairs": flip_pairs(), "layout": CANONICAL}


@dataclass
class ExportReport:
    """What :func:`export_coco` wrote."""

    path: Path
    faces: int
    images: int
    size_from_extent: int = 0  # images whose size was unknown and not readable: set from the faces' extent
    warnings: list[str] = field(default_factory=list)


def _file_names(df: pd.DataFrame, image_root: str | os.PathLike | None) -> list[str]:
    paths = image_paths(df)
    out = []
    base = Path(image_root).resolve() if image_root is not None else None
    for p, src, rel in zip(paths, df["source"].tolist(), df["image_path"].tolist()):
        if p is None:
            out.append(f"{src}/{rel}")
        elif base is not None:
            out.append(Path(os.path.relpath(p, base)).as_posix())
        else:
            out.append(Path(p).as_posix())
    return out


def _image_size(path: str) -> tuple[int, int] | None:
    """Width and height as :func:`landmark_unify.images.read_image` decodes the image (upright by its EXIF
    orientation), from its header; None if missing or unreadable."""
    from ..images import ImageError, image_info

    try:
        return image_info(path).size
    except ImageError:
        return None


def coco_document(df: pd.DataFrame, *, image_root: str | os.PathLike | None = None,
                  description: str = "", read_sizes: bool = True) -> tuple[dict, ExportReport]:
    """The COCO keypoint document of manifest DataFrame ``df`` (as from :func:`landmark_unify.read_manifest`).

    image_root: write ``file_name`` relative to this folder (default: absolute paths, which MMPose's
    ``data_prefix`` and FiftyOne's ``data_path`` join unchanged). read_sizes: where the manifest does not
    know an image's size, read it from the file; where the file is missing too, the size is the extent of
    its faces' boxes and points (counted in the report).
    """
    n = len(df)
    lm = landmarks_array(df).astype(np.float64)
    valid = valid_array(df)
    box = bbox_array(df).astype(np.float64)
    names = _file_names(df, image_root) if n else []
    keys = list(zip(df["source"].tolist(), df["image_path"].tolist())) if n else []
    image_id: dict[tuple[str, str], int] = {}
    first_row: dict[int, int] = {}
    for i, k in enumerate(keys):
        if k not in image_id:
            image_id[k] = len(image_id) + 1
            first_row[image_id[k]] = i
    ids = np.array([image_id[k] for k in keys], dtype=np.int64)

    # image sizes: the manifest's, else the file's header, else the extent of the image's faces
    width = pd.array(df["image_width"], dtype="Int64") if n else pd.array([], dtype="Int64")
    height = pd.array(df["image_height"], dtype="Int64") if n else pd.array([], dtype="Int64")
    pts = np.where(valid[..., None], lm, np.nan)
    with np.errstate(all="ignore"):
        extent_x = np.fmax(np.nanmax(pts[..., 0], axis=1, initial=-np.inf), box[:, 2])
        extent_y = np.fmax(np.nanmax(pts[..., 1], axis=1, initial=-np.inf), box[:, 3])
    images, from_extent = [], 0
    for (src, rel), iid in image_id.items():
        rows = np.flatnonzero(ids == iid)
        i = first_row[iid]
        size = None
        if not (pd.isna(width[i]) or pd.isna(height[i])):
            size = (int(width[i]), int(height[i]))
        elif read_sizes:
            size = _image_size(str(Path(names[i]) if image_root is None else Path(image_root) / names[i]))
        if size is None:
            from_extent += 1
            size = (int(np.ceil(extent_x[rows].max())) + 1, int(np.ceil(extent_y[rows].max())) + 1)
        images.append({"id": int(iid), "file_name": names[i], "width": size[0], "height": size[1],
                       "source": src, "image_path": rel})

    kp = np.empty((n, lm.shape[1], 3), dtype=object)  # floats for x, y; ints for v
    kp[..., :2] = np.where(valid[..., None], lm, 0.0)
    kp[..., 2] = np.where(valid, 2, 0)
    kp_lists = kp.reshape(n, -1).tolist()
    vis = valid.sum(1).tolist()
    w, h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    xywh = np.stack([box[:, 0], box[:, 1], w, h], 1).tolist()
    centre = np.stack([(box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2], 1).tolist()
    scale = (np.maximum(w, h) / PIXEL_STD).tolist()
    area = (w * h).tolist()
    sample, source, split = df["sample_id"].tolist(), df["source"].tolist(), df["split"].tolist()
    annotations = []
    for i in range(n):
        annotations.append({
            "id": i + 1, "image_id": int(ids[i]), "category_id": 1, "keypoints": kp_lists[i],
            "num_keypoints": int(vis[i]), "bbox": xywh[i], "area": area[i], "iscrowd": 0,
            "center": centre[i], "scale": scale[i],
            "sample_id": sample[i], "source": source[i], "split": split[i],
        })
    doc = {
        "info": {"description": description or "landmark_unify export", "version": __version__,
                 "canonical_layout": CANONICAL, "coordinates": "pixels, 0-based, integer = pixel centre"},
        "licenses": [],
        "categories": [coco_category()],
        "images": images,
        "annotations": annotations,
    }
    report = ExportReport(Path(), n, len(images), from_extent)
    if from_extent:
        report.warnings.append(f"{from_extent} of {len(images)} images have no known size and no readable file: "
                               "width/height set from the extent of their faces (check the image paths, or build "
                               "with --check-images)")
    return doc, report


def export_coco(df: pd.DataFrame, out: str | os.PathLike, *, image_root: str | os.PathLike | None = None,
                description: str = "", read_sizes: bool = True) -> ExportReport:
    """Write the COCO keypoint file of manifest DataFrame ``df`` to ``out`` (atomically); see
    :func:`coco_document`."""
    doc, report = coco_document(df, image_root=image_root, description=description, read_sizes=read_sizes)
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    write_text_atomic(text + "\n", out)
    report.path = Path(out)
    return report
