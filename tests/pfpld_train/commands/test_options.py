"""The same option means the same thing in every pfpld_train command (and in landmark_unify's CLI):
-o/--output, -q/--quiet, --channel-order, --pose-units, --landmarks-output / --pose-output (name or index);
the older spellings still work, with a warning on stderr."""

from __future__ import annotations

import argparse
import importlib

import pytest

COMMANDS = ("fit", "evaluate", "predict", "cache", "export", "quantize-check")
#: Positional arguments that make each command's parser accept a line.
POSITIONALS = {
    "fit": ["m.parquet"],
    "evaluate": ["model.onnx", "m.parquet"],
    "predict": ["model.onnx", "a.jpg"],
    "cache": ["m.parquet"],
    "export": ["model.pt", "--format", "onnx"],
    "quantize-check": ["model.onnx", "m.parquet"],
}


def _parser(command: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"pfpld_train.commands.{command.replace('-', '_')}")
    parser = argparse.ArgumentParser(prog=f"pfpld_train {command}")
    module.add_arguments(parser)
    return parser


@pytest.mark.parametrize("command", COMMANDS)
def test_output_is_dash_o_everywhere_and_out_still_works(command, capsys):
    parser = _parser(command)
    base = POSITIONALS[command]
    assert str(parser.parse_args([*base, "-o", "dest"]).output) == "dest"
    assert str(parser.parse_args([*base, "--output", "dest"]).output) == "dest"
    capsys.readouterr()
    assert str(parser.parse_args([*base, "--out", "dest"]).output) == "dest"
    assert "--out is deprecated; use -o/--output" in capsys.readouterr().err


@pytest.mark.parametrize("command", ("fit", "evaluate", "cache"))
def test_quiet_is_dash_q_and_no_progress_still_works(command, capsys):
    parser = _parser(command)
    base = [*POSITIONALS[command], "-o", "dest"]
    assert not parser.parse_args(base).quiet
    assert parser.parse_args([*base, "-q"]).quiet and parser.parse_args([*base, "--quiet"]).quiet
    capsys.readouterr()
    assert parser.parse_args([*base, "--no-progress"]).quiet
    assert "--no-progress is deprecated" in capsys.readouterr().err


@pytest.mark.parametrize("command", ("evaluate", "predict", "quantize-check"))
def test_model_input_and_output_options_are_spelled_once(command, capsys):
    parser = _parser(command)
    base = [*POSITIONALS[command], "-o", "dest"]
    a = parser.parse_args([*base, "--channel-order", "bgr", "--pose-units", "rad", "--landmarks-output", "lm",
                           "--pose-output", "1"])
    assert (a.channel_order, a.pose_units, a.landmarks_output, a.pose_output) == ("bgr", "rad", "lm", 1)
    capsys.readouterr()
    a = parser.parse_args([*base, "--color", "BGR", "--pose-unit", "degrees"])
    assert (a.channel_order, a.pose_units) == ("bgr", "deg")
    err = capsys.readouterr().err
    assert "--color is deprecated; use --channel-order" in err and "--pose-unit is deprecated" in err
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--color", "XYZ"])


@pytest.mark.parametrize("command", ("evaluate", "predict"))
def test_old_output_index_is_refused_with_a_hint(command, capsys):
    """``--output 0`` used to pick the landmark output by index; it is now the output path everywhere."""
    with pytest.raises(SystemExit):
        _parser(command).parse_args([*POSITIONALS[command], "--output", "0"])
    assert "--landmarks-output" in capsys.readouterr().err


def test_evaluate_json_is_an_old_spelling_of_output(capsys):
    assert _parser("evaluate").parse_args(["m.onnx", "m.parquet", "--json", "r.json"]).output == "r.json"
    assert "--json is deprecated; use -o/--output" in capsys.readouterr().err


def test_quantize_check_defaults_pose_to_radians():
    assert _parser("quantize-check").parse_args(POSITIONALS["quantize-check"]).pose_units == "rad"
    assert _parser("evaluate").parse_args(POSITIONALS["evaluate"]).pose_units is None  # metadata, else deg
