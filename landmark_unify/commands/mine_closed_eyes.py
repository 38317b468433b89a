"""``landmark_unify mine-closed-eyes IN -o OUT``: keep the faces with closed eyes."""
from __future__ import annotations

import sys

from ..eyes import CLOSED_THRESHOLD, MINE_MODES


def add_arguments(parser) -> None:
    parser.add_argument("input", help="manifest to select from (.parquet)")
    parser.add_argument("-o", "--output", required=True, help="manifest to write (.parquet)")
    parser.add_argument("--threshold", type=float, default=CLOSED_THRESHOLD,
                        help=f"an eye is closed when its aspect ratio is <= this (default {CLOSED_THRESHOLD})")
    parser.add_argument("--mode", choices=MINE_MODES, default="either",
                        help="keep faces with either eye closed (default) or both")


def run(args) -> int:
    from ..eyes import mine_closed_eyes_file

    kept, total = mine_closed_eyes_file(args.input, args.output, threshold=args.threshold, mode=args.mode)
    print(f"{args.output}: kept {kept} of {total} faces (eye aspect ratio <= {args.threshold}, {args.mode} eye)",
          file=sys.stderr)
    return 0
