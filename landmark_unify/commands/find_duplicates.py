"""``landmark_unify find-duplicates IN [IN ...] -o PAIRS.parquet``: copies of a face and leaks between splits."""
from __future__ import annotations

import argparse
import sys

from ..cli_base import (
    add_engine_options,
    add_on_error,
    add_output,
    add_overwrite,
    add_quiet,
    add_where,
    command_line,
    engine_kwargs,
    where_filter,
)
from ..core.facehash import LONG_BITS


def _distance(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < LONG_BITS:
        raise argparse.ArgumentTypeError(f"must be in 0..{LONG_BITS - 1}; got {value}")
    return value


def add_arguments(parser) -> None:
    from ..ops.duplicates import MAX_DISTANCE

    parser.add_argument("inputs", nargs="+", help="manifests (files or datasets); pairs are found within and across them")
    add_output(parser, "pairs to write (.parquet; columns in docs/spec/duplicates.md)")
    add_where(parser)
    parser.add_argument("--max-distance", type=_distance, default=MAX_DISTANCE, metavar="BITS",
                        help=f"near and mirror pairs: aligned-face verification hashes at most this many bits apart, of "
                             f"{LONG_BITS} (default {MAX_DISTANCE}; docs/figures/duplicates.md)")
    parser.add_argument("--html", default=None, metavar="DIR",
                        help="also write a page of the pairs side by side (DIR/index.html, with the crops)")
    add_on_error(parser)
    add_overwrite(parser)
    add_quiet(parser)
    add_engine_options(parser, single_file=False)


def run(args) -> int:
    from ..ops.duplicates import find_duplicates

    where = where_filter(args)
    report = find_duplicates(args.inputs, args.output, where=where, max_distance=args.max_distance,
                             on_error=args.on_error, overwrite=args.overwrite,
                             command=command_line("landmark_unify", args),
                             **engine_kwargs(args))
    print(f"{args.output}\n{report.summary}")
    if args.html:
        from ..report.html import write_duplicates_page

        page = write_duplicates_page(args.output, args.inputs, args.html)
        print(f"page: {page}", file=sys.stderr)
    return 0
