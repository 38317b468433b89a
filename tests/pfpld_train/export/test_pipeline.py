"""One full ``export --format nnie`` run (ONNX + Caffe + package): parity on real faces, the Caffe
structure, the NNIE package."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from pfpld_support import run_cli, single_thread, wflw_lists  # noqa: F401 (autouse: one torch/OpenCV thread)

from pfpld_train.commands import export as cmd
from pfpld_train.export.caffe.convert import NNIE_RESERVED_SUFFIXES
from pfpld_train.export.caffe.export import read_prototxt
from pfpld_train.export.nnie.package import CFG_KEYS
from pfpld_train.export.parity import onnx_outputs

TOL = 1e-4


@pytest.fixture(scope="module")
def nnie_dir(shared_data, checkpoint, tmp_path_factory):
    """One full ``export --format nnie`` run (ONNX + Caffe + package) shared by the tests below."""
    out = tmp_path_factory.mktemp("nnie")
    lists = wflw_lists(shared_data)
    photos = [str(shared_data / "upstream_pfpld" / "example.jpg"),
              f"{shared_data / 'upstream_pfpld' / 'sample.jpg'}:500,120,630,260"]  # centre crop; a face box
    rc = run_cli(cmd, [str(checkpoint), "--format", "nnie", "-o", str(out), "--faces", str(lists),
                       "--parity-count", "6", "--photos", *photos,
                       "--reference-prototxt", str(shared_data / "upstream_pfpld" / "pfpld.prototxt"),
                       "--calib", str(lists), "--calib-count", "12", "--holdout", str(lists),
                       "--holdout-count", "30"])
    assert rc == 0
    return out


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
