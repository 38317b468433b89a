"""``landmark_unify relabel-pose IN -o OUT``: fit head pose from the landmarks of every face."""
from __future__ import annotations

import sys

from .._cli_base import positive_int
from ..pose import DEFAULT_SHAPE_KEY, MIN_POINTS, SHAPE_AXES


def add_arguments(parser) -> None:
    parser.add_argument("input", help="manifest to read (.parquet)")
    parser.add_argument("-o", "--output", required=True, help="manifest to write (.parquet)")
    parser.add_argument("--mean-shape", default=None,
                        help="mean3d_68.npz (or a (68, 3) .npy in the model frame); default: $LANDMARK_UNIFY_MEAN3D "
                             "or ../shared/data/mean3d_68/mean3d_68.npz beside the project")
    parser.add_argument("--shape-key", default=DEFAULT_SHAPE_KEY, choices=sorted(SHAPE_AXES),
                        help=f"which shape of the .npz (default {DEFAULT_SHAPE_KEY})")
    parser.add_argument("--min-points", type=positive_int, default=MIN_POINTS,
                        help=f"faces with fewer usable points get no pose (default {MIN_POINTS})")

    from ..distributed import add_engine_arguments

    add_engine_arguments(parser)


def run(args) -> int:
    from ..distributed import wants_engine
    from ..pose import relabel_manifest_file

    if wants_engine(args):  # --engine dask, or a partitioned dataset as input
        from ..distributed import engine_kwargs, relabel_pose_distributed

        res = relabel_pose_distributed(args.input, args.output, mean_shape=args.mean_shape, shape_key=args.shape_key,
                                       min_points=args.min_points, **engine_kwargs(args))
        counts = {k: res.extra.get(k, 0) for k in ("filled", "kept", "unknown")}
    else:
        counts = relabel_manifest_file(args.input, args.output, mean_shape=args.mean_shape, shape_key=args.shape_key,
                                       min_points=args.min_points)
    print(f"{args.output}: pose fitted for {counts['filled']} faces, dataset pose kept (fit beside it where known) for "
          f"{counts['kept']}, unknown for {counts['unknown']}", file=sys.stderr)
    return 0
