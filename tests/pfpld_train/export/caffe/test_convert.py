"""ONNX -> Caffe conversion: pooling rules, names, findings, a real trained network."""

from __future__ import annotations

import json
import re

import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pfpld_support import run_cli, single_thread, to_onnx, wflw_lists  # noqa: F401 (autouse: one torch/OpenCV thread)

from pfpld_train.commands import export as cmd
from pfpld_train.export.caffe.convert import (
    NNIE_RESERVED_SUFFIXES,
    Issue,
    _caffe_pool_size,
    _onnx_pool_size,
    format_issues,
    onnx_to_caffe,
    sanitize_name,
)

TOL = 1e-4


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_pooling_rounding_mismatch_is_an_error(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2, 1), torch.nn.MaxPool2d(2))  # 7x7 -> floor 3, ceil 4
    path = tmp_path / "pool.onnx"
    to_onnx(model, path, size=14)
    conv = onnx_to_caffe(onnx.load(str(path)))
    assert conv.errors[0].rule == "pool-rounding" and "3x3 (floor" in conv.errors[0].message
    assert {i.rule for i in conv.errors} == {"pool-rounding", "missing-output"}
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2, 1), torch.nn.MaxPool2d(2, ceil_mode=True))
    to_onnx(model, path, size=14)
    assert not onnx_to_caffe(onnx.load(str(path))).errors


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=40))
def test_sanitized_names_are_mapper_safe(name):
    out = sanitize_name(name)
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", out)
    assert not out.lower().endswith(NNIE_RESERVED_SUFFIXES)


def test_trained_reference_model_converts_to_caffe(shared_data, tmp_path):
    """A real trained ONNX network (PFLD-GhostOne) through the Caffe writer, checked by OpenCV on real faces."""
    model = shared_data / "reference_models" / "pfld_ghostone" / "PFLD_GhostOne_112_1_opt_sim.onnx"
    rc = run_cli(cmd, [str(model), "--format", "caffe", "-o", str(tmp_path), "--faces", str(wflw_lists(shared_data)),
                        "--parity-count", "4", "--stem", "ghostone"])
    assert rc == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert max(report["parity"]["caffe_vs_onnx_source"].values()) <= TOL
    assert report["caffe"]["layer_counts"]["Convolution"] > 40


@settings(max_examples=80, deadline=None)
@given(size=st.integers(3, 30), k=st.integers(1, 5), s=st.integers(1, 4), p=st.integers(0, 2))
def test_pool_size_rules_match_pytorch(size, k, s, p):
    """Floor rule = PyTorch's default; Caffe's rule = PyTorch's ceil_mode, except that Caffe drops a last
    window starting outside the image only when the layer has padding."""
    if p > k // 2 or size + 2 * p < k:
        return
    x = torch.zeros(1, 1, size, size)
    floor = torch.nn.functional.max_pool2d(x, k, s, p).shape[-1]
    ceil = torch.nn.functional.max_pool2d(x, k, s, p, ceil_mode=True).shape[-1]
    assert _onnx_pool_size(size, k, s, p, 0) == floor
    caffe = _caffe_pool_size(size, k, s, p)
    if p == 0 and ceil < caffe:  # Caffe clamps the last window only when there is padding
        assert caffe == ceil + 1 and ceil * s >= size
    else:
        assert caffe == ceil
    if (size + 2 * p - k) % s == 0:
        assert ceil == floor


def test_repeated_findings_fold_into_one_line_on_the_terminal():
    """A MobileNet with 41 ReLU6 layers: the terminal gets one line for them, compatibility.txt all 41."""
    issues = [Issue("error", "unsupported-op", f"Clip_{k}", "Clip (ReLU6) has no Caffe 1.0 layer; use ReLU")
              for k in range(41)] + [Issue("error", "conv-kernel", "conv9", "kernel 17x17 exceeds the NNIE limit")]
    full, brief = format_issues(issues), format_issues(issues, brief=True)
    assert full.count("Clip (ReLU6)") == 41 and "42 error(s)" in full
    assert brief.count("Clip (ReLU6)") == 1 and "41 layers (Clip_0, Clip_1, Clip_2, ...)" in brief
    assert "conv9" in brief and "42 error(s)" in brief
