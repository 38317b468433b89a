"""``pfpld_train evaluate MODEL MANIFEST``: NME, failure rate, AUC, per-attribute NME, pose MAE."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from landmark_unify.cli_base import PATH, TEXT, add_overwrite, add_quiet, count, deprecated_alias, number

from ..evaluation.metrics import POSE_MAX_ANGLE
from .model_options import add_model_options, add_output_path, load_model_from_args

#: Faces per forward pass (``evaluate``, ``fit``): 4096 crops of 112x112x3 float32 are 0.6 GB.
BATCH_SIZE = count(4096, unit="faces")
#: An NME threshold: a fraction of the normalising distance.
NME_THRESHOLD = number(0, 1, low_open=True, unit="fraction of the eye-corner distance")
#: ``--pose-max-angle``: degrees, or none.
MAX_ANGLE = number(0, 180, low_open=True, unit="degrees", none=("none", "off"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=PATH, help="our checkpoint (.pt, or a fit output folder: its best.pt), an ONNX file, "
                        "or a folder holding one ONNX file")
    parser.add_argument("manifest", type=PATH, help="manifest with the faces to score: a .parquet file or a dataset directory")
    add_output_path(parser, "write the summary here as JSON (default: print only)", required=False)
    deprecated_alias(parser, "--json", "-o/--output", "output", type=PATH)
    parser.add_argument("--split", type=TEXT, help="score only rows of this split")
    parser.add_argument("--save-predictions", type=PATH, help="write per-face predictions (.npz: sample_id, pred, nme)")
    parser.add_argument("--batch-size", type=BATCH_SIZE, default=64, help="faces per forward pass (64)")
    parser.add_argument("--failure-threshold", dest="threshold", type=NME_THRESHOLD, default=0.1,
                        help="NME above which a face counts as a failure; also the AUC's upper limit (0.1)")
    deprecated_alias(parser, "--threshold", "--failure-threshold", "threshold", type=NME_THRESHOLD)
    parser.add_argument("--pose-max-angle", type=MAX_ANGLE, default=POSE_MAX_ANGLE, metavar="DEG",
                        help=f"faces whose ground-truth pose has any |angle| above DEG are counted and left out of "
                             f"the pose MAE (the AFLW2000-3D convention, default {POSE_MAX_ANGLE:g}); 'none' keeps "
                             "every face. Angle errors wrap either way")
    add_model_options(parser)
    add_overwrite(parser)
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from landmark_unify import manifest as mf
    from landmark_unify.io import atomic_path, write_text_atomic
    from landmark_unify.outputs import current

    from ..evaluation.evaluate import evaluate_manifest, format_table

    inputs = [args.manifest] + ([args.model] if Path(args.model).is_file() else [])  # a run folder may hold the output
    for written in (args.output, args.save_predictions):  # never over the manifest or the model read
        current().file(written, inputs=inputs, overwrite=args.overwrite, what="an input (manifest or model)")
    df = mf.read(args.manifest)
    if args.split:
        df = df[df["split"] == args.split].reset_index(drop=True)
        if not len(df):
            print(f"evaluate: error: {args.manifest}: no row with split {args.split!r}", file=sys.stderr)
            return 1
    model = load_model_from_args(args)
    result = evaluate_manifest(model, df, batch_size=args.batch_size, threshold=args.threshold,
                               pose_max_angle=args.pose_max_angle, progress=not args.quiet)
    summary = {"model": str(args.model), "manifest": str(args.manifest), "split": args.split, **result.summary}
    if not result.summary["faces_scored"]:  # NaN metrics of nothing are no result: say why, write nothing
        why = ", ".join(f"{k} {v}" for k, v in result.summary["skipped"].items() if v)
        print(f"evaluate: error: {args.manifest}: no face could be scored ({why or 'no faces'}); nothing written",
              file=sys.stderr)
        return 1
    print(format_table(summary))
    if args.output:
        write_text_atomic(json.dumps(_no_nan(summary), indent=2, allow_nan=False) + "\n", args.output)
        print(f"wrote {args.output}")
    if args.save_predictions:
        path = Path(args.save_predictions)
        extra = {} if result.pose_deg is None else {"pose_deg": result.pose_deg}
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no ".npz"
            np.savez(f, sample_id=df["sample_id"].to_numpy(dtype=str), pred=result.pred, nme=result.nme, **extra)
        print(f"wrote {path}")
    return 0


def _no_nan(obj):
    """NaN (no face in a subset, no pose) becomes JSON null."""
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    return obj
