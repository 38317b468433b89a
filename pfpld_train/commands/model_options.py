"""Options shared by ``evaluate`` and ``predict`` for the model to run (ours, or any ONNX landmark model)."""

from __future__ import annotations

import argparse
import sys


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--device`` and the ONNX input / output options (with ``--preset`` for the known public models)."""
    from ..models.metadata import INPUT_PRESETS

    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="for our checkpoints")
    g = parser.add_argument_group(
        "ONNX models: input and outputs (defaults: the model's metadata, as written by `pfpld_train export`; "
        "else RGB, mean 0, scale 1/255 with a warning; first output with 196 values)")
    presets = ", ".join(f"{k} ({c.upper()}, mean {m:g}, scale 1/{1 / s:g})" for k, (c, m, s) in INPUT_PRESETS.items())
    g.add_argument("--preset", choices=sorted(INPUT_PRESETS),
                   help=f"input convention of a known model: {presets}; the options below override it")
    g.add_argument("--channel-order", choices=("rgb", "bgr"))
    g.add_argument("--mean", help="subtracted per channel: one value or three ('127.5' or '123,117,104')")
    g.add_argument("--scale", help="multiplied after the mean: one value or three (e.g. 0.0078431)")
    g.add_argument("--output", type=int, help="index of the output holding the 196 landmark values")
    g.add_argument("--pose-output", type=int, help="index of the output holding pitch, yaw, roll")
    g.add_argument("--pose-units", choices=("deg", "rad"))


def load_model_from_args(args: argparse.Namespace):
    """:func:`pfpld_train.evaluation.evaluate.load_model` with the options of :func:`add_model_options`; warns on
    stderr when an ONNX model runs on assumed preprocessing (nothing given, nothing in its metadata)."""
    from ..evaluation.evaluate import load_model
    from ..models.metadata import INPUT_PRESETS

    channel_order, mean, scale = args.channel_order, args.mean, args.scale
    if args.preset:
        c, m, s = INPUT_PRESETS[args.preset]
        channel_order = channel_order or c
        mean = m if mean is None else mean
        scale = s if scale is None else scale
    model = load_model(args.model, device=args.device, channel_order=channel_order, mean=mean, scale=scale,
                       output=args.output, pose_output=args.pose_output, pose_units=args.pose_units)
    if getattr(model, "assumed_preprocessing", False):
        print(f"warning: {model.name} states no input convention in its metadata and none was given: assuming "
              "RGB, (x - 0) * 1/255. A model trained otherwise scores badly; pass --preset "
              f"({', '.join(INPUT_PRESETS)}) or --channel-order, --mean and --scale", file=sys.stderr)
    return model
