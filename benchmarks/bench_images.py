"""The one image reader against a bare OpenCV decode: what the header checks cost.

Reads every JPEG and PNG of ``../shared/data`` (or ``--root``) with ``landmark_unify.images.read_image`` (format,
pixel limit, truncation and EXIF checks, then one decode) and with ``cv2.imread`` (the baseline, no checks),
interleaved, for ``--rounds`` rounds, and prints images/s of each and their ratio, plus the time of
``image_info`` (header only) per image.

    python benchmarks/bench_images.py
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import cv2

    from landmark_unify.images import image_info, read_image

    cv2.setNumThreads(1)
    paths = sorted(p for p in args.root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"no images under {args.root}")
    t = {"read_image": 0.0, "cv2.imread": 0.0, "image_info": 0.0}
    for _ in range(args.rounds):
        for p in paths:
            t0 = time.perf_counter()
            cv2.imread(str(p), cv2.IMREAD_COLOR)
            t1 = time.perf_counter()
            read_image(p, channel_order="bgr")
            t2 = time.perf_counter()
            image_info(p)
            t3 = time.perf_counter()
            t["cv2.imread"] += t1 - t0
            t["read_image"] += t2 - t1
            t["image_info"] += t3 - t2
    n = len(paths) * args.rounds
    print(f"{len(paths)} images x {args.rounds} rounds")
    for k in ("cv2.imread", "read_image"):
        print(f"{k:<12} {n / t[k]:8.1f} images/s")
    print(f"read_image / cv2.imread time ratio: {t['read_image'] / t['cv2.imread']:.3f}")
    print(f"image_info (header only): {1e6 * t['image_info'] / n:.0f} us per image "
          f"({t['image_info'] / t['cv2.imread']:.3f} of a decode)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
