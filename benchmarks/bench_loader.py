"""Data-loader throughput (samples/s) with and without the crop cache.

Builds (or takes) a manifest of real faces, builds a crop cache in a temporary folder, then iterates the
training loader (augmentation on, batch 64, ``--workers`` processes) for about ``--seconds`` per variant
and prints samples/s. The uncached loader (JPEG decoding every epoch) is the baseline; the cached one is
printed with its speed-up and checked against the target of 1500 samples/s.

    python benchmarks/bench_loader.py                       # the WFLW faces with images in ../shared/data
    python benchmarks/bench_loader.py --manifest M.parquet  # any manifest whose images exist
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

TARGET = 1500.0


def default_manifest(folder: Path) -> Path:
    """The WFLW test faces of ../shared/data that have images, via ``landmark_unify build-manifest``."""
    from landmark_unify.cli import main as lu_main
    from landmark_unify.manifest import image_paths, read_manifest, write_manifest

    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "WFLW"
    full = folder / "wflw_all.parquet"
    if lu_main(["build-manifest", "--source", f"wflw={shared}", "-o", str(full), "-q"]) != 0:
        raise SystemExit("build-manifest failed")
    df = read_manifest(full)
    keep = [p is not None and p.is_file() for p in image_paths(df)]
    sub = df[keep].reset_index(drop=True)
    sub.attrs = dict(df.attrs)
    return write_manifest(sub, folder / "wflw_images.parquet", df.attrs["manifest"])


def measure(ds, batch_size: int, workers: int, seconds: float, min_epochs: int = 1) -> tuple[float, int]:
    """samples/s over whole epochs after the first batch (worker start-up excluded)."""
    from pfpld_train.data.sampler import EpochSampler, make_loader

    sampler = EpochSampler(len(ds), seed=0)
    loader = make_loader(ds, batch_size, sampler, workers=workers)
    n, epoch, t0 = 0, 0, None
    while True:
        sampler.set_epoch(epoch)
        for batch in loader:
            if t0 is None:
                t0 = time.perf_counter()  # start after the first batch arrived
                continue
            n += batch["image"].shape[0]
        epoch += 1
        if t0 is not None and epoch >= min_epochs and time.perf_counter() - t0 >= seconds:
            break
    return n / (time.perf_counter() - t0), n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", help="manifest of faces with images (default: WFLW faces in ../shared/data)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=8.0, help="time per variant (whole epochs)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    from landmark_unify.manifest import read_manifest
    from pfpld_train.data.arrays import FaceArrays
    from pfpld_train.data.augmentation import AugmentConfig
    from pfpld_train.data.cache import CropCache, build_cache
    from pfpld_train.data.dataset import FaceDataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = Path(args.manifest) if args.manifest else default_manifest(tmp)
        df = read_manifest(manifest)
        t = time.perf_counter()
        build_cache(df, tmp / "cache", workers=args.workers, progress=False)
        build_s = time.perf_counter() - t
        faces = FaceArrays.from_manifest(df)
        cache = CropCache(tmp / "cache")
        print(f"{len(df)} faces from {manifest.name}; cache built in {build_s:.1f} s "
              f"({len(df) / build_s:.0f} faces/s); batch {args.batch_size}, {args.workers} workers, augmentation on")
        results = {"faces": len(df), "workers": args.workers, "batch_size": args.batch_size,
                   "cache_build_faces_per_s": len(df) / build_s}
        plain, n0 = measure(FaceDataset(faces, AugmentConfig()), args.batch_size, args.workers, args.seconds)
        print(f"  no cache (JPEG decode + warp)  {plain:8.0f} samples/s   ({n0} samples)  baseline")
        cached, n1 = measure(FaceDataset(faces, AugmentConfig(), cache=cache), args.batch_size, args.workers,
                             args.seconds, min_epochs=3)
        print(f"  crop cache (memmap + warp)     {cached:8.0f} samples/s   ({n1} samples)  x{cached / plain:.1f}")
        bare, n2 = measure(FaceDataset(faces, AugmentConfig.none(), cache=cache), args.batch_size, args.workers,
                           args.seconds, min_epochs=3)
        print(f"  crop cache, no augmentation    {bare:8.0f} samples/s   ({n2} samples)  x{bare / plain:.1f}")
        verdict = "meets" if cached >= TARGET else "MISSES"
        print(f"target >= {TARGET:.0f} samples/s with the cache: {verdict} ({cached:.0f})")
        results.update(uncached=plain, cached=cached, cached_no_augment=bare, target=TARGET)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
