"""``pfpld_train cache MANIFEST -o DIR``: enlarged face crops in a memory-mapped array."""

from __future__ import annotations

import argparse

from landmark_unify.cli_base import PATH, WORKERS, add_output, add_quiet, count, number

from ..data.cache import MAX_CACHE_SIZE, MAX_ENLARGE
from ..data.crop import CROP_SIZE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=PATH, help="manifest whose faces to cache: a .parquet file or a dataset directory")
    add_output(parser, "cache folder to create")
    parser.add_argument("--size", type=count(MAX_CACHE_SIZE, low=CROP_SIZE // 2, unit="pixels"), default=176,
                        help="side of each cached window in pixels (176); the cache takes faces x size^2 x 3 bytes, "
                             "checked against the free disk space before anything is written")
    parser.add_argument("--enlarge", type=number(1, MAX_ENLARGE, unit="x the crop side"), default=1.5,
                        help="cached window side over the standard crop side (1.5: room for rotation and shift)")
    parser.add_argument("--workers", type=WORKERS, default=2, help="decoding processes")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing cache folder")
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from landmark_unify import manifest as mf

    from ..data.cache import build_cache

    df = mf.read(args.manifest)
    info = build_cache(df, args.output, size=args.size, enlarge=args.enlarge, workers=args.workers,
                       progress=not args.quiet, overwrite=args.overwrite)
    gib = info["count"] * info["size"] ** 2 * 3 / 2**30
    print(f"cached {info['cached']} of {info['count']} faces into {args.output} ({gib:.2f} GiB, "
          f"{info['size']}x{info['size']} RGB, {info['enlarge']}x the standard crop)")
    if info["no_valid_point"] or info["unreadable_images"]:
        print(f"not cached: {info['no_valid_point']} faces without a valid point, "
              f"{info['unreadable_images']} unreadable or missing images {info['unreadable_examples']}")
    return 0
