"""``landmark_unify merge A.parquet B.parquet ... -o OUT.parquet``: merge manifests."""
from __future__ import annotations

from .._cli_base import non_negative_float
from ..merge import DUPLICATE_TOLERANCE


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", help="manifests to merge, in priority order (the first copy of a face is kept)")
    parser.add_argument("-o", "--output", required=True, help="manifest to write (.parquet)")
    parser.add_argument("--weight", action="append", default=[], metavar="SOURCE=W",
                        help="multiply the weight of every face of SOURCE by W (repeatable; default 1)")
    parser.add_argument("--no-image-hash", action="store_true",
                        help="detect duplicates by sample_id only, without reading the images")
    parser.add_argument("--tolerance", type=non_negative_float, default=DUPLICATE_TOLERANCE,
                        help="faces on the same image are one face when their points differ by at most this "
                             f"fraction of the face size on average (default {DUPLICATE_TOLERANCE})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    from ..distributed import add_engine_arguments

    add_engine_arguments(parser)


def run(args) -> int:
    from ..distributed import wants_engine
    from ..merge import merge_manifest_files

    # a LandmarkUnifyError (bad input, bad --weight) is printed by the dispatcher as "merge: error: ..."
    if wants_engine(args):  # --engine dask, or a partitioned dataset among the inputs
        from ..distributed import engine_kwargs, merge_distributed

        report, _ = merge_distributed(args.inputs, args.output, args.weight, hash_images=not args.no_image_hash,
                                      tolerance=args.tolerance, progress=not args.no_progress, **engine_kwargs(args))
    else:
        report = merge_manifest_files(args.inputs, args.output, args.weight, hash_images=not args.no_image_hash,
                                      tolerance=args.tolerance, progress=not args.no_progress)
    print(f"{args.output}\n{report.summary}")
    return 0
