"""``pfpld_train export CKPT --format onnx|caffe|nnie -o DIR``: export with parity and NNIE checks.

CKPT is a trainer checkpoint (a dict with a ``model`` state_dict, or a bare state_dict); for ``caffe`` and
``nnie`` it may also be an ONNX file (the exporter then checks the Caffe model against that file).
Parity inputs are real faces: ``--faces`` (manifest or WFLW list, repeatable) and ``--photos``.
Every run writes ``DIR/report.json`` and prints what was checked; it exits 1 with a message naming the
problem when the checkpoint cannot be exported, a parity check fails or the model violates NNIE's
constraints (listed in ``DIR/compatibility.txt``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from landmark_unify.cli_base import PATH_OBJ, TEXT, Text, add_output, add_overwrite, count, number

#: ``--tol``: the largest absolute difference of an exported model's outputs from PyTorch's
TOLERANCE = number(0, 1, low_open=True, unit="absolute difference")
#: ``--stem``: a file name stem, not a path
STEM = Text("file name stem")


#: ``--compile-mode`` of the NNIE mapper (with ``choices``)
COMPILE_MODE = count(2, low=0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..export.nnie.package import MAX_CALIB_IMAGES

    p.add_argument("checkpoint", type=PATH_OBJ, help="trainer checkpoint (.pt), or an ONNX model for caffe/nnie")
    p.add_argument("--format", required=True, choices=("onnx", "caffe", "nnie"), help="what to write")
    add_output(p, "output folder (created)")
    add_overwrite(p)
    p.add_argument("--stem", default="pfpld", type=STEM, help="file name stem (default: pfpld)")
    p.add_argument("--checkpoint-key", default=None, type=TEXT, help="checkpoint entry holding the state_dict (default: model)")
    p.add_argument("--faces", type=PATH_OBJ, action="append", default=[],
                   help="manifest (.parquet file or dataset directory) or WFLW list whose face crops are used for the "
                   "parity check (repeatable)")
    p.add_argument("--photos", type=PATH_OBJ, nargs="*", default=[], help="photos joining the parity check: PATH (centre crop) or PATH:x0,y0,x1,y1 (face box)")
    p.add_argument("--parity-count", type=count(1024, unit="faces"), default=16, help="faces per --faces source for parity (default 16)")
    p.add_argument("--tol", type=TOLERANCE, default=1e-4, help="max abs difference allowed vs PyTorch (default 1e-4)")
    p.add_argument("--reference-prototxt", type=PATH_OBJ, default=None,
                   help="Caffe prototxt to compare the structure with (e.g. the upstream pfpld.prototxt)")
    g = p.add_argument_group("nnie")
    g.add_argument("--calib", type=PATH_OBJ, help="manifest (file or dataset directory) / WFLW list for calibration crops "
                   "(required for nnie)")
    g.add_argument("--calib-split", default=None, type=TEXT, help="manifest split for calibration (e.g. train)")
    g.add_argument("--calib-count", type=count(MAX_CALIB_IMAGES, unit="images"), default=64,
                   help="calibration images, drawn across the whole manifest (default 64; 1 to 256, the mapper's "
                   "[batch_num] limit)")
    g.add_argument("--calib-format", default="jpg", choices=("jpg", "png", "bmp"))
    g.add_argument("--holdout", type=PATH_OBJ, help="manifest (file or dataset directory) / WFLW list for the int8 drift check")
    g.add_argument("--holdout-split", default=None, type=TEXT, help="manifest split for the int8 check (e.g. test)")
    g.add_argument("--holdout-count", type=count(1_000_000, unit="faces"), default=None, help="limit the held-out faces")
    g.add_argument("--compile-mode", type=COMPILE_MODE, default=0, choices=(0, 1, 2),
                   help="mapper compile_mode: 0 = 8-bit, 1 = 16-bit (default 0)")
    g.add_argument("--max-conv-kernel", type=count(64, unit="pixels"), default=15, help="NNIE convolution kernel limit (default 15)")


def _summary(report: dict) -> str:
    lines = []
    if "onnx" in report:
        o = report["onnx"]
        lines.append(f"onnx: {o['path']} (checker {o.get('checker')}, dynamic batch {o.get('dynamic_batch', 'n/a')})")
    for k, v in report.get("parity", {}).items():
        lines.append(f"parity {k}: " + ", ".join(f"{n} {d:.2g}" for n, d in v.items()))
    if "parity_inputs" in report:
        lines.append(f"parity inputs: {report['parity_inputs']}")
    if "caffe" in report:
        c = report["caffe"]
        lines.append(f"caffe: {c['prototxt']} + .caffemodel, {c['layers']} layers {c['layer_counts']}, "
                     f"loaded by {c.get('loaded_by')}")
        ref = c.get("reference_comparison")
        if ref:
            lines.append(f"vs reference prototxt: same graph {ref['same_graph']}, same order {ref['same_order']}, "
                         f"{len(ref['differences'])} differing run(s)")
    if report.get("caffe", {}).get("pose_trained") is False or report.get("checkpoint", {}).get("pose_trained") is False:
        lines.append("pose output: UNTRAINED (no training face had a pose); recorded in the model's metadata"
                     + (", the prototxt's header" if "caffe" in report else "") + "; not a head pose")
    if report.get("caffe", {}).get("overlay"):
        lines.append(f"landmarks drawn: {report['caffe']['overlay']}")
    if "nnie_check" in report:
        n = report["nnie_check"]
        lines.append(f"nnie check: {n['errors']} error(s), {n['warnings']} warning(s) ({n['file']})")
    if "calibration" in report:
        lines.append(f"calibration: {report['calibration']['images']} crops -> {report['calibration']['list']}")
    if "int8" in report:
        lines.append(f"int8 simulation: {report['int8']['summary']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    args.out = Path(args.output)
    from landmark_unify.outputs import current

    from ..export.errors import ExportError
    from ..export.faces import read_faces
    from ..export.nnie.check import NnieLimits
    from ..export.nnie.package import MAX_CALIB_IMAGES
    from ..export.onnx.export import load_checkpoint
    from ..export.pipeline import (
        export_caffe_dir,
        export_nnie_dir,
        export_onnx_dir,
        parity_batch,
        write_report,
    )

    report: dict = {"format": args.format, "source": str(args.checkpoint)}
    inputs = [args.checkpoint, *args.faces, *args.photos, args.reference_prototxt, args.calib, args.holdout]
    if Path(args.stem).name != args.stem or args.stem in ("", ".", ".."):
        raise ExportError(f"--stem {args.stem!r}: a file name is needed (no folder part); every file is written "
                          f"inside -o {args.output}")
    folder = current().folder(args.out, inputs=[p for p in inputs if p], overwrite=args.overwrite,
                              what="an input (the model, faces, photos or a reference)")
    folder.path(f"{args.stem}.onnx")
    out = folder.staging
    try:
        if args.checkpoint.suffix == ".onnx":
            if args.format == "onnx":
                raise ExportError(f"{args.checkpoint}: already ONNX; use --format caffe or nnie")
            if not args.checkpoint.is_file():
                raise ExportError(f"{args.checkpoint}: not found")
            model = args.checkpoint
        else:
            model, info = load_checkpoint(args.checkpoint, args.checkpoint_key)
            report["checkpoint"] = info
        x, source, crops = parity_batch(args.faces, args.photos, args.parity_count)
        if args.format == "onnx":
            export_onnx_dir(model, out, x, source, stem=args.stem, tol=args.tol, report=report)
        elif args.format == "caffe":
            export_caffe_dir(model, out, x, source, stem=args.stem, tol=args.tol,
                             reference_prototxt=args.reference_prototxt, report=report, overlay_crops=crops)
        else:
            if args.calib is None:
                raise ExportError("--format nnie needs --calib (a manifest or WFLW list for calibration crops)")
            if not 1 <= args.calib_count <= MAX_CALIB_IMAGES:
                raise ExportError(f"--calib-count {args.calib_count}: the mapper calibrates on 1 to "
                                  f"{MAX_CALIB_IMAGES} images ([batch_num]); writing more would leave some unused")
            calib = read_faces(args.calib, limit=args.calib_count, split=args.calib_split, spread=True)
            holdout = None
            if args.holdout is not None:
                holdout = read_faces(args.holdout, limit=args.holdout_count, split=args.holdout_split, spread=True,
                                     seed=1)
                overlap = set(calib.ids) & set(holdout.ids)
                if overlap:
                    keep = [i for i, s in enumerate(holdout.ids) if s not in overlap]
                    holdout = holdout.subset(keep)
                    report["holdout_note"] = f"{len(overlap)} face(s) also in the calibration set were left out"
            export_nnie_dir(model, out, x, source, calib_faces=calib, holdout_faces=holdout,
                            stem=args.stem, tol=args.tol, calib_format=args.calib_format,
                            compile_mode=args.compile_mode, reference_prototxt=args.reference_prototxt,
                            limits=NnieLimits(max_conv_kernel=args.max_conv_kernel), report=report,
                            overlay_crops=crops)
    except ExportError as exc:
        print(f"pfpld_train export: error: {folder.final(str(exc))}; nothing written", file=sys.stderr)
        return 1
    report = folder.final(report)
    write_report(out / "report.json", report)
    print(_summary(report))
    if report.get("failures"):
        print("pfpld_train export: parity check failed: " + "; ".join(report["failures"]) + "; nothing written",
              file=sys.stderr)
        return 1
    print(f"report: {args.out / 'report.json'}")
    return 0

