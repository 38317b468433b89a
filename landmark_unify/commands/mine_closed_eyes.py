"""``landmark_unify mine-closed-eyes IN -o OUT``: keep the faces with closed eyes."""
from __future__ import annotations

import sys

from ..cli_base import (
    PATH,
    add_engine_options,
    add_output,
    add_overwrite,
    add_quiet,
    add_where,
    deprecated_alias,
    number,
    run_options,
)
from ..core.eyes import CLOSED_THRESHOLD, MINE_MODES

#: An eye aspect ratio threshold (``--closed-threshold`` here and in ``report``): a ratio of lengths; an open
#: eye is about 0.3 (a threshold far above any eye, such as 10, keeps every face)
EAR = number(0, 100, unit="eye aspect ratio")


def add_arguments(parser) -> None:
    parser.add_argument("input", type=PATH, help="manifest to select from (a .parquet file or a dataset folder)")
    add_output(parser, "manifest to write (.parquet, or a folder for a partitioned dataset)")
    parser.add_argument("--closed-threshold", dest="threshold", type=EAR, default=CLOSED_THRESHOLD,
                        help=f"an eye is closed when its aspect ratio is <= this (default {CLOSED_THRESHOLD})")
    deprecated_alias(parser, "--threshold", "--closed-threshold", "threshold", type=EAR)
    parser.add_argument("--mode", choices=MINE_MODES, default="either",
                        help="keep faces with either eye closed (default) or both")
    add_where(parser, "faces (among those with closed eyes)")
    add_overwrite(parser)
    add_quiet(parser)
    add_engine_options(parser)


def run(args) -> int:
    from ..ops.mine import mine_closed_eyes

    res = mine_closed_eyes(args.input, args.output, threshold=args.threshold, mode=args.mode, where=args.where,
                           overwrite=args.overwrite, run=run_options(args))
    kept, total = res.extra.get("kept", 0), res.extra.get("total", 0)
    which = "either eye" if args.mode == "either" else "both eyes"
    print(f"{args.output}: kept {kept} of {total} faces (eye aspect ratio <= {args.threshold}, {which})",
          file=sys.stderr)
    return 0
