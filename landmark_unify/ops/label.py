"""Machine labels: faces found and landmarked by a model, written as a manifest marked as such.

This module is model-agnostic: it takes the predicted points of each face (in any layout with a map onto
the canonical one) and writes the manifest rows, with ``label_source = "machine"`` and ``label_model`` (the
model's name) in their own columns, so machine labels never pass for a dataset's annotation. Running a
model is the trainer's job: ``landmark_unify label`` is the command ``pfpld_train`` registers under the
``landmark_unify.commands`` entry point (see :mod:`landmark_unify.cli`), which detects faces, runs the
model and calls :func:`write_machine_labels`.

A face's pose is the model's own (``pose_source = "model"``: PFPLD's pose branch, or a rotation fitted to
the 3D points of a 3D model) when it gives one, else the landmark fit (``"fit"``); the fit is also written
to ``fit_pitch``, ``fit_yaw``, ``fit_roll`` beside a model's pose, as for a dataset's pose.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.eyes import eye_columns
from ..core.maps import check_policy, to_canonical
from ..errors import LandmarkUnifyError
from ..manifest import (
    NUM_POINTS,
    dataframe_from_table,
    make_metadata,
    make_sample_id,
    table_from_columns,
    table_from_dataframe,
    write_manifest,
)
from .relabel import relabel_dataframe

__all__ = ["LabelledFace", "common_root", "compare_labels", "machine_label_table", "write_machine_labels"]


@dataclass
class LabelledFace:
    """One face a model found and landmarked.

    ``image``: the image file. ``index``: the face's number in its image (0 = the detector's best).
    ``points``: ``(K, 2)`` image pixels (0-based, pixel centres at integers) in layout ``schema`` (a
    schema of :func:`landmark_unify.core.maps.list_schemas`: ``wflw98`` for a 98-point model, ``ibug68``
    for a 2D 68-point one, ``ibug68_3d`` for the x, y of a 3D one). ``pose``: ``(3,)`` pitch, yaw, roll
    degrees from the model, or None. ``score``: the detector's, or None. ``width``, ``height``: the image's.
    """

    image: Path
    index: int
    points: np.ndarray
    schema: str
    pose: np.ndarray | None = None
    score: float | None = None
    width: int | None = None
    height: int | None = None


def common_root(images: Sequence[str | os.PathLike]) -> Path:
    """The deepest folder holding every image (the manifest's source root)."""
    if not images:
        raise LandmarkUnifyError("no images")
    folders = [Path(p).resolve().parent for p in images]
    return Path(os.path.commonpath([str(f) for f in folders]))


def machine_label_table(faces: Sequence[LabelledFace], *, root: str | os.PathLike, source: str, model: str,
                        split: str = "train", policy: str = "strict", fit_pose: bool = True,
                        face_model=None):
    """Manifest table (:data:`landmark_unify.manifest.SCHEMA`) of ``faces``, marked as machine labels of
    ``model``. Images are stored relative to ``root`` (each must lie under it). ``policy``: how points of
    another layout map onto the canonical one (``strict``: exact points only). ``fit_pose``: fit the pose
    from the landmarks where the model gives none (and beside the model's), with ``face_model`` (default:
    the shipped face)."""
    check_policy(policy)
    root = Path(root).resolve()
    n = len(faces)
    lm = np.full((n, NUM_POINTS, 2), np.nan, np.float32)
    valid = np.zeros((n, NUM_POINTS), bool)
    for schema in sorted({f.schema for f in faces}):
        rows = [i for i, f in enumerate(faces) if f.schema == schema]
        pts = np.stack([np.asarray(faces[i].points, np.float32)[:, :2] for i in rows])
        p98, v98 = to_canonical(pts, schema, policy=policy)
        lm[rows], valid[rows] = p98, v98
    rel = []
    for f in faces:
        try:
            rel.append(Path(f.image).resolve().relative_to(root).as_posix())
        except ValueError:
            raise LandmarkUnifyError(f"{f.image}: not under the source root {root}") from None
    box = np.full((n, 4), np.nan, np.float32)
    for i in range(n):
        ok = valid[i]
        if ok.any():
            box[i] = np.concatenate([lm[i, ok].min(0), lm[i, ok].max(0)])
    has_box = np.isfinite(box).all(1)
    if not has_box.all():
        raise LandmarkUnifyError(f"{int((~has_box).sum())} faces have no valid point after the map onto the "
                                 f"canonical layout (policy {policy!r})")
    pose = np.array([np.full(3, np.nan) if f.pose is None else np.asarray(f.pose, np.float64)[:3] for f in faces],
                    np.float64).reshape(n, 3)
    has_pose = np.isfinite(pose).all(1)
    cols = {
        "sample_id": [make_sample_id(source, split, r, f.index, model) for r, f in zip(rel, faces)],
        "source": [source] * n,
        "split": [split] * n,
        "image_path": rel,
        "landmarks": lm,
        "valid": valid,
        "bbox": box,
        "bbox_source": ["landmarks"] * n,
        "pitch": pose[:, 0].astype(np.float32), "yaw": pose[:, 1].astype(np.float32),
        "roll": pose[:, 2].astype(np.float32),
        "pose_source": np.where(has_pose, "model", None).astype(object),
        **eye_columns(lm, valid),
        "source_schema": [f.schema for f in faces],
        "origin_file": rel,
        "origin_key": [f"face{f.index}" for f in faces],
        "label_source": ["machine"] * n,
        "label_model": [model] * n,
        "image_width": [f.width for f in faces],
        "image_height": [f.height for f in faces],
    }
    table = table_from_columns(cols)
    if fit_pose and n:
        df, _ = relabel_dataframe(dataframe_from_table(table), model=face_model)
        table = table_from_dataframe(df)
    return table


def write_machine_labels(faces: Sequence[LabelledFace], output: str | os.PathLike, *, model: str,
                         source: str | None = None, root: str | os.PathLike | None = None, split: str = "train",
                         policy: str = "strict", fit_pose: bool = True, command: str | None = None,
                         **metadata) -> Path:
    """Write the manifest of :func:`machine_label_table` to ``output`` (Parquet, atomic). ``root``
    (default: the deepest folder holding every image) becomes the source root, ``source`` (default: that
    folder's name) the source label. The metadata records the model under ``machine_labels``."""
    images = [f.image for f in faces]
    root = Path(root).resolve() if root is not None else (common_root(images) if images else Path(".").resolve())
    source = source or root.name or "photos"
    table = machine_label_table(faces, root=root, source=source, model=model, split=split, policy=policy,
                                fit_pose=fit_pose)
    meta = make_metadata({source: str(root)}, command=command,
                         machine_labels={"model": model, "policy": policy, "faces": len(faces), **metadata})
    return write_manifest(table, output, meta)


# --- a second opinion: machine labels against existing ones ----------------------------------------------------

def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` intersection over union of boxes x_min, y_min, x_max, y_max."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def _extent(lm: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.full((len(lm), 4), np.nan)
    for i in range(len(lm)):
        if valid[i].any():
            out[i] = np.concatenate([lm[i, valid[i]].min(0), lm[i, valid[i]].max(0)])
    return out


def compare_labels(labels, truth, *, min_iou: float = 0.3, threshold: float = 0.1) -> dict:
    """Score machine labels (manifest DataFrame ``labels``) against existing ones (``truth``), face by face.

    Faces pair up within the same image file (absolute paths through each manifest's roots), greedily by
    the IoU of their landmark extents (at least ``min_iou``). A paired face's error is the NME over the
    points valid in both, normalised by the truth's outer-eye-corner distance (points 60 and 72, the
    canonical layout's ``norm_pair``). Returns ``{"faces", "matched", "missed", "nme_mean", "nme_median",
    "failure_rate", "nme"}`` (``nme``: per truth face, NaN where unpaired; ``failure_rate``: share of
    paired faces above ``threshold``)."""
    from ..core.layouts import CANONICAL, get_layout
    from ..manifest import image_paths, landmarks_array, valid_array

    i60, i72 = get_layout(CANONICAL).norm_indices
    lm_t, v_t = landmarks_array(truth).astype(np.float64), valid_array(truth)
    lm_m, v_m = landmarks_array(labels).astype(np.float64), valid_array(labels)
    box_t, box_m = _extent(lm_t, v_t), _extent(lm_m, v_m)
    by_image: dict[str, list[int]] = {}
    for j, p in enumerate(image_paths(labels)):
        by_image.setdefault(str(p), []).append(j)
    nme = np.full(len(truth), np.nan)
    truth_images: dict[str, list[int]] = {}
    for i, p in enumerate(image_paths(truth)):
        truth_images.setdefault(str(p), []).append(i)
    for path, ti in truth_images.items():
        mj = by_image.get(path, [])
        if not mj:
            continue
        iou = _iou(np.nan_to_num(box_t[ti], nan=0.0), np.nan_to_num(box_m[mj], nan=0.0))
        while iou.size and iou.max() >= min_iou:
            a, b = np.unravel_index(np.argmax(iou), iou.shape)
            i, j = ti[a], mj[b]
            both = v_t[i] & v_m[j]
            norm = np.linalg.norm(lm_t[i, i60] - lm_t[i, i72]) if v_t[i, i60] and v_t[i, i72] else np.nan
            if both.any() and norm > 0:
                nme[i] = np.linalg.norm(lm_m[j, both] - lm_t[i, both], axis=-1).mean() / norm
            iou[a, :], iou[:, b] = -1.0, -1.0
    ok = np.isfinite(nme)
    return {"faces": int(len(truth)), "matched": int(ok.sum()), "missed": int((~ok).sum()),
            "nme_mean": float(nme[ok].mean()) if ok.any() else float("nan"),
            "nme_median": float(np.median(nme[ok])) if ok.any() else float("nan"),
            "failure_rate": float((nme[ok] > threshold).mean()) if ok.any() else float("nan"), "nme": nme}
