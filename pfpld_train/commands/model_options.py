"""Options shared by ``evaluate`` and ``predict`` for the model to run (ours, or any ONNX landmark model)."""

from __future__ import annotations

import argparse
import sys

from landmark_unify.cli_base import MAX_TEXT, PATH, Numbers, OptionType, deprecated_alias, number

#: Old spellings of values: quantize-check's ``--color RGB`` and ``--pose-unit radians``.
CHANNEL_ORDERS = {"rgb": "rgb", "bgr": "bgr", "RGB": "rgb", "BGR": "bgr"}
POSE_UNITS = {"radians": "rad", "degrees": "deg", "rad": "rad", "deg": "deg"}


class OutputRef(OptionType):
    """An ONNX output named by its name, or by its index (a whole number from 0 to 255)."""

    def describe(self) -> str:
        return "an output name, or its index 0 to 255"

    def __call__(self, text: str) -> str | int:
        s = str(text).strip()
        if s.isascii() and s.lstrip("-").isdigit():
            if len(s) > 4 or not 0 <= int(s) <= 255:
                raise argparse.ArgumentTypeError(f"expected {self.describe()}; got {text!r}")
            return int(s)
        if not s or "\0" in s or len(s) > MAX_TEXT:
            raise argparse.ArgumentTypeError(f"expected {self.describe()}; got {str(text)[:80]!r}")
        return text


output_ref = OutputRef()
#: ``--mean``: subtracted per channel from pixel values (0 to 255): one value or three.
MEAN = Numbers(number(-1e4, 1e4, unit="pixel value"), (1, 3), "(one, or one per channel)")
#: ``--scale``: multiplied after the mean: one value or three; not 0.
SCALE = Numbers(number(-1e4, 1e4, unit="per pixel value"), (1, 3), "(one, or one per channel)")


def add_onnx_io_options(g, *, pose_units_default: str | None = None) -> None:
    """The options that say how to feed an ONNX landmark model and read it, the same in ``evaluate``,
    ``predict`` and ``quantize-check``: ``--channel-order {rgb,bgr}`` (``--color`` deprecated),
    ``--landmarks-output`` / ``--pose-output`` NAME or INDEX, ``--pose-units {deg,rad}`` (``--pose-unit
    radians|degrees`` deprecated). ``--preset``, ``--mean`` and ``--scale`` are added by the caller."""
    g.add_argument("--channel-order", choices=("rgb", "bgr"), help="channel order the model expects")
    deprecated_alias(g, "--color", "--channel-order", "channel_order", choices_map=CHANNEL_ORDERS)
    g.add_argument("--landmarks-output", type=output_ref, metavar="NAME|INDEX",
                   help="the output holding the 196 landmark values, by name or index (default: one named "
                        "'landmarks', else the first with 196 values per face)")
    g.add_argument("--pose-output", type=output_ref, metavar="NAME|INDEX",
                   help="the output holding pitch, yaw, roll, by name or index (default: one named 'pose')")
    g.add_argument("--pose-units", choices=("deg", "rad"), default=pose_units_default,
                   help="units of the pose output" + (f" (default {pose_units_default})" if pose_units_default else
                                                      " (default: the model's metadata, else deg)"))
    deprecated_alias(g, "--pose-unit", "--pose-units", "pose_units", choices_map=POSE_UNITS)


class _OldOutputIndex(argparse.Action):
    """``-o/--output PATH``; a bare whole number is refused (``--output INDEX`` picked the landmark output
    before ``--output`` meant the output path in every command), pointing at ``--landmarks-output``."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values.strip().isdigit():
            parser.error(f"argument {option_string}: {values!r} looks like an output index; the landmark output "
                         "is now --landmarks-output NAME|INDEX (-o/--output is the output path)")
        setattr(namespace, self.dest, values)


def add_output_path(parser: argparse.ArgumentParser, help: str, *, required: bool = True) -> None:
    """``-o/--output PATH`` (``--out`` deprecated), as :func:`landmark_unify.cli_base.add_output`, for the
    commands whose ``--output`` used to be the landmark output index (refused with a hint)."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("-o", "--output", action=_OldOutputIndex, type=PATH, help=help)
    deprecated_alias(group, "--out", "-o/--output", "output", type=PATH)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--device`` and the ONNX input / output options (with ``--preset`` for the known public models)."""
    from ..models.metadata import INPUT_PRESETS

    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="for our checkpoints")
    g = parser.add_argument_group(
        "ONNX models: input and outputs (defaults: the model's metadata, as written by `pfpld_train export`; "
        "else RGB, mean 0, scale 1/255 with a warning; the output named 'landmarks', else the first with 196 values)")
    presets = ", ".join(f"{k} ({c.upper()}, mean {m:g}, scale 1/{1 / s:g})" for k, (c, m, s) in INPUT_PRESETS.items())
    g.add_argument("--preset", choices=sorted(INPUT_PRESETS),
                   help=f"input convention of a known model: {presets}; the options below override it")
    g.add_argument("--mean", type=MEAN, help="subtracted per channel: one value or three ('127.5' or '123,117,104')")
    g.add_argument("--scale", type=SCALE, help="multiplied after the mean: one value or three (e.g. 0.0078431)")
    add_onnx_io_options(g)


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
                       landmarks_output=args.landmarks_output, pose_output=args.pose_output,
                       pose_units=args.pose_units)
    if getattr(model, "assumed_preprocessing", False):
        print(f"warning: {model.name} states no input convention in its metadata and none was given: assuming "
              "RGB, (x - 0) * 1/255. A model trained otherwise scores badly; pass --preset "
              f"({', '.join(INPUT_PRESETS)}) or --channel-order, --mean and --scale", file=sys.stderr)
    return model
