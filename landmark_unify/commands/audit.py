"""``landmark_unify audit IN -o OUT.parquet``: rank the faces of a manifest by how suspect their annotation is."""
from __future__ import annotations

from ..cli_base import (
    PATH,
    TEXT,
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


def add_arguments(parser) -> None:
    from ..ops.audit import FIT_SAMPLE, MODEL_GROUP

    parser.add_argument("input", type=PATH, help="manifest to audit (a .parquet file or a dataset folder)")
    add_output(parser, "audit to write (.parquet): one row per face, docs/spec/audit.md")
    add_where(parser, "faces to audit (the shape models are learned from them too)")
    parser.add_argument("--model", dest="models", action="append", default=[], metavar="SPEC", type=TEXT,
                        help="also score the faces against a landmark model run on their images (repeatable): our "
                             "checkpoint (.pt or a fit folder), a 98-point ONNX model as PATH or PATH@PRESET "
                             "(e.g. model.onnx@pfld_ghostone), or fan2d / fan3d; models come from an installed "
                             f"package's {MODEL_GROUP!r} entry point (pfpld_train)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="for our checkpoints")
    parser.add_argument("--fit-sample", type=count(10_000_000, unit="faces"), default=FIT_SAMPLE, metavar="N",
                        help=f"learn the shape models from about N faces (evenly spread slices of rows; default "
                             f"{FIT_SAMPLE}); every face is scored")
    parser.add_argument("--sheet", metavar="PNG", type=PATH, help="also draw the top suspects as a contact sheet here")
    parser.add_argument("--html", metavar="DIR", type=PATH, help="also write an HTML page of the top suspects in this folder")
    parser.add_argument("--n", type=count(10_000, unit="faces"), default=36, help="suspects drawn by --sheet and --html (default 36)")
    add_on_error(parser)
    add_overwrite(parser)
    add_quiet(parser)
    add_engine_options(parser, single_file=False)


def run(args) -> int:
    import sys

    from ..ops.audit import audit_manifest, draw_suspects, print_summary
    from ..outputs import current

    # the pictures are declared before any work: a refused output stops the command first
    current().file(args.sheet, inputs=[args.input], overwrite=args.overwrite)
    page = current().folder(args.html, inputs=[args.input], overwrite=args.overwrite) if args.html else None
    res = audit_manifest(args.input, args.output, where=args.where, models=args.models, device=args.device,
                         fit_sample=args.fit_sample, on_error=args.on_error, overwrite=args.overwrite,
                         command=command_line(getattr(args, "_prog", "landmark_unify"), args),
                         run=run_options(args))
    print_summary(res)
    for rec in res.skipped[:5]:
        print(f"skipped image signals: {rec['sample_id']} {rec['image']}: {rec['reason']}", file=sys.stderr)
    if args.sheet or args.html:
        html_dir = page.staging if page is not None else None
        for kind, path in draw_suspects(args.input, res.output, sheet=args.sheet, html_dir=html_dir,
                                        n=args.n).items():
            shown = page.final(path) if page is not None else path
            print(f"{shown}: top {args.n} suspects ({kind})", file=sys.stderr)
    return 0

