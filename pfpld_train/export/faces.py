"""Real face crops for parity, calibration and int8 checks, read from a manifest (or a WFLW list).

:func:`read_faces` turns a manifest (a ``.parquet`` file or a dataset directory, :mod:`landmark_unify.manifest`) into a :class:`FaceSet` of
standard crops (:mod:`pfpld_train.data.crop`): ``(N, 112, 112, 3) uint8`` **RGB** images and their landmarks
in crop units. A WFLW annotation list (``.txt``, 196 coordinates then optional box/attributes, then the
image path relative to ``WFLW_images``) or a folder of such lists is accepted in place of a manifest, so
the checks run on the raw WFLW release before a manifest is built; identical lines (the per-attribute
test lists overlap) are read once.

:class:`Preprocess` describes how a network wants its input (colour order, mean, scale) and turns crops
into ``(N, 3, 112, 112) float32`` tensors.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landmark_unify import manifest as mf
from landmark_unify.core.maps import finite_points
from landmark_unify.images import ImageError, read_image
from landmark_unify.manifest import image_paths, landmarks_array, valid_array
from landmark_unify.progress import progress

from ..data.arrays import pose_array
from ..data.crop import CROP_SIZE, box_crop_params, crop_image, face_crop_params, image_to_crop
from .errors import ExportError

__all__ = ["FaceSet", "Preprocess", "read_faces", "photo_crops", "PFPLD_PREPROCESS"]

_WFLW_COORDS = 196


@dataclass
class FaceSet:
    """Face crops with ground truth.

    crops: ``(N, 112, 112, 3) uint8`` RGB. landmarks: ``(N, 98, 2) float32`` crop units, NaN invalid.
    valid: ``(N, 98) bool``. pose: ``(N, 3) float32`` degrees (pitch, yaw, roll), NaN where unknown.
    ids: sample ids. skipped: ``(id, reason)`` for faces that could not be read.
    """

    crops: np.ndarray
    landmarks: np.ndarray
    valid: np.ndarray
    pose: np.ndarray
    ids: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index) -> FaceSet:
        idx = np.asarray(index, dtype=np.int64)
        return FaceSet(self.crops[idx], self.landmarks[idx], self.valid[idx], self.pose[idx],
                       [self.ids[i] for i in idx])

    def split(self, n_first: int, seed: int = 0) -> tuple[FaceSet, FaceSet]:
        """Deterministic disjoint split: ``n_first`` faces (chosen by a hash of id and seed) and the rest."""
        order = sorted(range(len(self)), key=lambda i: hashlib.sha1(f"{seed}:{self.ids[i]}".encode()).hexdigest())
        n_first = max(0, min(n_first, len(self)))
        return self.subset(sorted(order[:n_first])), self.subset(sorted(order[n_first:]))


@dataclass(frozen=True)
class Preprocess:
    """Input convention of a network: ``x = (pixel - mean) * scale`` per channel, in ``color`` order, NCHW."""

    color: str = "RGB"
    mean: float = 0.0
    scale: float = 1.0 / 255.0

    def __post_init__(self) -> None:
        if self.color not in ("RGB", "BGR"):
            raise ExportError(f"colour order must be RGB or BGR, got {self.color!r}")

    def __call__(self, crops_rgb: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3) uint8`` RGB -> ``(N, 3, H, W) float32``."""
        x = np.asarray(crops_rgb)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ExportError(f"crops must be (N, H, W, 3), got {x.shape}")
        if self.color == "BGR":
            x = x[..., ::-1]
        x = (x.astype(np.float32) - np.float32(self.mean)) * np.float32(self.scale)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def as_dict(self) -> dict:
        return {"color": self.color, "mean": self.mean, "scale": self.scale, "layout": "NCHW"}


#: What the PFPLD network was trained on (:mod:`pfpld_train.models.pfpld`): RGB, pixel / 255.
PFPLD_PREPROCESS = Preprocess("RGB", 0.0, 1.0 / 255.0)


def _read_image(path: Path) -> np.ndarray | None:
    """``(H, W, 3) uint8`` RGB, or None when the file is missing or not decodable."""
    try:
        return read_image(path)
    except ImageError:
        return None


def _wflw_records(path: Path, images_root: Path | None):
    lists = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not lists:
        raise ExportError(f"{path}: no WFLW list (*.txt) found")
    seen: set[str] = set()
    for lst in lists:
        root = images_root or lst.resolve().parents[2] / "WFLW_images"
        for lineno, line in enumerate(lst.read_text().splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < _WFLW_COORDS + 1:
                raise ExportError(f"{lst}, line {lineno}: expected 196 coordinates and an image path, "
                                  f"got {len(fields)} fields")
            try:
                pts = np.asarray(fields[:_WFLW_COORDS], dtype=np.float32).reshape(98, 2)
            except ValueError as exc:
                raise ExportError(f"{lst}, line {lineno}, field 'landmarks': {exc}") from None
            key = hashlib.sha1(" ".join(fields[:_WFLW_COORDS] + [fields[-1]]).encode()).hexdigest()[:16]
            if key in seen:
                continue
            seen.add(key)
            yield key, root / fields[-1], pts, np.ones(98, bool), np.full(3, np.nan, np.float32)


def _manifest_records(path: Path, split: str | None):
    try:
        df = mf.read(path)
    except Exception as exc:  # noqa: BLE001 - re-raised with the path
        raise ExportError(f"{path}: cannot read manifest: {exc}") from exc
    if split is not None:
        attrs = dict(df.attrs)
        df = df[df["split"] == split].reset_index(drop=True)
        df.attrs.update(attrs)
    pts, val, paths = landmarks_array(df), valid_array(df), image_paths(df)
    pose = pose_array(df)
    for i, sid in enumerate(df["sample_id"].to_list()):
        yield sid, paths[i], pts[i], val[i], pose[i]


def read_faces(path: str | Path, *, limit: int | None = None, split: str | None = None,
               images_root: str | Path | None = None, spread: bool = False, seed: int = 0,
               show_progress: bool = False) -> FaceSet:
    """Standard crops of the faces of a manifest or WFLW list whose images exist.

    Args:
        path: manifest (a ``.parquet`` file or a partitioned dataset directory), WFLW list ``.txt``, or a
            folder of WFLW lists.
        limit: stop after this many readable faces (in file order, or see ``spread``).
        spread: visit the faces in an order fixed by a hash of their id and ``seed`` instead of file order,
            so that a ``limit`` draws them from the whole file (calibration and held-out samples).
        split: manifest only: keep this split.
        images_root: WFLW lists only: folder holding the ``WFLW_images`` tree's contents (default: the
            ``WFLW_images`` folder beside ``WFLW_annotations``).

    Raises:
        ExportError: unreadable file, or not a single face with an image.
    """
    path = Path(path)
    if limit is not None and limit < 1:
        raise ExportError(f"{path}: the number of faces to read must be >= 1, got {limit}")
    if not path.exists():
        raise ExportError(f"{path}: no such manifest or WFLW list")
    root = Path(images_root) if images_root is not None else None
    wflw = path.suffix == ".txt" or (path.is_dir() and not (path / mf.MANIFEST_FILE).exists())
    records = _wflw_records(path, root) if wflw else _manifest_records(path, split)
    if spread:
        records = sorted(records, key=lambda r: hashlib.sha1(f"{seed}:{r[0]}".encode()).hexdigest())
    crops, lms, vals, poses, ids, skipped = [], [], [], [], [], []
    cache: dict[Path, np.ndarray | None] = {}
    for sid, img_path, pts, val, pose in progress(records, desc="faces", unit="faces", enabled=show_progress):
        if limit is not None and len(ids) >= limit:
            break
        if img_path is None:
            skipped.append((sid, "no image root for its source"))
            continue
        if img_path not in cache:  # faces of one image are usually adjacent: keep the last image only
            cache = {img_path: _read_image(img_path)}
        img = cache[img_path]
        if img is None:
            skipped.append((sid, f"image not found or unreadable: {img_path}"))
            continue
        ok = val & finite_points(pts)
        if not ok.any():
            skipped.append((sid, "no valid landmark"))
            continue
        params = face_crop_params(pts[None], ok[None])
        crops.append(crop_image(img, params[0]))
        lm = image_to_crop(pts[None], params)[0]
        lm[~ok] = np.nan
        lms.append(lm)
        vals.append(ok)
        poses.append(np.asarray(pose, np.float32))
        ids.append(sid)
    if not ids:
        reasons = "; ".join(sorted({r for _, r in skipped})[:3])
        raise ExportError(f"{path}: no face with a readable image ({len(skipped)} skipped: {reasons})")
    return FaceSet(np.stack(crops), np.stack(lms).astype(np.float32), np.stack(vals), np.stack(poses),
                   ids, skipped)


def photo_crops(paths, size: int = CROP_SIZE) -> np.ndarray:
    """Face crops of photos: ``(N, size, size, 3) uint8`` RGB.

    Each entry is ``PATH`` (the centre square of the photo, for numerical parity on real pixels) or
    ``PATH:x0,y0,x1,y1`` (a face box in pixels, cropped with the standard rule of
    :func:`pfpld_train.data.crop.box_crop_params`).
    """
    import cv2

    out = []
    for spec in paths:
        spec = str(spec)
        box = None
        if re.search(r":[-\d.]+,[-\d.]+,[-\d.]+,[-\d.]+$", spec):
            spec, _, coords = spec.rpartition(":")
            box = np.asarray([float(c) for c in coords.split(",")], np.float64)
        img = _read_image(Path(spec))
        if img is None:
            raise ExportError(f"{spec}: image not found or unreadable")
        if box is not None:
            out.append(crop_image(img, box_crop_params(box[None])[0], size))
            continue
        h, w = img.shape[:2]
        s = min(h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        out.append(cv2.resize(img[y0:y0 + s, x0:x0 + s], (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(out)
