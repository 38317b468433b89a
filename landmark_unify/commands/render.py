"""``landmark_unify render FILE -o sheet.png``: a contact sheet of faces with landmarks and pose axes."""
from __future__ import annotations

import sys

from ..cli_base import add_output, add_overwrite, add_where, positive_int, where_filter


def add_arguments(parser) -> None:
    parser.add_argument("input", help="manifest (.parquet)")
    add_output(parser, "PNG to write")
    add_where(parser)
    add_overwrite(parser)
    parser.add_argument("--n", type=positive_int, default=36, help="number of faces (default 36)")
    parser.add_argument("--size", type=positive_int, default=192, help="tile side in pixels (default 192)")
    parser.add_argument("--cols", type=positive_int, default=None, help="tiles per row (default: about square)")
    parser.add_argument("--no-legend", action="store_true",
                        help="leave out the legend under the sheet (colours of the landmark groups and pose axes, "
                             "what the tile headers say, the count of faces without an image)")
    parser.add_argument("--seed", type=int, default=None, help="draw the faces at random with this seed (default: the first N)")


def run(args) -> int:
    from ..io import check_overwrite
    from ..report.render import render_manifest

    where_filter(args)  # a bad --where is refused before anything is read
    check_overwrite(args.output, [args.input], args.overwrite)

    # a LandmarkUnifyError (bad input, bad --where) is printed by the dispatcher as "render: error: ..."
    res = render_manifest(args.input, args.output, where=args.where, n=args.n, size=args.size, cols=args.cols,
                          seed=args.seed, legend=not args.no_legend)
    missing = (f"; {res.missing_images} without an image file (grey tiles)" if res.missing_images
               else "; every image found")
    for msg in res.unreadable:
        print(f"render: warning: unreadable image (grey tile): {msg}", file=sys.stderr)
    print(f"{res.path}: {res.faces} faces{missing}")
    return 0
