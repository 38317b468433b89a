"""Perceptual hashes of aligned face crops, and the banded index that pairs them without comparing all pairs.

Pure and batched: the image decoding and warping live in :mod:`landmark_unify.ops.duplicates`; this module
gets points and grey crops as arrays.

- :func:`anchor_template` places a layout's anchor points (named, e.g. the eye corners, the nose and the
  mouth corners) in a square crop, left-right symmetric under the layout's mirror permutation.
- :func:`align_to_template` fits one similarity transform per face (rotation, uniform scale, translation;
  least squares over the valid anchors) from image pixels to the crop.
- :func:`dct_hash` turns ``(N, S, S)`` grey crops into 64-bit hashes: the 2-D DCT-II of each crop, its 64
  lowest-frequency AC coefficients in zig-zag order, one bit each: above or below their median.
- :func:`hamming` counts differing bits; :func:`band_pairs` finds every pair of hashes within a Hamming
  distance by multi-index hashing (``docs/spec/duplicates.md`` gives the guarantee and the complexity).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .layouts import get_layout

#: Point groups every face is aligned on: the inner face (brows, nose, eyes, lips), named by the layout, not the
#: contour (ambiguous along the outline, projected on turned faces) nor the pupils (few layouts have them). Many
#: points average annotation noise out: another annotation of the same face moves the crop little.
ANCHOR_GROUPS = ("brow", "nose", "eye", "lip")
#: The anchor points, by name in the canonical layout (a face uses those of them that are valid).
ANCHOR_POINTS = tuple(n for n, g in zip(get_layout("wflw98").names, get_layout("wflw98").groups) if g in ANCHOR_GROUPS)
#: Side of the aligned crop the hash is computed on, pixels.
CROP_SIZE = 32
#: Bits of the index hash (the 64 lowest-frequency AC coefficients of the crop's DCT): what the multi-index
#: hashing bands.
HASH_BITS = 64
#: Bits of the verification hash (the 128 lowest): what decides a pair.
LONG_BITS = 128
#: Where the anchors sit in the crop: the outer eye corners are this fraction of the side apart, and the
#: anchors' centre is at these fractions of the side (x, y). The crop holds the inner face, brows to chin.
EYE_SPAN = 0.56
ANCHOR_CENTRE = (0.5, 0.5)
#: Fewest valid anchors a face needs to be aligned (a similarity has 4 degrees of freedom).
MIN_ANCHORS = 3


def anchor_indices(layout: str = "wflw98", names: Sequence[str] = ANCHOR_POINTS) -> np.ndarray:
    """Indices of the anchor points in ``layout``, by name."""
    lay = get_layout(layout)
    return np.array([lay.index(n) for n in names], dtype=np.intp)


def anchor_template(points: np.ndarray, layout: str = "wflw98", names: Sequence[str] = ANCHOR_POINTS,
                    size: int = CROP_SIZE) -> np.ndarray:
    """``(A, 2)`` crop coordinates of the anchors, from ``points`` (``(K, 2)`` a mean face of ``layout``,
    image axes: x right, y down). Made exactly left-right symmetric with the layout's mirror permutation
    (the mirror of an anchor must be an anchor), scaled so that the outer eye corners are ``EYE_SPAN *
    size`` apart and centred at ``ANCHOR_CENTRE``."""
    lay = get_layout(layout)
    idx = anchor_indices(layout, names)
    flip = lay.flip_indices
    missing = sorted({lay.names[flip[i]] for i in idx} - {lay.names[i] for i in idx})
    if missing:
        raise ValueError(f"anchor set is not mirror-closed: the mirrors {missing} are not anchors")
    pts = np.asarray(points, np.float64)[:, :2]
    mirrored = pts[flip] * np.array([-1.0, 1.0])
    sym = (pts + mirrored) / 2
    t = sym[idx]
    t = t - t.mean(0)
    eyes = [list(names).index(n) for n in lay.norm_pair]
    t = t / np.linalg.norm(t[eyes[0]] - t[eyes[1]]) * EYE_SPAN * size
    return t + np.array(ANCHOR_CENTRE) * size - 0.5


def align_to_template(points: np.ndarray, valid: np.ndarray, template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Similarity transforms mapping each face's anchors onto ``template``.

    points: ``(N, A, 2)`` anchor pixels (NaN where invalid); valid: ``(N, A)``; template: ``(A, 2)``.
    Returns ``(M, ok)``: ``(N, 2, 3)`` affine matrices (image -> crop; identity where not ``ok``) and
    ``(N,)`` bool, True where at least :data:`MIN_ANCHORS` anchors are valid and they are not all at one point.
    Least squares (Umeyama without reflection), batched."""
    p = np.asarray(points, np.float64)
    v = np.asarray(valid, bool) & np.isfinite(p).all(-1)
    w = v.astype(np.float64)
    n = w.sum(1)
    ok = n >= MIN_ANCHORS
    n_safe = np.maximum(n, 1.0)
    pz = np.where(v[..., None], p, 0.0)
    mu_p = (pz * w[..., None]).sum(1) / n_safe[:, None]
    mu_t = (w[..., None] * template[None]).sum(1) / n_safe[:, None]
    dp = (pz - mu_p[:, None]) * w[..., None]
    dt = (template[None] - mu_t[:, None]) * w[..., None]
    # complex form of the 2-D similarity: t ~ s e^{i a} p + c
    zp = dp[..., 0] + 1j * dp[..., 1]
    zt = dt[..., 0] + 1j * dt[..., 1]
    var = (np.abs(zp) ** 2).sum(1)
    ok &= var > 1e-9
    k = (np.conj(zp) * zt).sum(1) / np.where(var > 1e-9, var, 1.0)
    a, b = k.real, k.imag
    m = np.zeros((p.shape[0], 2, 3))
    m[:, 0, 0], m[:, 0, 1] = a, -b
    m[:, 1, 0], m[:, 1, 1] = b, a
    m[:, :, 2] = mu_t - np.einsum("nij,nj->ni", m[:, :, :2], mu_p)
    m[~ok] = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    return m, ok


@lru_cache(maxsize=8)
def _zigzag(n: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    order = sorted(((u, v) for u in range(n) for v in range(n)), key=lambda t: (t[0] + t[1], t[0] if (t[0] + t[1]) % 2 else t[1]))
    order = [t for t in order if t != (0, 0)][:count]
    u, v = np.array([t[0] for t in order]), np.array([t[1] for t in order])
    u.setflags(write=False)
    v.setflags(write=False)
    return u, v


@lru_cache(maxsize=8)
def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``(n, n)``: ``C @ x`` transforms the columns of ``x`` (read-only, cached)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    c.setflags(write=False)
    return c


def dct_coefficients(crops: np.ndarray, count: int = HASH_BITS) -> np.ndarray:
    """``(N, count)`` lowest-frequency AC coefficients (zig-zag order) of the 2-D DCT of ``(N, S, S)`` crops."""
    x = np.asarray(crops, np.float64)
    c = dct_matrix(x.shape[-1])
    d = c @ x @ c.T
    u, v = _zigzag(x.shape[-1], count)
    return d[:, u, v]


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """``(N, 64)`` bools -> ``(N,)`` uint64, bit ``i`` of the hash = column ``i``."""
    b = np.asarray(bits, bool)
    weights = (np.uint64(1) << np.arange(b.shape[1], dtype=np.uint64))
    return (b.astype(np.uint64) * weights).sum(1, dtype=np.uint64)


def dct_hash(crops: np.ndarray) -> np.ndarray:
    """``(N,)`` uint64 perceptual hashes of ``(N, S, S)`` grey crops: 64 low-frequency AC coefficients of
    the DCT, each compared with their median. Invariant to brightness and contrast changes that do not
    clip (they shift the DC term and scale the rest)."""
    return dct_hashes(crops)[:, 0]


def dct_hashes(crops: np.ndarray) -> np.ndarray:
    """``(N, 3)`` uint64 per crop: the 64-bit index hash (:func:`dct_hash`), then the 128-bit verification
    hash in two words (the 128 lowest AC coefficients against their median)."""
    coef = dct_coefficients(crops, LONG_BITS)
    short = coef[:, :HASH_BITS]
    bits = coef > np.median(coef, axis=1, keepdims=True)
    return np.stack([pack_bits(short > np.median(short, axis=1, keepdims=True)), pack_bits(bits[:, :64]),
                     pack_bits(bits[:, 64:])], 1)


def long_hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between 128-bit hashes (``(..., 2)`` uint64 words), as int64."""
    x = np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64))
    return np.bitwise_count(x).sum(-1, dtype=np.int64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between uint64 hashes ``a`` and ``b`` (broadcast), as uint8."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))


#: Multi-index hashing defaults: each table splits the 64 bits into BANDS fields of 16 bits; table 0 takes the
#: bits in order, the others a fixed pseudo-random order (seed BAND_SEED).
BANDS = 4
TABLES = 8
BAND_SEED = 20240601


def band_fields(bands: int = BANDS, tables: int = TABLES, seed: int = BAND_SEED) -> list[np.ndarray]:
    """The bit positions of every field: ``tables * bands`` arrays of about ``64 / bands`` positions each.
    Table 0 is the contiguous split of the hash, the others a seeded permutation of the 64 bits."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(tables):
        order = np.arange(HASH_BITS) if t == 0 else rng.permutation(HASH_BITS)
        out += [np.sort(f) for f in np.array_split(order, bands)]
    return out


def _field_keys(hashes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The bits of ``hashes`` at ``positions`` gathered into one integer key per hash."""
    h = np.asarray(hashes, np.uint64)
    key = np.zeros(h.shape, np.uint64)
    for k, pos in enumerate(positions):
        key |= ((h >> np.uint64(pos)) & np.uint64(1)) << np.uint64(k)
    return key


def band_pairs(query: np.ndarray, index: np.ndarray, max_distance: int, *, same: bool, bands: int = BANDS,
               tables: int = TABLES, block: int = 4_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs ``(i, j)`` with ``hamming(query[i], index[j]) <= max_distance``, by multi-index hashing: no
    all-pairs comparison.

    Each of ``tables`` tables splits the 64 bits into ``bands`` fields; a pair is a candidate when it agrees
    exactly on some field of some table (found by sorting the field's keys), and every candidate is verified
    by its Hamming distance, so no pair beyond ``max_distance`` is returned. Table 0 splits the bits in order:
    by the pigeonhole principle it finds *every* pair within ``bands - 1`` bits (all of them when
    ``bands > max_distance``). A pair ``d`` bits apart is missed only when each of the ``tables * bands``
    fields holds one of its differing bits (``docs/spec/duplicates.md`` gives the odds and the cost,
    ``O(tables * bands * (N log N + C))`` for ``C`` candidates). ``same``: ``query`` is ``index`` (pairs
    ``i < j``, each once). Returns ``(i, j, distance)`` sorted by ``(i, j)``; ``block`` bounds the candidates
    held at once."""
    q = np.asarray(query, np.uint64)
    x = np.asarray(index, np.uint64)
    if not 1 <= bands <= HASH_BITS or tables < 1:
        raise ValueError(f"bands must be in 1..{HASH_BITS} and tables >= 1; got {bands}, {tables}")
    found_i, found_j, found_d = [], [], []
    for positions in band_fields(bands, tables):
        kq = _field_keys(q, positions)
        kx = kq if same else _field_keys(x, positions)
        for ci, cj in equal_key_pairs(kq, kx, same, block):
            d = hamming(q[ci], x[cj])
            keep = d <= max_distance
            found_i.append(ci[keep])
            found_j.append(cj[keep])
            found_d.append(d[keep])
    if not found_i:
        e = np.zeros(0, np.int64)
        return e, e.copy(), np.zeros(0, np.uint8)
    i = np.concatenate(found_i).astype(np.int64)
    j = np.concatenate(found_j).astype(np.int64)
    d = np.concatenate(found_d)
    key = i * max(x.size, 1) + j
    key, first = np.unique(key, return_index=True)
    return i[first], j[first], d[first]


def equal_key_pairs(kq: np.ndarray, kx: np.ndarray, same: bool, block: int = 4_000_000):
    """Yield ``(i, j)`` index arrays of the pairs whose keys are equal (``i < j`` when ``same``), in blocks of
    at most about ``block`` pairs (a single bucket bigger than that is one block). Buckets of equal sizes
    are expanded together, by indexing, so the cost is linear in the pairs."""
    oq = np.argsort(kq, kind="stable")
    sq = kq[oq]
    q_start = np.flatnonzero(np.r_[True, sq[1:] != sq[:-1]]) if sq.size else np.zeros(0, np.int64)
    q_size = np.diff(np.r_[q_start, sq.size])
    if same:
        keep = q_size > 1
        q_start, q_size = q_start[keep], q_size[keep]
        for z in np.unique(q_size):
            starts = q_start[q_size == z]
            a, b = np.triu_indices(int(z), 1)
            step = max(block // a.size, 1)
            for k in range(0, starts.size, step):
                pos = starts[k:k + step, None] + np.arange(z)
                i, j = oq[pos[:, a]].ravel(), oq[pos[:, b]].ravel()
                yield np.minimum(i, j), np.maximum(i, j)
        return
    ox = np.argsort(kx, kind="stable")
    sx = kx[ox]
    keys = sq[q_start]
    x_start = np.searchsorted(sx, keys, side="left")
    x_size = np.searchsorted(sx, keys, side="right") - x_start
    hit = x_size > 0
    q_start, q_size, x_start, x_size = q_start[hit], q_size[hit], x_start[hit], x_size[hit]
    for zq, zx in np.unique(np.stack([q_size, x_size], 1), axis=0):
        sel = (q_size == zq) & (x_size == zx)
        qs, xs = q_start[sel], x_start[sel]
        a, b = (g.ravel() for g in np.meshgrid(np.arange(zq), np.arange(zx), indexing="ij"))
        step = max(block // a.size, 1)
        for k in range(0, qs.size, step):
            yield oq[(qs[k:k + step, None] + a)].ravel(), ox[(xs[k:k + step, None] + b)].ravel()
