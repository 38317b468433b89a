"""``landmark_unify merge A.parquet B.parquet ... -o OUT.parquet``: merge manifests."""
from __future__ import annotations

from ..cli_base import (
    PATH,
    SOURCE_WEIGHT,
    add_engine_options,
    add_exclude_options,
    add_output,
    add_overwrite,
    add_quiet,
    exclude_kwargs,
    number,
    run_options,
)
from ..ops.merge import DUPLICATE_TOLERANCE


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", type=PATH,
                        help="manifests (files or datasets) to merge, in priority order (the first copy of a face is kept)")
    add_output(parser, "manifest to write (.parquet, or a folder for a partitioned dataset)")
    parser.add_argument("--weight", action="append", default=[], metavar="SOURCE=W", type=SOURCE_WEIGHT,
                        help="multiply the weight of every face of SOURCE by W (repeatable; default 1)")
    parser.add_argument("--no-image-hash", action="store_true",
                        help="detect duplicates by sample_id only, without reading the images")
    parser.add_argument("--tolerance", type=number(0, 10, unit="of the face size"), default=DUPLICATE_TOLERANCE,
                        help="faces on the same image are one face when their points differ by at most this "
                             f"fraction of the face size on average (default {DUPLICATE_TOLERANCE})")
    add_exclude_options(parser)
    add_overwrite(parser)
    add_quiet(parser)
    add_engine_options(parser)


def run(args) -> int:
    from ..ops.merge import merge_manifests

    # a LandmarkUnifyError (bad input, bad --weight) is printed by the dispatcher as "merge: error: ..."
    report = merge_manifests(args.inputs, args.output, args.weight, hash_images=not args.no_image_hash,
                             tolerance=args.tolerance, overwrite=args.overwrite, **exclude_kwargs(args),
                             run=run_options(args))
    print(f"{args.output}\n{report.summary}")
    return 0
