"""Export of the PFPLD network: ONNX and Caffe parity on real faces, the NNIE package, bad inputs."""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pfpld_support import single_thread  # noqa: F401 (autouse: one torch/OpenCV thread)

from pfpld_train.export.caffe_convert import NNIE_RESERVED_SUFFIXES, onnx_to_caffe, sanitize_name
from pfpld_train.export.caffe_proto import caffe_messages, net_to_prototxt
from pfpld_train.export.errors import ExportError
from pfpld_train.export.nnie_check import check_nnie
from pfpld_train.export.nnie_package import CFG_KEYS
from pfpld_train.export.onnx_export import load_checkpoint, onnx_outputs
from pfpld_train.model import build_model

TOL = 1e-4


def _wflw_lists(shared_data):
    return shared_data / "WFLW" / "WFLW_annotations" / "list_98pt_test"


def _trained_like_model(seed: int = 0):
    """Random weights with non-trivial batch-norm statistics, so that folding is exercised."""
    torch.manual_seed(seed)
    model = build_model()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _run_cli(module, argv: list[str]) -> int:
    """The command ``module`` run through the ``pfpld_train`` dispatcher (its error handling included)."""
    from pfpld_train.cli import main

    return main([module.__name__.rsplit(".", 1)[1].replace("_", "-"), *argv])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"model": _trained_like_model().state_dict(), "epoch": 3}, path)
    return path


@pytest.fixture(scope="module")
def nnie_dir(shared_data, checkpoint, tmp_path_factory):
    """One full ``export --format nnie`` run (ONNX + Caffe + package) shared by the tests below."""
    from pfpld_train.commands import export as cmd

    out = tmp_path_factory.mktemp("nnie")
    lists = _wflw_lists(shared_data)
    photos = [str(shared_data / "upstream_pfpld" / "example.jpg"),
              f"{shared_data / 'upstream_pfpld' / 'sample.jpg'}:500,120,630,260"]  # centre crop; a face box
    rc = _run_cli(cmd, [str(checkpoint), "--format", "nnie", "-o", str(out), "--faces", str(lists),
                        "--parity-count", "6", "--photos", *photos,
                        "--reference-prototxt", str(shared_data / "upstream_pfpld" / "pfpld.prototxt"),
                        "--calib", str(lists), "--calib-count", "12", "--holdout", str(lists),
                        "--holdout-count", "30"])
    assert rc == 0
    return out


def test_caffe_messages_use_caffe_field_numbers():
    msgs = caffe_messages()
    layer = msgs.LayerParameter(name="c", type="Convolution")
    layer.convolution_param.num_output = 8
    data = layer.SerializeToString()
    # field 106, wire type 2 -> varint 850 = 0xd2 0x06; inside it num_output (field 1, varint) = 0x08 0x08.
    assert b"\xd2\x06\x02\x08\x08" in data
    net = msgs.NetParameter(name="n")
    blob = net.layer.add(name="ip", type="InnerProduct").blobs.add()
    blob.shape.dim.extend([2, 3])
    blob.data.extend([1.0] * 6)
    raw = net.SerializeToString()
    assert raw.startswith(b"\x0a\x01n") and b"\xa2\x06" in raw  # name = field 1; layer = field 100
    assert msgs.NetParameter.FromString(raw) == net
    assert "blobs" not in net_to_prototxt(net)


def test_onnx_and_caffe_match_pytorch_on_real_faces(nnie_dir, shared_data):
    import onnx

    report = json.loads((nnie_dir / "report.json").read_text())
    for key in ("onnx_vs_torch", "onnx_batch1_vs_torch", "caffe_vs_torch"):
        assert max(report["parity"][key].values()) <= TOL, (key, report["parity"][key])
    assert "6 face crops" in report["parity_inputs"] and "2 photo" in report["parity_inputs"]
    assert (nnie_dir / "overlay_caffe.png").is_file()
    proto = onnx.load(str(nnie_dir / "pfpld.onnx"))
    onnx.checker.check_model(proto)
    assert [o.name for o in proto.graph.output] == ["pose", "landmarks"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)
    x = np.random.default_rng(0).random((3, 3, 112, 112), dtype=np.float32)
    assert onnx_outputs(nnie_dir / "pfpld.onnx", x)["landmarks"].shape == (3, 196)


def test_caffe_model_structure(nnie_dir):
    from pfpld_train.export.caffe_export import read_prototxt

    report = json.loads((nnie_dir / "report.json").read_text())
    ref = report["caffe"]["reference_comparison"]
    assert ref["same_graph"] and ref["layers"] == {"ours": 103, "reference": 103}
    net = read_prototxt(nnie_dir / "pfpld.prototxt")
    allowed = {"Input", "Convolution", "ReLU", "Eltwise", "Pooling", "InnerProduct", "Concat", "Flatten"}
    assert {layer.type for layer in net.layer} <= allowed
    for layer in net.layer:
        assert re.fullmatch(r"[A-Za-z0-9_]+", layer.name) and not layer.name.endswith(NNIE_RESERVED_SUFFIXES)
    assert [layer.name for layer in net.layer][-1] == "pose"
    depthwise = [la for la in net.layer if la.type == "Convolution" and la.convolution_param.group > 1]
    assert len(depthwise) == 13 and all(la.convolution_param.group == la.convolution_param.num_output
                                        for la in depthwise)


def test_nnie_package_contents(nnie_dir):
    import cv2

    cfg = (nnie_dir / "pfpld.cfg").read_text()
    values = dict(re.findall(r"^\[(\w+)\] (.*)$", cfg, re.M))
    assert set(CFG_KEYS) <= set(values)
    assert values["RGB_order"] == "RGB" and abs(float(values["data_scale"]) - 1 / 255) < 1e-9
    assert values["norm_type"] == "3" and values["image_type"] == "1" and values["batch_num"] == "12"
    listing = [line for line in (nnie_dir / "calib" / "image_list.txt").read_text().splitlines() if line]
    assert len(listing) == 12
    img = cv2.imread(str(nnie_dir / listing[0]))
    assert img.shape == (112, 112, 3)
    for key in ("prototxt_file", "caffemodel_file", "image_list"):
        assert (nnie_dir / values[key]).is_file()
    int8 = json.loads((nnie_dir / "int8_report.json").read_text())
    assert int8["faces"] > 0 and np.isfinite(int8["landmark_drift_pct"]["mean"])
    assert len(int8["pose_drift_deg"]["mean_per_angle"]) == 3
    readme = (nnie_dir / "README.md").read_text()
    assert "4096" in readme and "R, G, B" in readme and "landmarks" in readme
    assert "0 error(s)" in (nnie_dir / "compatibility.txt").read_text()


class _Unsupported(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 17, padding=8)  # kernel above NNIE's limit
        self.act = torch.nn.GELU()
        self.prelu = torch.nn.PReLU(8)
        self.up = torch.nn.Upsample(scale_factor=2)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(8 * 28 * 28, 196)

    def forward(self, x):
        y = self.prelu(self.act(self.conv(x)))
        y = self.pool(self.pool(self.up(y)))
        return self.fc(torch.flatten(self.pool(y), 1))


def _to_onnx(model, path, size=112):
    torch.onnx.export(model.eval(), (torch.zeros(1, 3, size, size),), str(path), input_names=["input"],
                      output_names=["landmarks"], opset_version=17, dynamo=False)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_unsupported_layers_are_reported_not_exported(tmp_path, shared_data):
    import onnx

    from pfpld_train.commands import export as cmd

    path = tmp_path / "bad.onnx"
    _to_onnx(_Unsupported(), path)
    issues = check_nnie(onnx_to_caffe(onnx.load(str(path))))
    rules = {i.rule for i in issues if i.severity == "error"}
    assert {"conv-kernel", "unsupported-op"} <= rules
    text = "\n".join(map(str, issues))
    assert "GELU" in text or "Erf" in text
    assert "PReLU" in text and "Upsample" in text
    out = tmp_path / "pkg"
    rc = _run_cli(cmd, [str(path), "--format", "nnie", "-o", str(out), "--calib", str(_wflw_lists(shared_data)),
                        "--calib-count", "2"])
    assert rc == 1
    report = (out / "compatibility.txt").read_text()
    assert "conv-kernel" in report and "17x17" in report and "unsupported-op" in report
    assert not (out / "pfpld.caffemodel").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_pooling_rounding_mismatch_is_an_error(tmp_path):
    import onnx

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2, 1), torch.nn.MaxPool2d(2))  # 7x7 -> floor 3, ceil 4
    path = tmp_path / "pool.onnx"
    _to_onnx(model, path, size=14)
    conv = onnx_to_caffe(onnx.load(str(path)))
    assert conv.errors[0].rule == "pool-rounding" and "3x3 (floor" in conv.errors[0].message
    assert {i.rule for i in conv.errors} == {"pool-rounding", "missing-output"}
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2, 1), torch.nn.MaxPool2d(2, ceil_mode=True))
    _to_onnx(model, path, size=14)
    assert not onnx_to_caffe(onnx.load(str(path))).errors


def test_bad_checkpoints_fail_clearly(tmp_path):
    from pfpld_train.commands import export as cmd

    sd = build_model().state_dict()
    cases = {
        "missing.pt": (None, "not found"),
        "list.pt": ([1, 2], "expected a dict"),
        "nokey.pt": ({"optimizer": {"lr": 1}}, "no 'model' or 'state_dict'"),
        "keys.pt": ({"model": {k.replace("conv1", "convX"): v for k, v in sd.items()}}, "missing key"),
        "shape.pt": ({"model": {**sd, "fc.weight": torch.zeros(10, 176)}}, "shape mismatch"),
        "nan.pt": ({"model": {**sd, "fc.bias": torch.full((196,), float("nan"))}}, "non-finite"),
    }
    for name, (obj, message) in cases.items():
        if obj is not None:
            torch.save(obj, tmp_path / name)
        with pytest.raises(ExportError, match=message):
            load_checkpoint(tmp_path / name)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ExportError, match="weights-only"):
        load_checkpoint(tmp_path / "junk.pt")
    assert _run_cli(cmd, [str(tmp_path / "shape.pt"), "--format", "onnx", "-o", str(tmp_path / "o")]) == 1
    model, info = load_checkpoint(_save(tmp_path / "bare.pt", {f"module.{k}": v for k, v in sd.items()}))
    assert info["entry"] is None and info["tensors"] == len(sd)


def _save(path, obj):
    torch.save(obj, path)
    return path


def test_quantize_check_on_reference_model(shared_data, tmp_path):
    from pfpld_train.commands import quantize_check as cmd

    model = shared_data / "reference_models" / "pfld_ghostone" / "PFLD_GhostOne_112_1_opt_sim.onnx"
    out = tmp_path / "q.json"
    rc = _run_cli(cmd, [str(model), str(_wflw_lists(shared_data)), "--limit", "40", "--preset", "pfld_ghostone",
                        "--calib-sizes", "8", "--weights", "per-tensor", "-o", str(out)])
    assert rc == 0
    rep = json.loads(out.read_text())
    run = rep["runs"][0]
    assert rep["eval_faces"] == 32 and run["calibration_faces"] == 8
    assert 2.0 < run["nme_fp32_pct"] < 10.0  # a trained model on real faces with the standard crop
    assert run["nme_int8_pct"] >= run["nme_fp32_pct"] - 1.0 and 0 < run["landmark_drift_pct"]["mean"] < 20
    assert rep["outputs"]["pose"] is None
    # Without preprocessing in the metadata and no preset, the command refuses.
    assert _run_cli(cmd, [str(model), str(_wflw_lists(shared_data)), "--limit", "20"]) == 1


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=40))
def test_sanitized_names_are_mapper_safe(name):
    out = sanitize_name(name)
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", out)
    assert not out.lower().endswith(NNIE_RESERVED_SUFFIXES)


def test_trained_reference_model_converts_to_caffe(shared_data, tmp_path):
    """A real trained ONNX network (PFLD-GhostOne) through the Caffe writer, checked by OpenCV on real faces."""
    from pfpld_train.commands import export as cmd

    model = shared_data / "reference_models" / "pfld_ghostone" / "PFLD_GhostOne_112_1_opt_sim.onnx"
    rc = _run_cli(cmd, [str(model), "--format", "caffe", "-o", str(tmp_path), "--faces", str(_wflw_lists(shared_data)),
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
    from pfpld_train.export.caffe_convert import _caffe_pool_size, _onnx_pool_size

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
    from pfpld_train.export.caffe_convert import Issue
    from pfpld_train.export.nnie_check import format_issues

    issues = [Issue("error", "unsupported-op", f"Clip_{k}", "Clip (ReLU6) has no Caffe 1.0 layer; use ReLU")
              for k in range(41)] + [Issue("error", "conv-kernel", "conv9", "kernel 17x17 exceeds the NNIE limit")]
    full, brief = format_issues(issues), format_issues(issues, brief=True)
    assert full.count("Clip (ReLU6)") == 41 and "42 error(s)" in full
    assert brief.count("Clip (ReLU6)") == 1 and "41 layers (Clip_0, Clip_1, Clip_2, ...)" in brief
    assert "conv9" in brief and "42 error(s)" in brief


def test_quantize_check_takes_evaluates_channel_order_spelling():
    from pfpld_train.commands import quantize_check as cmd

    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    for flag, value in (("--channel-order", "bgr"), ("--color", "BGR"), ("--color", "rgb")):
        assert parser.parse_args(["m.onnx", "faces.parquet", flag, value]).color == value.upper()


def test_nnie_calibration_count_is_checked_before_any_work(checkpoint, shared_data, tmp_path, capsys):
    from pfpld_train.commands import export as cmd

    rc = _run_cli(cmd, [str(checkpoint), "--format", "nnie", "-o", str(tmp_path / "n"), "--calib",
                        str(_wflw_lists(shared_data)), "--calib-count", "300"])
    assert rc == 1 and "1 to 256" in capsys.readouterr().err
    assert not (tmp_path / "n" / "pfpld.onnx").exists()
