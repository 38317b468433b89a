"""``pfpld_train quantize-check MODEL MANIFEST``: int8 drift of any ONNX landmark model on real faces.

MODEL is quantized with onnxruntime's static quantization (per-tensor and per-channel weight scales,
for each ``--calib-sizes``), calibrated on face crops of ``--calib`` (default: a deterministic part of
MANIFEST, left out of the evaluation), and scored on the crops of MANIFEST: NME and failure rate of fp32
and int8, landmark drift int8 vs fp32, pose drift. MANIFEST may be a manifest or a WFLW list / folder.

Preprocessing: read from the model's metadata when it was written by ``pfpld_train export``; otherwise
give ``--channel-order`` (``--color`` is its deprecated spelling), ``--mean`` and ``--scale`` (x = (pixel - mean) * scale). Presets: ``--preset pfpld``
(RGB, x/255), ``--preset pfld_ghostone`` (BGR, (x-127.5)/127.5), ``--preset proxyless_gaze`` (BGR, x/255).
"""

from __future__ import annotations

import argparse
import json

from landmark_unify.cli_base import PATH_OBJ, TEXT, add_output, add_overwrite, count, deprecated_alias, number
from landmark_unify.io import write_bytes_atomic

from ..models.metadata import INPUT_PRESETS
from .model_options import add_onnx_io_options

#: The presets of ``evaluate`` and ``predict``, colour order in capitals as :class:`Preprocess` spells it.
PRESETS = {k: (c.upper(), m, s) for k, (c, m, s) in INPUT_PRESETS.items()}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=PATH_OBJ, help="ONNX model (one image input, 196 landmark values per face)")
    p.add_argument("manifest", type=PATH_OBJ, help="manifest (.parquet file or dataset directory) or WFLW list (or "
                   "folder of lists) to evaluate on")
    p.add_argument("--split", default=None, type=TEXT, help="manifest split to evaluate on")
    p.add_argument("--limit", type=count(10_000_000, unit="faces"), default=None,
                   help="at most this many faces from MANIFEST")
    p.add_argument("--calib", type=PATH_OBJ, default=None, help="manifest (file or dataset directory) / WFLW list "
                   "for calibration")
    p.add_argument("--calib-split", default=None, type=TEXT, help="manifest split of --calib")
    p.add_argument("--calib-sizes", type=count(10_000, unit="faces"), nargs="+", default=[16, 64],
                   help="calibration set sizes to compare (default 16 64)")
    modes = ("per-tensor", "per-channel", "both")
    p.add_argument("--weight-quant", dest="weights", choices=modes, default="both",
                   help="int8 weight quantisation to simulate (default both)")
    deprecated_alias(p, "--weights", "--weight-quant", "weights", choices_map={m: m for m in modes})
    p.add_argument("--method", choices=("minmax", "percentile"), default="minmax",
                   help="activation range calibration (default minmax)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="preprocessing of a known model")
    p.add_argument("--mean", type=number(-1e4, 1e4, unit="pixel value"), default=None,
                   help="x = (pixel - mean) * scale")
    p.add_argument("--scale", type=number(-1e4, 1e4, unit="per pixel value"), default=None,
                   help="multiplied after the mean")
    add_onnx_io_options(p, pose_units_default="rad")
    add_output(p, "write the JSON report here", required=False)
    p.add_argument("--keep-models", type=PATH_OBJ, default=None, help="keep the int8 models in this folder")
    add_overwrite(p)


def _preprocess(args):
    from ..export.errors import ExportError
    from ..export.faces import Preprocess
    from ..export.onnx.export import read_preprocess

    if args.preset:
        color, mean, scale = PRESETS[args.preset]
    else:
        stored = read_preprocess(args.model)
        if stored is None and None in (args.channel_order, args.mean, args.scale):
            raise ExportError(f"{args.model}: no preprocessing in its metadata; give --preset or "
                              "--channel-order, --mean and --scale")
        color = args.channel_order.upper() if args.channel_order else stored.color
        mean = args.mean if args.mean is not None else stored.mean
        scale = args.scale if args.scale is not None else stored.scale
    return Preprocess(color, float(mean), float(scale))


def _table(rep: dict) -> str:
    rows = [f"model {rep['model']}", f"preprocessing {rep['preprocess']}",
            f"evaluated on {rep['eval_faces']} faces; calibration pool {rep['calibration_pool']} faces",
            f"{'weights':<12} {'calib':>5} {'NME fp32':>9} {'NME int8':>9} {'FR fp32':>8} {'FR int8':>8} "
            f"{'drift mean':>10} {'drift p95':>9} {'pose drift':>10}"]
    for r in rep["runs"]:
        pose = r.get("pose_drift_deg", r.get("pose_drift"))
        rows.append(f"{r['weights']:<12} {r['calibration_faces']:>5} {r['nme_fp32_pct']:>8.2f}% {r['nme_int8_pct']:>8.2f}% "
                    f"{r['failure_rate_fp32_pct']:>7.1f}% {r['failure_rate_int8_pct']:>7.1f}% "
                    f"{r['landmark_drift_pct']['mean']:>9.2f}% {r['landmark_drift_pct']['p95']:>8.2f}% "
                    f"{'-' if pose is None else format(pose['mean'], '.2f'):>10}")
    rows.append("NME: % of the ground-truth eye-corner distance (60-72); FR: NME > 10 %; drift: int8 vs fp32 "
                "predictions, same normalisation; pose drift: mean |int8 - fp32| per angle"
                + (" in degrees" if any("pose_drift_deg" in r for r in rep["runs"]) else ""))
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    from landmark_unify.outputs import current

    from ..export.errors import ExportError
    from ..export.faces import read_faces
    from ..export.nnie.quant import quantize_check

    if not args.model.is_file():
        raise ExportError(f"{args.model}: model not found")
    inputs = [p for p in (args.model, args.manifest, args.calib) if p]
    current().file(args.output, inputs=inputs, overwrite=args.overwrite, what="an input (the model or a manifest)")
    keep = None if args.keep_models is None else current().folder(args.keep_models, inputs=inputs,
                                                                    overwrite=args.overwrite)
    if min(args.calib_sizes) < 1:
        raise ExportError(f"--calib-sizes must all be >= 1, got {args.calib_sizes}")
    pre = _preprocess(args)
    faces = read_faces(args.manifest, limit=args.limit, split=args.split, spread=args.limit is not None)
    largest = max(args.calib_sizes)
    if args.calib is not None:
        calib = read_faces(args.calib, limit=largest, split=args.calib_split, spread=True)
        ids = set(calib.ids)
        evalset = faces.subset([i for i, s in enumerate(faces.ids) if s not in ids])
        note = f"calibration from {args.calib}"
    else:
        if largest >= len(faces):
            raise ExportError(f"{args.manifest}: {len(faces)} faces, too few to calibrate on {largest} and "
                              "evaluate on the rest; give --calib or smaller --calib-sizes")
        calib, evalset = faces.split(largest)
        note = f"calibration faces drawn from {args.manifest} (deterministic hash split), not evaluated"
    modes = {"per-tensor": (False,), "per-channel": (True,), "both": (False, True)}[args.weights]
    rep = quantize_check(args.model, evalset, calib, pre, calib_sizes=sorted(set(args.calib_sizes)),
                         per_channel=modes, method=args.method, landmarks=args.landmarks_output,
                         pose=args.pose_output, pose_radians=args.pose_units == "rad",
                         work_dir=None if keep is None else keep.staging, keep=keep is not None)
    if keep is not None:
        rep = keep.final(rep)
    rep["calibration_note"] = note
    print(_table(rep))
    if args.output is not None:
        write_bytes_atomic((json.dumps(rep, indent=2) + "\n").encode(), args.output)
        print(f"report: {args.output}")
    return 0
