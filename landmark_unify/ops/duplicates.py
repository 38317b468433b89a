"""``find-duplicates``: copies of a face within and across manifests, and the leaks between splits.

Phase 1 (per slice of rows, on the engine): every image is read once and decoded by :func:`_decode` (``landmark_unify.images``);
per face, the keys of its content (SHA-1 of the file's bytes and of the decoded pixels) and two 64-bit
perceptual hashes of its aligned crop (:mod:`landmark_unify.core.facehash`): the face as it is and the
face mirrored, with the layout's mirror permutation. Phase 2 (this process): pairs from equal content keys
(``exact``), from hashes within ``max_distance`` bits found by multi-index hashing (``near``, ``mirror``),
and from the provenance table (``provenance``, :mod:`landmark_unify.ops.provenance`); ``leak`` marks the
pairs that cross from a test split (or a known test set) to another split. The output is specified in
``docs/spec/duplicates.md``.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import manifest as mf
from ..core import facehash as fh
from ..engines import RunOptions
from ..errors import ON_ERROR, LandmarkUnifyError, ParseError
from ..io import write_sidecar
from ..manifest import plan_slices, read_slice
from ..outputs import current, transactional
from ..progress import Progress
from .provenance import provenance_pairs, test_side
from .runner import UnitResult

#: Largest Hamming distance between the 128-bit verification hashes at which two faces are the same face.
#: Measured in ``docs/figures/duplicates.md``: copies under the transforms of the spec stay within it, distinct
#: faces lie beyond it.
MAX_DISTANCE = 28
#: Candidates: faces whose 64-bit index hashes lie within this many bits (multi-index hashing).
CANDIDATE_DISTANCE = 10
#: Side of the crop warped from the image before it is reduced (area averaging) to the hash's crop.
WARP_SIZE = 4 * fh.CROP_SIZE
#: Two faces on images of the same content are one face when their landmarks agree within this fraction of
#: the face size (:func:`landmark_unify.ops.merge.same_face`).
EXACT_TOLERANCE = 0.05
#: Pair kinds, strongest evidence first.
KINDS = ("exact", "near", "mirror", "provenance")
#: The columns read from each manifest.
COLUMNS = ("sample_id", "source", "split", "image_path", "landmarks", "valid", "bbox", "source_schema")
#: The output columns, in order (``docs/spec/duplicates.md``).
PAIR_COLUMNS = ("sample_id_a", "sample_id_b", "source_a", "source_b", "split_a", "split_b", "image_path_a",
                "image_path_b", "kind", "distance", "leak", "test_a", "test_b", "provenance", "input_a", "input_b")
PAIR_SCHEMA = pa.schema([
    ("sample_id_a", pa.string()), ("sample_id_b", pa.string()), ("source_a", pa.string()), ("source_b", pa.string()),
    ("split_a", pa.string()), ("split_b", pa.string()), ("image_path_a", pa.string()), ("image_path_b", pa.string()),
    ("kind", pa.string()), ("distance", pa.int32()), ("leak", pa.bool_()), ("test_a", pa.bool_()),
    ("test_b", pa.bool_()), ("provenance", pa.string()), ("input_a", pa.int32()), ("input_b", pa.int32()),
])


# --- descriptors ----------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def face_template() -> np.ndarray:
    """The anchors' places in the crop, from the frontal view of the face shipped with the package."""
    from ..face_models import SHIPPED_FACE

    with np.load(SHIPPED_FACE) as data:
        pts = np.asarray(data["points98"], np.float64)[:, :2] * np.array([1.0, -1.0])  # y up -> image rows
    return fh.anchor_template(pts)


def _content_key(*parts) -> int:
    h = hashlib.sha1()
    for p in parts:
        h.update(p)
    return int.from_bytes(h.digest()[:8], "little")


#: JPEG markers that carry metadata only (APP0-APP15, COM): left out of a JPEG's pixel key.
_JPEG_METADATA = frozenset(range(0xE0, 0xF0)) | {0xFE}


def _jpeg_pixel_parts(data: bytes) -> list | None:
    """The segments of a JPEG that decide its pixels (every segment but APPn and COM, then the scan data), or
    None when ``data`` is not a JPEG this walk understands."""
    if data[:2] != b"\xff\xd8":
        return None
    view = memoryview(data)
    parts, i, n = [], 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the rest decides the pixels
            parts.append(view[i:])
            return parts
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker not in _JPEG_METADATA:
            parts.append(view[i:i + 2 + length])
        i += 2 + length
    return None


def pixel_key(data: bytes, img: np.ndarray) -> int:
    """A 64-bit key of an image's pixels: for a JPEG, SHA-1 of its tables and scan data without the metadata
    segments (the same stream decodes to the same pixels, whatever EXIF or comments it carries); for any other
    format, SHA-1 of the decoded pixels and their shape."""
    parts = _jpeg_pixel_parts(data)
    if parts is not None:
        return _content_key(b"jpeg", *parts)
    return _content_key(np.array(img.shape, np.int64).tobytes(), np.ascontiguousarray(img).data)


def _pyramid(grey: np.ndarray, level: int, cache: dict) -> np.ndarray:
    import cv2

    while level not in cache:
        top = max(cache)
        cache[top + 1] = cv2.pyrDown(cache[top])
    return cache[level]


def _warp_crops(grey: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """``(F, CROP_SIZE, CROP_SIZE)`` float32 crops of ``grey`` under ``mats`` (``(F, 2, 3)``, image -> crop of
    side CROP_SIZE): warped at WARP_SIZE from the pyramid level that keeps the warp from shrinking by more than
    two, then area-reduced, so that the crop does not alias whatever the face's size."""
    import cv2

    cache = {0: grey}
    up = WARP_SIZE / fh.CROP_SIZE
    out = np.empty((len(mats), fh.CROP_SIZE, fh.CROP_SIZE), np.float32)
    for k, m in enumerate(mats):
        scale = float(np.sqrt(abs(np.linalg.det(m[:, :2])))) * up  # warp pixels per image pixel
        level = int(np.clip(np.floor(np.log2(max(0.5 / max(scale, 1e-9), 1.0))), 0, 12))
        src = _pyramid(grey, level, cache)
        mm = m * up
        # pixel centres: crop pixel c covers warp pixels around c*up + (up-1)/2; pixel x of pyramid level L
        # is pixel 2^L x + (2^L-1)/2 of the image
        mm[:, 2] += mm[:, :2] @ np.full(2, (2.0 ** level - 1) / 2) + (up - 1) / 2
        mm[:, :2] *= 2.0 ** level
        w = cv2.warpAffine(src, mm, (WARP_SIZE, WARP_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[k] = cv2.resize(w, (fh.CROP_SIZE, fh.CROP_SIZE), interpolation=cv2.INTER_AREA)
    return out


def face_matrices(landmarks: np.ndarray, valid: np.ndarray, bbox: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per face, the image -> crop maps of the face and of its mirror image, and whether the face was aligned
    on its anchors (else its box is the crop, a square around it). Batched over the faces of many images.

    landmarks ``(N, 98, 2)``, valid ``(N, 98)``, bbox ``(N, 4)``. The mirror map aligns the face as its mirror
    image shows it: points through the layout's mirror permutation with x negated (``flip_points``), composed
    with that negation, so a mirrored copy of the face gets the hash of this face's mirror. (The flip of an
    image ``W`` wide is x -> W - 1 - x; the similarity fit absorbs the shift, so the map needs no width.)"""
    idx = fh.anchor_indices()
    tpl = face_template()
    lm = np.asarray(landmarks, np.float64)
    vd = np.asarray(valid, bool)
    m, ok = fh.align_to_template(lm[:, idx], vd[:, idx], tpl)
    flip = fh.get_layout("wflw98").flip_indices
    neg = np.array([-1.0, 1.0])
    mm, mok = fh.align_to_template((lm[:, flip] * neg)[:, idx], vd[:, flip][:, idx], tpl)
    mm[:, :, 0] *= -1.0  # compose with x -> -x
    box = ~(ok & mok)
    if box.any():
        b = np.asarray(bbox, np.float64)[box]
        side = np.maximum(np.max(b[:, 2:] - b[:, :2], axis=1), 1.0)
        sc = fh.CROP_SIZE / side
        centre = (b[:, :2] + b[:, 2:]) / 2
        sq = np.zeros((int(box.sum()), 2, 3))
        sq[:, 0, 0] = sq[:, 1, 1] = sc
        sq[:, :, 2] = (fh.CROP_SIZE - 1) / 2 - sc[:, None] * centre
        m[box] = sq
        msq = sq.copy()  # the box crop mirrored about its centre: x -> (S - 1) - x
        msq[:, 0, :] *= -1.0
        msq[:, 0, 2] += fh.CROP_SIZE - 1
        mm[box] = msq
    return m, mm, ~box


def window_boxes(mats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per map (image -> crop), the image box its crop samples, with a margin for the pyramid's filters:
    ``(lo, hi)``, each ``(N, 2)`` pixels (not clamped)."""
    s = fh.CROP_SIZE
    corners = np.array([[-0.5, -0.5], [s - 0.5, -0.5], [-0.5, s - 0.5], [s - 0.5, s - 0.5]])
    a, t = mats[:, :, :2], mats[:, :, 2]
    inv = np.linalg.inv(a)
    pts = np.einsum("nij,nkj->nki", inv, corners[None] - t[:, None, :])
    scale = np.sqrt(np.abs(np.linalg.det(a))) * (WARP_SIZE / s)
    margin = (8.0 / np.maximum(scale, 1e-9) + 8.0)[:, None]  # a few source pixels at the level used
    return np.floor(pts.min(1) - margin), np.ceil(pts.max(1) + margin) + 1


@dataclass
class FaceKeys:
    """Phase 1's result for a slice: per face, content keys and hashes (0 where ``has_image`` is False)."""

    file_key: np.ndarray
    pixel_key: np.ndarray
    hash: np.ndarray  # (N, 3) uint64: index hash, verification hash (fh.dct_hashes)
    mirror_hash: np.ndarray
    has_image: np.ndarray
    aligned: np.ndarray
    missing: list = field(default_factory=list)


def face_keys(df: pd.DataFrame, on_error: str = "skip") -> FaceKeys:
    """The descriptors of the faces of ``df`` (manifest rows, ``df.attrs`` as :func:`manifest.read` sets
    them). Each image is decoded once. A missing or undecodable image raises (``on_error="raise"``) or is
    listed in ``missing`` and its faces get no image descriptors."""
    n = len(df)
    out = FaceKeys(np.zeros(n, np.uint64), np.zeros(n, np.uint64), np.zeros((n, 3), np.uint64),
                   np.zeros((n, 3), np.uint64), np.zeros(n, bool), np.zeros(n, bool))
    if not n:
        return out
    paths = mf.image_paths(df)
    # everything that needs no pixels, for all faces at once
    m, mm, aligned = face_matrices(mf.landmarks_array(df), mf.valid_array(df), mf.bbox_array(df))
    mats = np.concatenate([m, mm])
    lo, hi = window_boxes(mats)
    crops = np.zeros((2 * n, fh.CROP_SIZE, fh.CROP_SIZE), np.float32)
    rows_of: dict = {}
    for i, p in enumerate(paths):
        rows_of.setdefault(None if p is None else str(p), []).append(i)
    for p, rows in rows_of.items():
        got = ParseError(str(df["image_path"].iloc[rows[0]]), f"source {df['source'].iloc[rows[0]]!r} has no root",
                         field="image") if p is None else _decode(p)
        if isinstance(got, ParseError):
            if on_error == "raise":
                raise ParseError(got.path, f"{got.reason} (row sample_id {df['sample_id'].iloc[rows[0]]}); "
                                           "--on-error skip counts and lists such faces", field="image")
            for i in rows:
                rec = {"sample_id": str(df["sample_id"].iloc[i]), "source": str(df["source"].iloc[i])}
                rec.update(got.as_record())
                out.missing.append(rec)
            continue
        data, img = got
        r = np.asarray(rows)
        out.file_key[r] = _content_key(data)
        out.pixel_key[r] = pixel_key(data, img)
        both = np.concatenate([r, r + n])
        crops[both] = _image_crops(img, mats[both], lo[both].min(0), hi[both].max(0))
        out.has_image[r] = True
    hashes = fh.dct_hashes(crops)
    seen = out.has_image[:, None]
    out.hash[:], out.mirror_hash[:] = np.where(seen, hashes[:n], 0), np.where(seen, hashes[n:], 0)
    out.aligned[:] = aligned & out.has_image
    return out


def image_face_hashes(img: np.ndarray, landmarks: np.ndarray, valid: np.ndarray, bbox: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hashes of the faces of one decoded image (BGR or grey): ``(hash, mirror_hash, aligned)``, hashes
    ``(F, 3)`` (:func:`~landmark_unify.core.facehash.dct_hashes`), for the faces' ``landmarks`` ``(F, 98, 2)``,
    ``valid`` ``(F, 98)`` and ``bbox`` ``(F, 4)``."""
    m, mm, aligned = face_matrices(landmarks, valid, bbox)
    mats = np.concatenate([m, mm])
    lo, hi = window_boxes(mats)
    hashes = fh.dct_hashes(_image_crops(img, mats, lo.min(0), hi.max(0)))
    f = len(landmarks)
    return hashes[:f], hashes[f:], aligned


def _image_crops(img: np.ndarray, mats: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The crops of ``mats`` from ``img``, converting and reducing only the part ``[lo, hi)`` (clamped) that the
    crops sample."""
    import cv2

    h, w = img.shape[:2]
    x0, y0 = int(np.clip(lo[0], 0, w - 1)), int(np.clip(lo[1], 0, h - 1))
    x1, y1 = int(np.clip(hi[0], x0 + 1, w)), int(np.clip(hi[1], y0 + 1, h))
    roi = img[y0:y1, x0:x1]
    grey = cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY) if roi.ndim == 3 else roi
    shifted = mats.copy()
    shifted[:, :, 2] += mats[:, :, :2] @ np.array([x0, y0], np.float64)
    return _warp_crops(grey, shifted)


# --- phase 1 on the engine ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DupUnit:
    input: int
    slice: mf.RowSlice


def _keys_task(inputs: Sequence[tuple[str, dict]], where, on_error: str, index: int, unit: DupUnit) -> UnitResult:
    """Phase 1 on a worker: the rows of a slice (after ``where``) with their content keys and hashes."""
    from ..manifest.filters import filter_rows

    t0 = time.perf_counter()
    path, meta = inputs[unit.input]
    wanted = list(dict.fromkeys([*COLUMNS, *(where.columns if where is not None else ())]))
    df = mf.dataframe_from_table(read_slice(unit.slice, columns=wanted))
    df.attrs["manifest"] = meta
    df.attrs["path"] = str(Path(path).resolve())
    total = len(df)
    if where is not None:
        df = filter_rows(df, where).reset_index(drop=True)
        df.attrs["manifest"], df.attrs["path"] = meta, str(Path(path).resolve())
    keys = face_keys(df, on_error)
    rows = {c: df[c].astype(object).to_numpy() for c in ("sample_id", "source", "split", "image_path", "source_schema")}
    rows["bbox"] = mf.bbox_array(df).astype(np.float32) if len(df) else np.zeros((0, 4), np.float32)
    return UnitResult(None, index=index, rows=len(df), skipped=keys.missing,
                      seconds={"process": time.perf_counter() - t0},
                      extra={"keys": keys, "rows": rows, "total": total})


# --- phase 2: pairs ---------------------------------------------------------------------------------------

def _same_box(box: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Whether the boxes of faces ``i`` and ``j`` (on the same image content) frame the same face: centres
    within a quarter of the face size, sizes within a factor 1.5."""
    b = box.astype(np.float64)
    size = np.maximum(np.max(b[:, 2:] - b[:, :2], axis=1), 1.0)
    centre = (b[:, :2] + b[:, 2:]) / 2
    d = np.linalg.norm(centre[i] - centre[j], axis=1)
    ratio = size[i] / size[j]
    return (d <= 0.25 * np.maximum(size[i], size[j])) & (ratio <= 1.5) & (ratio >= 1 / 1.5)


def _equal_pairs(key: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)``, ``i < j``, of ``rows`` whose ``key`` values are equal."""
    ii, jj = [], []
    for a, b in fh.equal_key_pairs(key[rows], key[rows], True):
        ii.append(rows[a])
        jj.append(rows[b])
    if not ii:
        e = np.zeros(0, np.int64)
        return e, e.copy()
    i, j = np.concatenate(ii), np.concatenate(jj)
    return np.minimum(i, j), np.maximum(i, j)


def pair_faces(file_key, pixel_key, hashes, mirror_hashes, has_image, box, max_distance: int = MAX_DISTANCE,
               bands: int = fh.BANDS, tables: int = fh.TABLES,
               candidate_distance: int = CANDIDATE_DISTANCE) -> pd.DataFrame:
    """The pixel pairs of a set of faces: columns ``i``, ``j`` (``i < j``), ``kind`` (``exact``, ``near``,
    ``mirror``) and ``distance`` (bits of the 128-bit verification hashes). ``hashes`` and ``mirror_hashes``:
    ``(N, 3)`` uint64 (:func:`~landmark_unify.core.facehash.dct_hashes`). Faces without an image take no part.

    Exact: the same file bytes or pixels and the same face on them (boxes agree, verification hashes within
    ``max_distance``). Near: the 64-bit index hashes within ``candidate_distance`` (multi-index hashing, no
    all-pairs comparison), then the verification hashes within ``max_distance``. Mirror: the same with one
    face's mirror hashes against the other's hashes, and closer than their plain hashes."""
    rows = np.flatnonzero(np.asarray(has_image, bool))
    h = np.asarray(hashes, np.uint64).reshape(-1, 3)
    hm = np.asarray(mirror_hashes, np.uint64).reshape(-1, 3)
    n = len(h)
    frames = []
    # exact
    ei, ej = [], []
    for key in (np.asarray(file_key, np.uint64), np.asarray(pixel_key, np.uint64)):
        i, j = _equal_pairs(key, rows)
        ei.append(i)
        ej.append(j)
    i, j = np.concatenate(ei), np.concatenate(ej)
    if i.size:
        k = np.unique(i * n + j)
        i, j = k // n, k % n
        d = fh.long_hamming(h[i, 1:], h[j, 1:])
        ok = _same_box(np.asarray(box), i, j) & (d <= max_distance)
        frames.append(pd.DataFrame({"i": i[ok], "j": j[ok], "kind": "exact", "distance": np.zeros(ok.sum(), np.int64)}))
    # near: plain hashes; mirror: one side's mirror hash against the other's hash
    ni, nj, _ = fh.band_pairs(h[rows, 0], h[rows, 0], candidate_distance, same=True, bands=bands, tables=tables)
    ni, nj = rows[ni], rows[nj]
    nd = fh.long_hamming(h[ni, 1:], h[nj, 1:])
    keep = nd <= max_distance
    frames.append(pd.DataFrame({"i": ni[keep], "j": nj[keep], "kind": "near", "distance": nd[keep]}))
    mi, mj, _ = fh.band_pairs(hm[rows, 0], h[rows, 0], candidate_distance, same=False, bands=bands, tables=tables)
    mi, mj = rows[mi], rows[mj]
    md = fh.long_hamming(hm[mi, 1:], h[mj, 1:])
    keep = (mi != mj) & (md <= max_distance)
    mi, mj, md = mi[keep], mj[keep], md[keep]
    frames.append(pd.DataFrame({"i": np.minimum(mi, mj), "j": np.maximum(mi, mj), "kind": "mirror", "distance": md}))
    pairs = pd.concat(frames, ignore_index=True)
    if not len(pairs):
        return pairs
    # one row per pair: exact first, then the smaller distance, near before mirror on a tie
    pairs["rank"] = pairs["kind"].map({k: r for r, k in enumerate(KINDS)})
    pairs["first"] = np.where(pairs["kind"] == "exact", 0, 1)
    pairs = pairs.sort_values(["i", "j", "first", "distance", "rank"], kind="stable")
    pairs = pairs.drop_duplicates(["i", "j"], keep="first")
    return pairs[["i", "j", "kind", "distance"]].reset_index(drop=True)


@dataclass
class DuplicatesReport:
    """What :func:`find_duplicates` found: faces, pairs by kind, leaks, and the faces whose image was missing."""

    faces: int
    faces_total: int
    pairs: dict
    leaks: int
    missing: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    output: str = ""

    @property
    def summary(self) -> str:
        lines = [f"faces: {self.faces}" + (f" (of {self.faces_total}, --where)" if self.faces != self.faces_total else ""),
                 "pairs: " + ", ".join(f"{self.pairs.get(k, 0)} {k}" for k in KINDS)
                 + f"; {sum(self.pairs.values())} in all, {self.leaks} leak(s) across a test split"]
        if self.missing:
            reasons: dict = {}
            for m in self.missing:
                reasons[m.get("reason", "?")] = reasons.get(m.get("reason", "?"), 0) + 1
            lines.append(f"faces without a readable image: {len(self.missing)} ("
                         + "; ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
                         + "): provenance only for them; listed in " + str(mf.skipped_path_for(self.output)))
        return "\n".join(lines)


@transactional
def find_duplicates(inputs, output: str | os.PathLike, *, where=None, max_distance: int = MAX_DISTANCE,
                    on_error: str = "raise", bands: int = fh.BANDS, tables: int = fh.TABLES, overwrite: bool = False,
                    command: str | None = None, run: RunOptions | None = None, **engine) -> DuplicatesReport:
    """Find the pairs of faces that are copies of each other within and across the manifests ``inputs``
    (files or datasets) and write them to ``output`` (Parquet, ``docs/spec/duplicates.md``).

    where: a row filter applied to every input. max_distance: Hamming bits (of 128) of the verification hashes
    of ``near`` and ``mirror`` pairs. on_error: ``raise`` stops at the first missing or undecodable image; ``skip`` counts those faces,
    lists them in ``OUT.skipped.jsonl`` and pairs them by provenance only. bands: fields of the multi-index
    hash (default ``max_distance + 1``: every pair within ``max_distance`` is found). run: the engine settings
    (:class:`~landmark_unify.engines.RunOptions`, or its fields as keywords)."""
    from ..manifest.filters import parse_filter

    opts = RunOptions.of(run, **engine)
    if on_error not in ON_ERROR:
        raise LandmarkUnifyError(f"on_error must be one of {list(ON_ERROR)}; got {on_error!r}")
    if not 0 <= int(max_distance) < fh.LONG_BITS:
        raise LandmarkUnifyError(f"max_distance must be in 0..{fh.LONG_BITS - 1}; got {max_distance}")
    paths = [Path(p) for p in inputs]
    if not paths:
        raise LandmarkUnifyError("find-duplicates needs at least one manifest")
    out = Path(output)
    current().file(out, inputs=paths, overwrite=overwrite)
    flt = parse_filter(where, mf.COLUMN_NAMES) if isinstance(where, str) else where
    ins, units = [], []
    for k, p in enumerate(paths):
        slices, meta = plan_slices(p, opts.rows_per_partition)
        ins.append((str(p), meta))
        units += [DupUnit(k, s) for s in slices]
    t0 = time.perf_counter()
    done = []
    total_rows = sum(u.slice.length for u in units)
    with opts.start() as eng, \
            Progress(total=total_rows, desc=f"{out.name}: hashing", unit="faces", enabled=opts.progress) as bar:
        for _, r in eng.map(partial(_keys_task, ins, flt, on_error), units, lambda i: units[i].slice.describe()):
            done.append(r)
            bar.update(int(r.extra["total"]))
    done.sort(key=lambda r: r.index)
    t_keys = time.perf_counter() - t0
    inp = np.concatenate([np.full(r.rows, units[r.index].input, np.int32) for r in done]) if done else np.zeros(0, np.int32)

    def cat(get, dtype=None):
        parts = [get(r) for r in done]
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    k = {f: cat(lambda r, f=f: getattr(r.extra["keys"], f), np.uint64)
         for f in ("file_key", "pixel_key", "hash", "mirror_hash", "has_image")}
    rows = {c: cat(lambda r, c=c: r.extra["rows"][c], object)
            for c in ("sample_id", "source", "split", "image_path", "source_schema")}
    box = np.concatenate([r.extra["rows"]["bbox"] for r in done]) if done else np.zeros((0, 4), np.float32)
    missing = [m for r in done for m in r.skipped]
    t1 = time.perf_counter()
    pairs = pair_faces(k["file_key"], k["pixel_key"], k["hash"], k["mirror_hash"], k["has_image"].astype(bool), box,
                       max_distance, bands, tables)
    table = _pairs_table(pairs, inp, rows)
    t_pairs = time.perf_counter() - t1
    counts = {kind: int(n) for kind, n in zip(*np.unique(table.column("kind").to_numpy(zero_copy_only=False),
                                                          return_counts=True))}
    leaks = int(np.sum(table.column("leak").to_numpy(zero_copy_only=False)))
    meta = {"command": command or "find-duplicates", "inputs": [str(p) for p in paths], "where": getattr(flt, "text", None), "max_distance": int(max_distance),
            "bands": int(bands), "tables": int(tables),
            "candidate_distance": CANDIDATE_DISTANCE, "faces": int(inp.size),
            "faces_missing_image": len(missing), "pairs": counts, "leaks": leaks,
            "hash": f"dct{fh.HASH_BITS} index + dct{fh.LONG_BITS} verification hashes of aligned {fh.CROP_SIZE}x{fh.CROP_SIZE} crops, anchors "
                    + ",".join(fh.ANCHOR_GROUPS) + f" ({len(fh.ANCHOR_POINTS)} points)"}
    write_pairs(table, out, meta)
    write_sidecar(missing, mf.skipped_path_for(out))
    total = sum(int(r.extra["total"]) for r in done)
    return DuplicatesReport(int(inp.size), total, counts, leaks, missing,
                            {"keys": t_keys, "pairs": t_pairs}, str(out))


def _pairs_table(pairs: pd.DataFrame, inp: np.ndarray, rows: Mapping[str, np.ndarray]) -> pa.Table:
    """The output table: pixel pairs and provenance pairs, one row per pair, sorted by (a, b)."""
    from .provenance import classify, known_test_set

    n = inp.size
    cls = classify(pd.Series(rows["image_path"]), pd.Series(rows["source_schema"]))
    rules, keys = cls["rule"].to_numpy(), cls["key"].to_numpy()
    test = test_side(pd.Series(rows["split"]), rules, keys)
    pi, pj, ext = provenance_pairs(rows["source"], rules, keys)
    prov = pd.DataFrame({"i": pi, "j": pj, "kind": "provenance", "distance": -1})
    ext_rows = pd.DataFrame({"i": ext, "j": -1, "kind": "provenance", "distance": -1})
    allp = pd.concat([pairs.assign(order=0), prov.assign(order=1), ext_rows.assign(order=1)], ignore_index=True)
    allp = allp.sort_values(["i", "j", "order"], kind="stable").drop_duplicates(["i", "j"], keep="first")
    i = allp["i"].to_numpy(np.int64)
    j = allp["j"].to_numpy(np.int64)
    ext_mask = j < 0
    jj = np.where(ext_mask, 0, j)
    if n == 0:
        jj = j

    def side(col, idx, external):
        v = rows[col][idx] if n else np.zeros(0, object)
        return np.where(external, None, v) if external is not None else v

    key_i = keys[i] if n else np.zeros(0, object)
    key_j = keys[jj] if n else np.zeros(0, object)
    shared = np.array([a is not None and (e or a == b) for a, b, e in zip(key_i, key_j, ext_mask)], bool)
    ext_set = [known_test_set(kk) if e else None for kk, e in zip(key_i, ext_mask)]
    source_b = np.where(ext_mask, [f"{t[0]} (not in the inputs)" if t else None for t in ext_set],
                        side("source", jj, None))
    split_b = np.where(ext_mask, [t[1] if t else None for t in ext_set], side("split", jj, None))
    path_b = np.where(ext_mask, [kk.split("/", 1)[1] if e else None for kk, e in zip(key_i, ext_mask)],
                      side("image_path", jj, None))
    test_a = test[i] if n else np.zeros(0, bool)
    test_b = np.where(ext_mask, True, test[jj] if n else np.zeros(0, bool))
    dist = allp["distance"].to_numpy(np.int64)
    cols = {
        "sample_id_a": rows["sample_id"][i] if n else [], "sample_id_b": side("sample_id", jj, ext_mask),
        "source_a": rows["source"][i] if n else [], "source_b": source_b,
        "split_a": rows["split"][i] if n else [], "split_b": split_b,
        "image_path_a": rows["image_path"][i] if n else [], "image_path_b": path_b,
        "kind": allp["kind"].to_numpy(object),
        "distance": pa.array(dist, pa.int32(), mask=dist < 0),
        "leak": test_a != test_b, "test_a": test_a, "test_b": test_b,
        "provenance": np.where(shared, key_i, None) if len(key_i) else [],
        "input_a": inp[i] if n else [], "input_b": pa.array(np.where(ext_mask, 0, inp[jj] if n else 0).astype(np.int32),
                                                            pa.int32(), mask=ext_mask),
    }
    arrays = [c if isinstance(c, pa.Array) else pa.array(list(c) if not isinstance(c, np.ndarray) or c.dtype == object
                                                          else c, f.type)
              for c, f in zip((cols[n_] for n_ in PAIR_COLUMNS), PAIR_SCHEMA)]
    return pa.Table.from_arrays(arrays, schema=PAIR_SCHEMA)


def write_pairs(table: pa.Table, out: str | os.PathLike, meta: Mapping) -> Path:
    """Write the pairs table atomically, with ``meta`` as JSON under the ``landmark_unify`` metadata key."""
    import json

    import pyarrow.parquet as pq

    from ..io import atomic_path
    from ..manifest.schema import library_version

    meta = {"format": "duplicates", "format_version": "1.0", "library_version": library_version(), **meta}
    t = table.replace_schema_metadata({mf.METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})
    with atomic_path(out) as tmp:
        pq.write_table(t, tmp, compression="zstd")
    return Path(out)


def read_pairs(path: str | os.PathLike) -> pd.DataFrame:
    """A duplicates file as a DataFrame (its metadata in ``attrs["duplicates"]``); a file that is not one is a
    ManifestError naming the missing columns."""
    import json

    import pyarrow.parquet as pq

    from ..errors import ManifestError
    from ..manifest.files import parquet_read

    with parquet_read(path):
        t = pq.read_table(path)
    missing = [c for c in PAIR_COLUMNS if c not in t.column_names]
    if missing:
        raise ManifestError(f"{path}: not a find-duplicates output; missing columns {missing}")
    df = t.to_pandas()
    raw = (t.schema.metadata or {}).get(mf.METADATA_KEY)
    df.attrs["duplicates"] = json.loads(raw) if raw else {}
    return df


def _decode(path) -> tuple[bytes, np.ndarray] | ParseError:
    """The file's bytes and its pixels (BGR) through the project's image reader, or a ParseError naming
    the file (returned, not raised, so a bulk run can count it)."""
    from ..images import ImageError, read_image_with_bytes

    try:
        return read_image_with_bytes(path, channel_order="bgr")
    except ImageError as exc:
        return ParseError(exc.path, exc.reason, field="image")
