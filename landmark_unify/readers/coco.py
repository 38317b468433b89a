"""COCO keypoint json (as MMPose's face datasets use it).

Layout: a folder with one or more ``*.json`` (else ``annotations/*.json``), images beside the json, in
``images/``, or at ``file_name`` relative to the root. ``keypoints`` is a flat ``[x, y, v] * K``; ``v == 0``
marks a missing point. The schema follows from K: 98 ``wflw98``, 106 ``lapa106``, 68 ``ibug68``, 29
``cofw29``, 19 ``aflw19``, 21 ``aflw21`` (option ``schema`` overrides). COCO-WholeBody annotations use
``face_kpts`` / ``face_box`` (68 points), and those with ``face_valid`` false carry no face and are not
read. ``bbox`` ``[x, y, w, h]`` becomes x_min, y_min, x_max, y_max. Coordinates are taken as 0-based
pixels; option ``offset`` is subtracted (MMPose's 300W json keeps the raw 1-based ``.pts`` values:
use ``offset=1`` there). Split: the json file name without its suffix.

Without ``offset``, a file whose coordinates look 1-based gets a note in the build's summary and metadata
naming the option (:func:`looks_one_based`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ParseError
from ._base import FLOAT32_MAX, ErrorSink, FaceRecord, Unit, check_box, plan_files, rel, sorted_files

SCHEMA_BY_K = {98: "wflw98", 106: "lapa106", 68: "ibug68", 29: "cofw29", 19: "aflw19", 21: "aflw21"}


def plan(source: str, root: Path, options: dict, chunk_bytes: int | None = None) -> list[Unit]:
    files = _files(root)
    return plan_files(source, "coco", root, files, options, 1,
                      "no .json files found in the root or its annotations/ folder")


def _files(root: Path) -> list[Path]:
    return sorted_files(root, "*.json") or sorted_files(root, "annotations/*.json") or sorted_files(root, "**/*.json")


def looks_one_based(doc) -> str | None:
    """Why the ``keypoints`` of COCO document ``doc`` look 1-based, or None.

    Two tests, either suffices:

    1. the image edge: with 0-based pixel centres an image spans ``[-0.5, W - 0.5]``, with 1-based ones
       ``[0.5, W + 0.5]``; a visible point in the strip ``(W - 0.5, W + 0.5]`` (or the same in y) lies outside
       the first and inside the second. It counts only when no point lies below 0.5 (the mirror strip that
       only 0-based files can fill), since annotations may leave the image.
    2. the layout: every annotation has the 68 iBUG points in ``keypoints`` and no visible coordinate is
       below 1. Every public 68-point format (iBUG ``.pts``, HRNet CSV, the ``.mat`` of 300W-LP and
       AFLW2000-3D) is 1-based and MMPose's 300W json keeps those values, while a 0-based face anywhere
       near the top or left edge has a coordinate below 1. COCO-WholeBody's 68 face points
       (``face_kpts``, 0-based COCO) are not looked at.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        return None
    sizes = {}
    for im in doc.get("images", []) if isinstance(doc.get("images"), list) else []:
        if isinstance(im, dict) and isinstance(im.get("id"), (int, str)) and _is_number(im.get("width")) \
                and _is_number(im.get("height")):
            sizes[im.get("id")] = (float(im["width"]), float(im["height"]))
    faces = n68 = beyond = below = 0
    lowest = np.inf
    for ann in doc["annotations"]:
        if not isinstance(ann, dict) or "face_kpts" in ann:  # COCO-WholeBody: its body keypoints are not read
            continue
        kp = ann.get("keypoints")
        if not isinstance(kp, list) or not kp or len(kp) % 3:
            continue
        try:
            arr = np.asarray(kp, dtype=np.float64).reshape(-1, 3)
        except (TypeError, ValueError, OverflowError):
            continue
        xy = arr[(arr[:, 2] != 0) & np.isfinite(arr).all(1), :2]
        if not len(xy):
            continue
        faces += 1
        n68 += len(arr) == 68
        lowest = min(lowest, float(xy.min()))
        below += int((xy < 0.5).sum())
        image_id = ann.get("image_id")
        size = sizes.get(image_id) if isinstance(image_id, (int, str)) else None
        if size is not None:
            beyond += int(((xy[:, 0] > size[0] - 0.5) & (xy[:, 0] <= size[0] + 0.5)).sum()
                          + ((xy[:, 1] > size[1] - 0.5) & (xy[:, 1] <= size[1] + 0.5)).sum())
    if not faces:
        return None
    if beyond and not below:
        return (f"{beyond} coordinate(s) lie in the half pixel past the right or bottom edge of a 0-based image "
                "and none below 0.5")
    if n68 == faces and lowest >= 1:
        return (f"68 iBUG points in each of its {faces} faces and no coordinate below 1; the 68-point formats "
                "(.pts, HRNet CSV, .mat) are 1-based")
    return None


def notes(source: str, root: Path, options: dict) -> list[str]:
    """A note per file whose coordinates look 1-based (none when option ``offset`` is given)."""
    if "offset" in options:
        return []
    out = []
    for path in _files(root):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # the read reports it
        why = looks_one_based(doc)
        if why:
            out.append(f"{rel(path, root)}: coordinates look 1-based ({why}); if they are, read it with "
                       f"--source {source}:coco[offset=1]=ROOT (MMPose's 300W json keeps the raw .pts values)")
    return out


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
    listed = doc.get("images", [])
    images: dict = {}
    twice: set = set()  # image ids listed more than once: which image an annotation means is unknown
    for im in listed if isinstance(listed, list) else []:
        if isinstance(im, dict) and isinstance(im.get("id"), (int, str)) and not isinstance(im.get("id"), bool):
            if im["id"] in images:
                twice.add(im["id"])
            images[im["id"]] = im
    for image_id in twice:
        images[image_id] = _Twice(image_id)
    split = Path(f).stem
    out = []
    for pos, ann in enumerate(doc["annotations"]):
        key = str(ann.get("id", f"#{pos}")) if isinstance(ann, dict) else f"#{pos}"
        try:
            rec = _annotation(ann, key, images, path, root, forced, offset)
        except ParseError as err:
            sink(err)
            continue
        if rec is None:  # not a face by the format's own rules: counted, not silent
            sink.note("COCO annotations without a face (face_valid false, or no visible keypoint)")
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
    if isinstance(kp, list) and any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in kp):
        first = next(j for j, v in enumerate(kp) if isinstance(v, bool) or not isinstance(v, (int, float)))
        raise ParseError(path, f"not a number: {kp[first]!r}", key=key,
                         field=f"{kp_field}[{first // 3}].{'xyv'[first % 3]}")
    if not isinstance(kp, list) or len(kp) == 0 or len(kp) % 3:
        raise ParseError(path, f"expected a flat list [x, y, v] * K; got {type(kp).__name__} of length {len(kp) if isinstance(kp, list) else '-'}", key=key, field=kp_field)
    k = len(kp) // 3
    schema = forced or SCHEMA_BY_K.get(k)
    if schema is None:
        raise ParseError(path, f"{k} keypoints match no known layout; known: {sorted(SCHEMA_BY_K)} (or pass the option schema=...)", key=key, field=kp_field)
    try:
        arr = np.asarray(kp, dtype=np.float64).reshape(k, 3)
    except (TypeError, ValueError, OverflowError):
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
    image_id = ann.get("image_id")
    image = images.get(image_id) if isinstance(image_id, (int, str)) and not isinstance(image_id, bool) else None
    if isinstance(image, _Twice):
        raise ParseError(path, f"image_id {image_id!r} is listed more than once in 'images'; which image the "
                               "annotation belongs to is unknown", key=key, field="image_id")
    if image is None or "file_name" not in image:
        raise ParseError(path, f"image_id {ann.get('image_id')!r} is not in 'images'", key=key, field="image_id")
    name = image["file_name"]
    if not isinstance(name, str) or not name.strip():
        raise ParseError(path, f"image {image_id!r}: file_name {name!r} is not a file name", key=key,
                         field="images.file_name")
    box = ann.get(box_field)
    bbox = None
    if box is not None:  # no box: the extent of the points (bbox_source 'landmarks'); a bad box is an error
        if not isinstance(box, list) or len(box) != 4:
            raise ParseError(path, f"box is not a list [x, y, w, h]: {box!r}", key=key, field=box_field)
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in box):
            raise ParseError(path, f"box is not four numbers: {box!r}", key=key, field=box_field)
        try:
            x, y, w, h = (float(v) for v in box)
        except OverflowError:
            raise ParseError(path, "box is out of range (beyond float32)", key=key, field=box_field) from None
        if not (np.isfinite([w, h]).all() and w > 0 and h > 0):
            raise ParseError(path, f"box width and height must be positive finite numbers; got w={w:g}, h={h:g}",
                             key=key, field=box_field)
        bbox = check_box((x - offset, y - offset, x - offset + w, y - offset + h), path, key=key, field=box_field)
    size = None
    if "width" in image or "height" in image:
        size = (_size(image, "width", path, key), _size(image, "height", path, key))
    return FaceRecord(points=pts, schema=schema, split="", image_path=_image(root, path.parent, name),
                      origin_file="", identity="", origin_key=key, bbox=bbox, image_size=size)


class _Twice:
    """An image id listed more than once in 'images'."""

    def __init__(self, image_id) -> None:
        self.id = image_id


def _size(image: dict, name: str, path, key) -> float:
    """The image's ``width`` or ``height``: a positive whole number of pixels (int32), else a ParseError."""
    v = image.get(name)
    try:
        f = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")
    except OverflowError:
        f = float("nan")
    if not (np.isfinite(f) and f == int(f) and 0 < f < 2**31):
        raise ParseError(path, f"image {image.get('id')!r}: {name} must be a positive whole number of pixels; "
                               f"got {v!r}", key=key, field=f"images.{name}")
    return f


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError, OverflowError):
        return False
    return True
