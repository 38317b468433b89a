"""Every manifest input of the trainer takes a partitioned dataset directory as well as a ``.parquet`` file:
fit, evaluate, cache, predict's inputs, export --faces, quantize-check. The dataset is the one
``landmark_unify build-manifest -o DIR`` writes (local engine, directory output) from the bundled demo data."""

from __future__ import annotations

import json

import pytest
from pfpld_support import single_thread  # noqa: F401 (autouse: one torch/OpenCV thread)

from landmark_unify import manifest as mf
from landmark_unify.cli import main as lu_main
from pfpld_train.cli import main
from pfpld_train.evaluation.evaluate import evaluate_manifest, load_model


@pytest.fixture(scope="module")
def dataset(repo_root, tmp_path_factory):
    demo = repo_root / "landmark_unify" / "demo_data"
    out = tmp_path_factory.mktemp("ds") / "demo"  # no .parquet suffix: a partitioned dataset directory
    assert lu_main(["build-manifest", "-o", str(out), "--source", f"ibug={demo / '300W'}",
                    "--source", f"coco={demo / 'mmpose' / 'wflw'}", "-q"]) == 0
    assert out.is_dir() and (out / mf.MANIFEST_FILE).is_file()
    return out


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(["fit", str(dataset), "-o", str(out), "--val-fraction", "0.3", "--epochs", "1",
                 "--batch-size", "4", "--workers", "0", "-q"]) == 0
    return out


def test_fit_and_evaluate_on_a_dataset_directory(dataset, run, tmp_path):
    df = mf.read(dataset)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["train_faces"] + cfg["data"]["val_faces"] == len(df)
    assert (run / "best.pt").is_file()
    out = tmp_path / "e.json"
    assert main(["evaluate", str(run), str(dataset), "-q", "-o", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["faces_total"] == len(df) and s["faces_scored"] == len(df)
    assert len(s["by_group"]) == 2  # ibug and coco
    # The Python API takes the directory too, with the same figures as the command.
    result = evaluate_manifest(load_model(run), dataset, progress=False)
    assert result.summary["overall"]["nme"] == pytest.approx(s["overall"]["nme"])


def test_cache_and_predict_take_a_dataset_directory(dataset, run, tmp_path, capsys):
    assert main(["cache", str(dataset), "-o", str(tmp_path / "cache"), "--workers", "1", "-q"]) == 0
    info = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert info["count"] == len(mf.read(dataset)) and info["cached"] == info["count"]
    # fit on the dataset with its cache: the cache matches the dataset's sample ids
    assert main(["fit", str(dataset), "-o", str(tmp_path / "r2"), "--cache", str(tmp_path / "cache"),
                 "--epochs", "1", "--batch-size", "4", "--workers", "0", "--max-steps", "1", "-q"]) == 0
    # predict: a dataset input stands for its images
    assert main(["predict", str(run), str(dataset), "-o", str(tmp_path / "pred"), "--no-overlay"]) == 0
    res = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    images = {str(p) for p in mf.image_paths(mf.read(dataset)) if p is not None}
    assert {r["image"] for r in res} == images
    capsys.readouterr()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_export_faces_and_quantize_check_take_a_dataset_directory(dataset, run, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main(["export", str(run / "best.pt"), "--format", "onnx", "-o", str(out), "--faces", str(dataset),
                 "--parity-count", "4"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "4 face crops" in report["parity_inputs"]
    rep = tmp_path / "q.json"
    assert main(["quantize-check", str(out / "pfpld.onnx"), str(dataset), "--calib-sizes", "2",
                 "--weights", "per-tensor", "-o", str(rep)]) == 0
    q = json.loads(rep.read_text())
    assert q["runs"][0]["calibration_faces"] == 2 and q["outputs"]["landmarks"] == "landmarks"
    capsys.readouterr()
