"""``landmark_unify relabel-pose IN -o OUT``: fit head pose from the landmarks of every face."""
from __future__ import annotations

import sys

from ..cli_base import PATH, add_engine_options, add_output, add_overwrite, add_quiet, count, run_options
from ..core.layouts import CANONICAL, get_layout
from ..core.pose import MIN_POINTS
from ..face_models import DEFAULT_SHAPE_KEY, SHAPE_AXES, SHIPPED_SHAPE_KEY

#: The most points a face has: the canonical layout's
NUM_POINTS = get_layout(CANONICAL).num_points


def add_pose_model_options(parser) -> None:
    """``--mean-shape`` and ``--shape-key``: the face model of every command that fits pose."""
    parser.add_argument("--mean-shape", default=None, type=PATH,
                        help="3D face of the pose fit: a mean3d_68.npz (published Basel-Face-Model shapes), a 98-point "
                             "face .npz, or a (68, 3) .npy in the model frame; default: $LANDMARK_UNIFY_MEAN3D, else "
                             "the face shipped with the package (MediaPipe's canonical mesh, calibrated; docs/guides/pose.md)")
    parser.add_argument("--shape-key", default=None, choices=[SHIPPED_SHAPE_KEY, *sorted(SHAPE_AXES)],
                        help=f"which shape: {SHIPPED_SHAPE_KEY!r} is the shipped face; the others are shapes of a "
                             f"mean3d_68.npz (default {DEFAULT_SHAPE_KEY} when --mean-shape names one; without "
                             "--mean-shape, ../shared/data/mean3d_68/mean3d_68.npz beside the project)")


def add_arguments(parser) -> None:
    parser.add_argument("input", type=PATH, help="manifest to read (a .parquet file or a dataset folder)")
    add_output(parser, "manifest to write (.parquet, or a folder for a partitioned dataset)")
    add_pose_model_options(parser)
    parser.add_argument("--min-points", type=count(NUM_POINTS, unit="points"), default=MIN_POINTS,
                        help=f"faces with fewer usable points get no pose (default {MIN_POINTS})")
    add_overwrite(parser)
    add_quiet(parser)
    add_engine_options(parser)


def run(args) -> int:
    from ..ops.relabel import POSE_COUNTS, relabel_pose

    res = relabel_pose(args.input, args.output, mean_shape=args.mean_shape, shape_key=args.shape_key,
                       min_points=args.min_points, overwrite=args.overwrite, run=run_options(args))
    counts = {k: res.extra.get(k, 0) for k in POSE_COUNTS}
    print(f"{args.output}: pose fitted for {counts['filled']} faces, dataset pose kept (fit beside it where known) for "
          f"{counts['kept']}, unknown for {counts['unknown']}", file=sys.stderr)
    return 0
