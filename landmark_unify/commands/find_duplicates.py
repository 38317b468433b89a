"""``landmark_unify find-duplicates IN [IN ...] -o PAIRS.parquet``: copies of a face and leaks between splits."""
from __future__ import annotations

import sys

from ..cli_base import (
    PATH,
    add_engine_options,
    add_on_error,
    add_output,
    add_overwrite,
    add_quiet,
    add_where,
    command_line,
    count,
    run_options,
)
from ..core.facehash import LONG_BITS

#: ``--max-distance``: bits of the verification hashes
DISTANCE = count(LONG_BITS - 1, low=0, unit="bits")


def add_arguments(parser) -> None:
    from ..ops.duplicates import MAX_DISTANCE

    parser.add_argument("inputs", nargs="+", type=PATH, help="manifests (files or datasets); pairs are found within and across them")
    add_output(parser, "pairs to write (.parquet; columns in docs/spec/duplicates.md)")
    add_where(parser)
    parser.add_argument("--max-distance", type=DISTANCE, default=MAX_DISTANCE, metavar="BITS",
                        help=f"near and mirror pairs: aligned-face verification hashes at most this many bits apart, of "
                             f"{LONG_BITS} (default {MAX_DISTANCE}; docs/figures/duplicates.md)")
    parser.add_argument("--html", default=None, metavar="DIR", type=PATH,
                        help="also write a page of the pairs side by side (DIR/index.html, with the crops)")
    add_on_error(parser)
    add_overwrite(parser)
    add_quiet(parser)
    add_engine_options(parser, single_file=False)


def run(args) -> int:
    from ..ops.duplicates import find_duplicates
    from ..outputs import current

    page_dir = (current().folder(args.html, inputs=args.inputs, overwrite=args.overwrite) if args.html
                else None)  # declared before any work: a refused folder stops the command first
    report = find_duplicates(args.inputs, args.output, where=args.where, max_distance=args.max_distance,
                             on_error=args.on_error, overwrite=args.overwrite,
                             command=command_line("landmark_unify", args), run=run_options(args))
    print(f"{args.output}\n{report.summary}")
    if args.html:
        from ..report.html import write_duplicates_page

        page = write_duplicates_page(args.output, args.inputs, page_dir.staging)
        print(f"page: {page_dir.final(page)}", file=sys.stderr)
    return 0
