"""int8 simulation (``quantize-check``) on a real trained reference model."""

from __future__ import annotations

import argparse
import json

from pfpld_support import run_cli, single_thread, wflw_lists  # noqa: F401 (autouse: one torch/OpenCV thread)

from pfpld_train.commands import quantize_check as cmd


def test_quantize_check_on_reference_model(shared_data, tmp_path):
    model = shared_data / "reference_models" / "pfld_ghostone" / "PFLD_GhostOne_112_1_opt_sim.onnx"
    out = tmp_path / "q.json"
    rc = run_cli(cmd, [str(model), str(wflw_lists(shared_data)), "--limit", "40", "--preset", "pfld_ghostone",
                        "--calib-sizes", "8", "--weight-quant", "per-tensor", "-o", str(out)])
    assert rc == 0
    rep = json.loads(out.read_text())
    run = rep["runs"][0]
    assert rep["eval_faces"] == 32 and run["calibration_faces"] == 8
    assert 2.0 < run["nme_fp32_pct"] < 10.0  # a trained model on real faces with the standard crop
    assert run["nme_int8_pct"] >= run["nme_fp32_pct"] - 1.0 and 0 < run["landmark_drift_pct"]["mean"] < 20
    assert rep["outputs"]["pose"] is None
    # Without preprocessing in the metadata and no preset, the command refuses.
    assert run_cli(cmd, [str(model), str(wflw_lists(shared_data)), "--limit", "20"]) == 1


def test_quantize_check_takes_evaluates_channel_order_spelling():
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    for flag, value in (("--channel-order", "bgr"), ("--color", "BGR"), ("--color", "rgb")):
        assert parser.parse_args(["m.onnx", "faces.parquet", flag, value]).channel_order == value.lower()
