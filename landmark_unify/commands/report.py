"""``landmark_unify report FILE -o DIR``: histograms of yaw, pitch, roll and EAR per source + HTML page."""
from __future__ import annotations

from ..cli_base import add_output, add_overwrite, add_where, non_negative_float, where_filter


def add_arguments(parser) -> None:
    parser.add_argument("input", help="manifest (.parquet)")
    add_output(parser, "folder to write the PNG files and index.html into")
    parser.add_argument("--closed-threshold", type=non_negative_float, default=None,
                        help="EAR threshold marked on the EAR histogram (default: the library's)")
    add_where(parser)
    add_overwrite(parser)


def run(args) -> int:
    from ..outputs import current
    from ..report.html import write_report

    where = where_filter(args)  # a bad --where is refused before anything is read or written
    folder = current().folder(args.output, inputs=[args.input], overwrite=args.overwrite)
    # a LandmarkUnifyError (bad input) is printed by the dispatcher as "report: error: ..."
    index = write_report(args.input, folder.staging, closed=args.closed_threshold, where=where)
    print(folder.final(index))
    return 0
