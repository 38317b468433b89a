"""``landmark_unify render FILE -o sheet.png``: a contact sheet of faces with landmarks and pose axes."""
from __future__ import annotations

import sys

from ..cli_base import PATH, SEED, add_output, add_overwrite, add_where, check_allocation, count

#: The largest tile side, in pixels.
MAX_TILE = 2048
#: The most faces on one sheet.
MAX_FACES = 10_000
#: The longest side of a sheet, in pixels (PNG viewers and OpenCV's writer stop well before PNG's limit).
MAX_SHEET_SIDE = 32_767


def add_arguments(parser) -> None:
    parser.add_argument("input", type=PATH, help="manifest (.parquet)")
    add_output(parser, "PNG to write")
    add_where(parser)
    add_overwrite(parser)
    parser.add_argument("--n", type=count(MAX_FACES, unit="faces"), default=36, help="number of faces (default 36)")
    parser.add_argument("--size", type=count(MAX_TILE, low=16, unit="pixels"), default=192,
                        help="tile side in pixels (default 192)")
    parser.add_argument("--cols", type=count(MAX_FACES, unit="tiles"), default=None,
                        help="tiles per row (default: about square)")
    parser.add_argument("--no-legend", action="store_true",
                        help="leave out the legend under the sheet (colours of the landmark groups and pose axes, "
                             "what the tile headers say, the count of faces without an image)")
    parser.add_argument("--seed", type=SEED, default=None,
                        help="draw the faces at random with this seed (default: the first N)")


def check_args(args) -> None:
    """The sheet that --n, --size and --cols imply must fit: a side of at most MAX_SHEET_SIDE pixels, and no
    more memory than the allocation limit."""
    from ..cli_base import UsageError
    from ..report.render import sheet_shape

    h, w, c = sheet_shape(args.n, args.size, args.cols)
    if max(h, w) > MAX_SHEET_SIDE:
        raise UsageError(f"--n {args.n} --size {args.size}" + (f" --cols {args.cols}" if args.cols else "")
                         + f" make a sheet of {w}x{h} pixels; a side may be at most {MAX_SHEET_SIDE}")
    check_allocation(f"a sheet of {w}x{h} pixels (--n {args.n}, --size {args.size})", h * w * c)


def run(args) -> int:
    from ..outputs import current
    from ..report.render import render_manifest

    current().file(args.output, inputs=[args.input], overwrite=args.overwrite)

    # a LandmarkUnifyError (bad input) is printed by the dispatcher as "render: error: ..."; --where was
    # parsed by the dispatcher
    res = render_manifest(args.input, args.output, where=args.where, n=args.n, size=args.size, cols=args.cols,
                          seed=args.seed, legend=not args.no_legend)
    missing = (f"; {res.missing_images} without an image file (grey tiles)" if res.missing_images
               else "; every image found")
    for msg in res.unreadable:
        print(f"render: warning: unreadable image (grey tile): {msg}", file=sys.stderr)
    print(f"{res.path}: {res.faces} faces{missing}")
    return 0
