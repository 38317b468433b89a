"""``landmark_unify mine-closed-eyes IN -o OUT``: keep the faces with closed eyes."""
from __future__ import annotations

import sys

from .._cli_base import non_negative_float
from ..eyes import CLOSED_THRESHOLD, MINE_MODES


def add_arguments(parser) -> None:
    parser.add_argument("input", help="manifest to select from (.parquet)")
    parser.add_argument("-o", "--output", required=True, help="manifest to write (.parquet)")
    parser.add_argument("--threshold", type=non_negative_float, default=CLOSED_THRESHOLD,
                        help=f"an eye is closed when its aspect ratio is <= this (default {CLOSED_THRESHOLD})")
    parser.add_argument("--mode", choices=MINE_MODES, default="either",
                        help="keep faces with either eye closed (default) or both")

    from ..distributed import add_engine_arguments

    add_engine_arguments(parser)


def run(args) -> int:
    from ..distributed import wants_engine
    from ..eyes import mine_closed_eyes_file

    if wants_engine(args):  # --engine dask, or a partitioned dataset as input
        from ..distributed import engine_kwargs, mine_closed_eyes_distributed

        res = mine_closed_eyes_distributed(args.input, args.output, threshold=args.threshold, mode=args.mode,
                                           **engine_kwargs(args))
        kept, total = res.extra.get("kept", 0), res.extra.get("total", 0)
    else:
        kept, total = mine_closed_eyes_file(args.input, args.output, threshold=args.threshold, mode=args.mode)
    print(f"{args.output}: kept {kept} of {total} faces (eye aspect ratio <= {args.threshold}, {'either eye' if args.mode == 'either' else 'both eyes'})",
          file=sys.stderr)
    return 0
