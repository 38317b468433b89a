"""COCO keypoint json (as MMPose's face datasets use it).

Layout: a folder with one or more ``*.json`` (else ``annotations/*.json``), images beside the json, in
``images/``, or at ``file_name`` relative to the root. ``keypoints`` is a flat ``[x, y, v] * K``; ``v == 0``
marks a missing point. The schema follows from K: 98 ``wflw98``, 106 ``lapa106``, 68 ``ibug68``, 29
``cofw29``, 19 ``aflw19``, 21 ``aflw21`` (option ``schema`` overrides). COCO-WholeBody annotations use
``face_kpts`` / ``face_box`` (68 points), and those with ``face_valid`` false carry no face and are not
read. ``bbox`` ``[x, y, w, h]`` becomes x_min, y_min, x_max, y_max. Coordinates are taken as 0-based
pixels; option ``offset`` is subtracted (MMPose's 300W json keeps the raw 1-based ``.pts`` values:
use ``offset=1`` there). Split: the json file name without its suffix.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ParseError
from ._base import FLOAT32_MAX, ErrorSink, FaceRecord, Unit, check_box, plan_files, rel, sorted_files

SCHEMA_BY_K = {98: "wflw98", 106: "lapa106", 68: "ibug68", 29: "cofw29", 19: "aflw19", 21: "aflw21"}


def plan(source: str, root: Path, options: dict, chunk_bytes: int | None = None) -> list[Unit]:
    files = sorted_files(root, "*.json") or sorted_files(root, "annotations/*.json") or sorted_files(root, "**/*.json")
    return plan_files(source, "coco", root, files, options, 1,
                      "no .json files found in the root or its annotations/ folder")


def _image(root: Path, json_dir: Path, name: str) -> str:
    for cand in (json_dir / name, json_dir / "images" / name, root / "images" / name, root / name, json_dir.parent / "images" / name):
        if cand.exists():
            return rel(cand, root)
    return rel(json_dir / name, root)


def read(unit: Unit, sink: ErrorSink) -> list[FaceRecord]:
    root = Path(unit.root)
    f = unit.files[0]
    path = root / f
    opts = unit.opts
    offset = float(opts.get("offset", 0.0))
    forced = opts.get("schema")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        sink(ParseError(path, f"cannot read as JSON: {exc}", field="file"))
        return []
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        sink(ParseError(path, "not a COCO keypoint file: no 'annotations' list", field="annotations"))
        return []
    images = {im.get("id"): im for im in doc.get("images", []) if isinstance(im, dict)}
    split = Path(f).stem
    out = []
    for pos, ann in enumerate(doc["annotations"]):
        key = str(ann.get("id", f"#{pos}")) if isinstance(ann, dict) else f"#{pos}"
        try:
            rec = _annotation(ann, key, images, path, root, forced, offset)
        except ParseError as err:
            sink(err)
            continue
        if rec is None:
            continue
        rec.split, rec.origin_file, rec.identity = split, f, f"{f}#{key}"
        out.append(rec)
    return out


def _annotation(ann, key, images, path, root, forced, offset):
    if not isinstance(ann, dict):
        raise ParseError(path, "annotation is not an object", key=key, field="annotations")
    if "face_kpts" in ann:
        if not ann.get("face_valid", True):
            return None
        kp_field, box_field = "face_kpts", "face_box"
    else:
        kp_field, box_field = "keypoints", "bbox"
    kp = ann.get(kp_field)
    if not isinstance(kp, list) or len(kp) == 0 or len(kp) % 3:
        raise ParseError(path, f"expected a flat list [x, y, v] * K; got {type(kp).__name__} of length {len(kp) if isinstance(kp, list) else '-'}", key=key, field=kp_field)
    k = len(kp) // 3
    schema = forced or SCHEMA_BY_K.get(k)
    if schema is None:
        raise ParseError(path, f"{k} keypoints match no known layout; known: {sorted(SCHEMA_BY_K)} (or pass the option schema=...)", key=key, field=kp_field)
    try:
        arr = np.asarray(kp, dtype=np.float64).reshape(k, 3)
    except (TypeError, ValueError):
        first = next((j for j, v in enumerate(kp) if not _is_number(v)), 0)
        raise ParseError(path, f"not a number: {kp[first]!r}", key=key,
                         field=f"{kp_field}[{first // 3}].{'xyv'[first % 3]}") from None
    vis = arr[:, 2]
    with np.errstate(invalid="ignore"):
        bad = (~np.isfinite(arr) | (np.abs(arr) > FLOAT32_MAX)) & (vis[:, None] != 0)
    bad[:, 2] = ~np.isfinite(vis)
    if bad.any():
        i, a = np.argwhere(bad)[0]
        what = "not a finite number" if not np.isfinite(arr[i, a]) else "out of range (beyond float32)"
        raise ParseError(path, f"{what}: {str(float(arr[i, a]))!r}", key=key, field=f"{kp_field}[{i}].{'xyv'[a]}")
    pts = arr[:, :2] - offset
    pts[vis == 0] = np.nan
    if not np.isfinite(pts).any():
        return None
    image = images.get(ann.get("image_id"))
    if image is None or "file_name" not in image:
        raise ParseError(path, f"image_id {ann.get('image_id')!r} is not in 'images'", key=key, field="image_id")
    box = ann.get(box_field)
    bbox = None
    if box is not None:  # no box: the extent of the points (bbox_source 'landmarks'); a bad box is an error
        if not isinstance(box, list) or len(box) != 4:
            raise ParseError(path, f"box is not a list [x, y, w, h]: {box!r}", key=key, field=box_field)
        try:
            x, y, w, h = (float(v) for v in box)
        except (TypeError, ValueError, OverflowError):
            raise ParseError(path, f"box is not four numbers: {box!r}", key=key, field=box_field) from None
        if not (np.isfinite([w, h]).all() and w > 0 and h > 0):
            raise ParseError(path, f"box width and height must be positive finite numbers; got w={w:g}, h={h:g}",
                             key=key, field=box_field)
        bbox = check_box((x - offset, y - offset, x - offset + w, y - offset + h), path, key=key, field=box_field)
    size = None
    if "width" in image or "height" in image:
        size = (_size(image, "width", path, key), _size(image, "height", path, key))
    return FaceRecord(points=pts, schema=schema, split="", image_path=_image(root, path.parent, str(image["file_name"])),
                      origin_file="", identity="", origin_key=key, bbox=bbox, image_size=size)


def _size(image: dict, name: str, path, key) -> float:
    """The image's ``width`` or ``height``: a positive whole number of pixels (int32), else a ParseError."""
    v = image.get(name)
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        f = float("nan")
    if not (np.isfinite(f) and f == int(f) and 0 < f < 2**31):
        raise ParseError(path, f"image {image.get('id')!r}: {name} must be a positive whole number of pixels; "
                               f"got {v!r}", key=key, field=f"images.{name}")
    return f


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True
