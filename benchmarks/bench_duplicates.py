"""find-duplicates: recall and precision per transform against whole-image pHash baselines, throughput against
decoding alone, and the pairing step at scale. Same run, same photos, same machine for every figure.

    .venv/bin/python benchmarks/bench_duplicates.py [--scale 1000000] [--skip-quality] [--skip-scale]

Quality: the shared photos with faces (WFLW images, 300W, AFLW2000-3D, LaPa, MMPose's COFW / AFLW / 300W-LP /
COCO-WholeBody fixtures, and the nniefacelib photos labelled by the reference PFLD-GhostOne model through
``landmark_unify label``) are copied under each transform of ``dup_transforms.py``. Ours: faces paired by
find-duplicates' descriptors and pairing (``pair_faces``); a hit is the face paired with its own copy, a false
pair any other pair. Baselines at the image level (they hash whole images): an imagehash-style pHash (grey,
32x32 area resize, 2-D DCT, the 8x8 low-frequency block against its median, 64 bits) paired at Hamming <= 8,
and cleanvision's near-duplicate rule (identical pHash). Recall = copies found / copies made; precision = the
share of the pairs reported between an original and a copy that are right: the same face (its own copy, or the
copy of a twin photo: same size, mean pixel difference under 8 levels, boxes overlapping), for the baselines the
same photo. The pairs among the originals are listed, not scored (the shared photos hold real copies).

Throughput: phase 1 of find-duplicates (read, decode, content keys, both hashes of every face) against the same
images only read and decoded, one thread, best of two.

Scale: the pairing step (``pair_faces``: exact keys, near and mirror multi-index hashing) on N synthetic faces
(random hashes with planted copies 0-12 bits apart), time and peak memory (tracemalloc), at N/4 and N.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import cv2  # noqa: E402
import dup_transforms as T  # noqa: E402

import landmark_unify as lu  # noqa: E402
from landmark_unify import manifest as mf  # noqa: E402
from landmark_unify.core import facehash as fh  # noqa: E402
from landmark_unify.io import decode_image  # noqa: E402
from landmark_unify.ops.build import build_manifest  # noqa: E402
from landmark_unify.ops.duplicates import (  # noqa: E402
    CANDIDATE_DISTANCE,
    MAX_DISTANCE,
    face_keys,
    image_face_hashes,
    pair_faces,
)

DATA = REPO.parent / "shared" / "data"
SOURCES = ["wflw={d}/WFLW", "ibug={d}/300W", "aflw2000={d}/AFLW2000", "lapa={d}/LaPa",
           "cofw:coco={d}/mmpose_tests/cofw", "aflw:coco={d}/mmpose_tests/aflw", "lp:coco={d}/mmpose_tests/300wlp",
           "wholebody:coco={d}/mmpose_tests/coco_wholebody"]
TRANSFORMS = {
    "jpeg q30": [("jpeg", 30)], "jpeg q50": [("jpeg", 50)],
    "resize 0.5x": [("resize", 0.5)], "resize 0.75x": [("resize", 0.75)], "resize 1.5x": [("resize", 1.5)],
    "resize 2x": [("resize", 2.0)],
    "width only 0.9x (not in the spec)": [("stretch", 0.9)], "width only 0.8x (not in the spec)": [("stretch", 0.8)],
    "crop 10 %": [("crop", 0.1)], "crop 20 %": [("crop", 0.2)],
    "brightness -20 %": [("brightness", 0.8)], "brightness +20 %": [("brightness", 1.2)],
    "contrast -20 %": [("contrast", 0.8)], "contrast +20 %": [("contrast", 1.2)],
    "rotate 5 deg": [("rotate", 5)], "rotate -10 deg": [("rotate", -10)],
    "mirror": [("mirror", None)], "mirror + jpeg q50": [("mirror", None), ("jpeg", 50)],
    "another annotation (3 % IOD)": [("relabel", 0.03)],
    "another annotation (6 % IOD)": [("relabel", 0.06)],
    "all at once": [("jpeg", 40), ("resize", 0.7), ("crop", 0.1), ("rotate", 5), ("brightness", 0.9),
                    ("contrast", 1.1)],
}


def photos(tmp: Path):
    """The faces with a readable image, as one DataFrame, and their decoded images by absolute path."""
    frames = []
    for k, spec in enumerate(SOURCES):
        spec = spec.format(d=DATA)
        out = tmp / f"src{k}.parquet"
        try:
            build_manifest([spec], out, on_error="skip", progress=False)
        except lu.LandmarkUnifyError as exc:
            print(f"  left out {spec}: {exc}")
            continue
        frames.append(lu.read_manifest(out))
    try:  # the nniefacelib photos, machine-labelled (needs pfpld_train, which adds `label`)
        from landmark_unify.cli import main

        photo_dir = DATA / "upstream_pfpld"
        model = DATA / "reference_models/pfld_ghostone/PFLD_GhostOne_112_1_opt_sim.onnx"
        out = tmp / "photos.parquet"
        if main(["label", str(photo_dir), "-o", str(out), "--model", str(model), "--preset", "pfld_ghostone", "-q"]) == 0:
            frames.append(lu.read_manifest(out))
    except SystemExit:
        print("  left out the nniefacelib photos: no `label` command (pfpld_train not installed)")
    rows, images = [], {}
    for df in frames:
        paths = mf.image_paths(df)
        for i, p in enumerate(paths):
            if p is None or not p.is_file():
                continue
            key = str(p)
            if key not in images:
                got = decode_image(p)
                if isinstance(got, Exception):
                    continue
                images[key] = got[1]
            rows.append((key, mf.landmarks_array(df.iloc[[i]])[0], mf.valid_array(df.iloc[[i]])[0],
                         mf.bbox_array(df.iloc[[i]])[0], df["source"].iloc[i]))
    return rows, images


def _share(right, total) -> str:
    """``right / total`` with the count, or a dash when nothing was reported."""
    return f"{right / total:.3f} ({int(total)})" if total else "- (0)"


def phash_whole(img: np.ndarray) -> int:
    """imagehash-style pHash of a whole image (64 bits)."""
    from scipy.fft import dct

    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float64)
    d = dct(dct(small, axis=0), axis=1)[:8, :8]
    return int(fh.pack_bits((d > np.median(d)).reshape(1, 64))[0])


def face_table(rows, images):
    """Per face: hash, mirror hash; per image: its faces."""
    by_image: dict = {}
    for k, (p, *_rest) in enumerate(rows):
        by_image.setdefault(p, []).append(k)
    h = np.zeros((len(rows), 3), np.uint64)
    hm = h.copy()
    for p, ks in by_image.items():
        lm = np.stack([rows[k][1] for k in ks])
        va = np.stack([rows[k][2] for k in ks])
        bb = np.stack([rows[k][3] for k in ks])
        h[ks], hm[ks], _ = image_face_hashes(images[p], lm, va, bb)
    return h, hm, by_image


def same_face_groups(rows, images) -> tuple[np.ndarray, dict]:
    """Ground truth independent of any hash: a group id per face; two faces share it when their images are the
    same photo (same size, mean absolute pixel difference under 8 levels) and their boxes overlap (IoU > 0.5)."""
    n = len(rows)
    group = np.arange(n)
    names = list(dict.fromkeys(r[0] for r in rows))
    by_shape: dict = {}
    for p in names:
        by_shape.setdefault(images[p].shape, []).append(p)
    same_photo = {}
    for ps in by_shape.values():
        for a in range(len(ps)):
            for b in range(a + 1, len(ps)):
                if np.abs(images[ps[a]].astype(np.int16) - images[ps[b]]).mean() < 8:
                    same_photo.setdefault(ps[a], set()).add(ps[b])
    for i in range(n):
        for j in range(i + 1, n):
            if rows[j][0] in same_photo.get(rows[i][0], ()) :
                bi, bj = rows[i][3], rows[j][3]
                inter = np.prod(np.clip(np.minimum(bi[2:], bj[2:]) - np.maximum(bi[:2], bj[:2]), 0, None))
                union = np.prod(bi[2:] - bi[:2]) + np.prod(bj[2:] - bj[:2]) - inter
                if inter / max(union, 1e-9) > 0.5:
                    group[group == group[j]] = group[i]
    photo = {p: k for k, p in enumerate(names)}
    for a, bs in same_photo.items():
        for b in bs:
            old = photo[b]
            photo = {q: (photo[a] if g == old else g) for q, g in photo.items()}
    return group, photo


def quality(rows, images) -> list[str]:
    h0, hm0, by_image = face_table(rows, images)
    group, photo = same_face_groups(rows, images)
    img_names = list(by_image)
    ph0 = np.array([phash_whole(images[p]) for p in img_names], np.uint64)
    n, ni = len(rows), len(img_names)
    lines = [f"{n} faces on {ni} images; ours pairs faces (index hashes within {CANDIDATE_DISTANCE} of 64 bits, "
             f"verification hashes within {MAX_DISTANCE} of 128; kind near or mirror), the baselines pair images", "",
             "| transform | ours: recall | ours: precision (pairs) | ours, images: recall | pHash <= 8: recall | pHash <= 8: "
             "precision (pairs) | identical pHash: recall | identical pHash: precision (pairs) |", "|---|---|---|---|---|---|---|---|"]
    rng = np.random.default_rng(7)
    for name, steps in TRANSFORMS.items():
        h1 = np.zeros((n, 3), np.uint64)
        hm1 = h1.copy()
        ph1 = np.zeros(ni, np.uint64)
        for ii, p in enumerate(img_names):
            ks = by_image[p]
            lm = np.stack([rows[k][1] for k in ks]).astype(np.float64)
            va = np.stack([rows[k][2] for k in ks])
            bb = np.stack([rows[k][3] for k in ks]).astype(np.float64)
            img, lm2, bb2 = T.apply(steps, images[p], lm, bb, rng)
            h1[ks], hm1[ks], _ = image_face_hashes(img, lm2, va, bb2)
            ph1[ii] = phash_whole(img)
        # ours: originals 0..n-1 and copies n..2n-1 through the pairing step (content keys all distinct)
        keys = np.arange(1, 2 * n + 1, dtype=np.uint64)
        box = np.concatenate([np.stack([r[3] for r in rows])] * 2)
        pairs = pair_faces(keys, keys + np.uint64(10 ** 9), np.concatenate([h0, h1]), np.concatenate([hm0, hm1]),
                           np.ones(2 * n, bool), box)
        hit = (pairs["j"] - pairs["i"] == n) & (pairs["i"] < n)
        want = "mirror" if steps[0][0] == "mirror" else "near"
        kinds = [want, "near"] if want == "mirror" else [want]  # a frontal face is its own mirror image
        hits = hit & pairs["kind"].isin(kinds)
        with_copy = (pairs["j"] >= n).to_numpy()  # pairs among the originals are listed below, not scored here
        gi, gj = group[pairs["i"].to_numpy() % n], group[pairs["j"].to_numpy() % n]
        right = with_copy & (gi == gj)  # an original and a copy of the same face (or of its twin photo)
        rec, prec = hits.sum() / n, _share(right.sum(), with_copy.sum())
        img_of = np.empty(n, np.int64)
        for ii, p in enumerate(img_names):
            img_of[by_image[p]] = ii
        found_imgs = {int(img_of[i]) for i, j in zip(pairs.loc[hits, "i"], pairs.loc[hits, "j"])}
        rec_img = len(found_imgs) / ni
        # baselines on images: originals 0..ni-1, copies ni..2ni-1
        allh = np.concatenate([ph0, ph1])
        out = []
        for t in (8, 0):
            i, j, _ = fh.band_pairs(allh, allh, t, same=True, bands=t + 1, tables=1)
            good = (j - i == ni) & (i < ni)
            pg = np.array([photo[p] for p in img_names])
            right = (j >= ni) & (pg[i % ni] == pg[j % ni])
            out += [good.sum() / ni, _share(right.sum(), (j >= ni).sum())]
        lines.append(f"| {name} | {rec:.3f} | {prec} | {rec_img:.3f} | {out[0]:.3f} | {out[1]} | {out[2]:.3f} | {out[3]} |")
        print(lines[-1], flush=True)
    # the originals among themselves: what the finder pairs there (not scored: some are real copies)
    keys = np.arange(1, n + 1, dtype=np.uint64)
    own = pair_faces(keys, keys + np.uint64(10 ** 9), h0, hm0, np.ones(n, bool), np.stack([r[3] for r in rows]))
    lines += ["", f"Pairs among the originals themselves: {len(own)}"]
    for r in own.itertuples():
        lines.append(f"- {r.kind}, {r.distance} bits: {Path(rows[r.i][0]).name} ({rows[r.i][4]}) and "
                     f"{Path(rows[r.j][0]).name} ({rows[r.j][4]})")
    # distinct faces: how close do different faces come?
    iu = np.triu_indices(n, 1)
    distinct = group[iu[0]] != group[iu[1]]
    d = fh.hamming(h0[:, None, 0], h0[None, :, 0])[iu][distinct]
    dl = fh.long_hamming(h0[:, None, 1:], h0[None, :, 1:])[iu][distinct]
    dm = fh.long_hamming(hm0[:, None, 1:], h0[None, :, 1:])
    dm[group[:, None] == group[None, :]] = 128
    both = (d <= CANDIDATE_DISTANCE) & (dl <= MAX_DISTANCE)
    lines += ["", f"Distinct faces ({d.size} pairs of originals that are not the same face): index hash (64 bits) mean "
              f"{d.mean():.1f} (sd {d.std():.1f}), within 8 bits {int((d <= 8).sum())}, within "
              f"{CANDIDATE_DISTANCE} {int((d <= CANDIDATE_DISTANCE).sum())}; verification hash (128 bits) mean "
              f"{dl.mean():.1f} (sd {dl.std():.1f}), within {MAX_DISTANCE} {int((dl <= MAX_DISTANCE).sum())}; paired "
              f"(both): {int(both.sum())}; a mirror hash within {MAX_DISTANCE} of another face's hash: "
              f"{int((dm <= MAX_DISTANCE).sum())}"]
    return lines


def throughput(rows, images, repeat: int = 2) -> list[str]:
    """Phase 1 (decode + keys + hashes, the real face_keys on a manifest frame) against decode only."""
    import pandas as pd

    paths = list(dict.fromkeys(r[0] for r in rows))
    df = pd.DataFrame({"sample_id": [f"{k:016x}" for k in range(len(rows))], "source": "bench", "split": "test",
                       "image_path": [r[0].lstrip("/") for r in rows], "landmarks": [r[1] for r in rows],
                       "valid": [r[2] for r in rows], "bbox": [r[3] for r in rows]})
    df.attrs["manifest"] = {"source_roots": {"bench": "/"}}
    df.attrs["path"] = "/x.parquet"
    best_dec = best_keys = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for p in paths:
            decode_image(p)
        best_dec = min(best_dec, time.perf_counter() - t)
        t = time.perf_counter()
        face_keys(df)
        best_keys = min(best_keys, time.perf_counter() - t)
    pixels = sum(images[p].shape[0] * images[p].shape[1] for p in paths) / len(paths)
    return [f"{len(paths)} images ({len(rows)} faces, mean {pixels / 1e6:.2f} Mpixel), one thread, best of {repeat}:",
            "", "| step | images/s | ratio to decoding |", "|---|---|---|",
            f"| read + decode only | {len(paths) / best_dec:.1f} | 1.00 |",
            f"| find-duplicates phase 1 (read, decode, content keys, both hashes) | {len(paths) / best_keys:.1f} | "
            f"{best_dec / best_keys:.2f} |"]


def _random_words(rng, size: int) -> np.ndarray:
    """``(size, 3)`` uniformly random uint64 words (a synthetic face's index and verification hashes)."""
    return rng.integers(0, 2 ** 63, (size, 3), dtype=np.uint64) | (
        rng.integers(0, 2, (size, 3), dtype=np.uint64) << np.uint64(63))


def scale(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    lines = ["| faces | time (s) | peak memory (MiB, tracemalloc) | pairs found | planted copies found, index hash 0-4 / "
             f"5-8 / 9-{CANDIDATE_DISTANCE} bits apart |",
             "|---|---|---|---|---|"]
    for size in (n // 4, n):
        base, mirror = _random_words(rng, size), _random_words(rng, size)
        planted = min(size // 100, 10_000)
        src = rng.choice(size, planted, replace=False)
        dst = (src + size // 2) % size
        dist = rng.integers(0, CANDIDATE_DISTANCE + 1, planted)  # index-hash bits flipped; verification 2x as many
        for k in range(planted):
            words = [np.uint64(0)] * 3
            for f in rng.choice(64, dist[k], replace=False):
                words[0] |= np.uint64(1) << np.uint64(f)
            for f in rng.choice(128, min(2 * dist[k], MAX_DISTANCE), replace=False):
                words[1 + f // 64] |= np.uint64(1) << np.uint64(f % 64)
            base[dst[k]] = base[src[k]] ^ np.array(words, np.uint64)
        keys = np.arange(1, size + 1, dtype=np.uint64)
        box = np.tile(np.array([[0, 0, 100, 100]], np.float32), (size, 1))
        tracemalloc.start()
        t = time.perf_counter()
        pairs = pair_faces(keys, keys + np.uint64(size + 10), base, mirror, np.ones(size, bool), box)
        secs = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
        tracemalloc.stop()
        got = set(zip(pairs["i"].tolist(), pairs["j"].tolist()))
        found = np.array([(min(a, b), max(a, b)) in got for a, b in zip(src, dst)])
        bins = [dist <= 4, (dist > 4) & (dist <= 8), dist > 8]
        lines.append(f"| {size:,} | {secs:.1f} | {peak:.0f} | {len(pairs):,} | "
                     + " / ".join(f"{found[b].mean():.3f}" for b in bins) + " |")
        print(lines[-1], flush=True)
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=1_000_000, help="faces of the synthetic pairing run")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-scale", action="store_true")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    out = []
    if not (args.skip_quality and args.skip_throughput):
        with tempfile.TemporaryDirectory() as tmp:
            rows, images = photos(Path(tmp))
        if not args.skip_quality:
            out += ["## Recall and precision per transform", ""] + quality(rows, images)
        if not args.skip_throughput:
            out += ["", "## Throughput", ""] + throughput(rows, images)
    if not args.skip_scale:
        out += ["", f"## Pairing at scale ({fh.TABLES} tables of {fh.BANDS} bands, candidates within {CANDIDATE_DISTANCE} bits, "
                f"verified within {MAX_DISTANCE} of 128)", ""]
        out += scale(args.scale)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
