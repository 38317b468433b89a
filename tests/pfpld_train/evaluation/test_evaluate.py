"""Evaluation on real faces: the reference model's published figures, our checkpoints, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pfpld_support import (
    single_thread,  # noqa: F401 (autouse: one torch/OpenCV thread)
    write_wflw_manifest,
)

from landmark_unify.manifest import landmarks_array, read_manifest, valid_array
from pfpld_train.cli import main
from pfpld_train.evaluation.evaluate import (
    EvaluationError,
    OnnxLandmarkModel,
    TorchLandmarkModel,
    evaluate_faces,
    evaluate_manifest,
    load_model,
)
from pfpld_train.models.checkpoint import save_checkpoint
from pfpld_train.models.pfpld import PFPLD

GHOSTONE = "reference_models/pfld_ghostone"
GHOSTONE_ARGS = ["--channel-order", "bgr", "--mean", "127.5", "--scale", str(1 / 127.5)]


@pytest.fixture(scope="module")
def wflw303(shared_data, tmp_path_factory):
    return write_wflw_manifest(shared_data, tmp_path_factory.mktemp("wflw") / "wflw.parquet")


def test_reference_model_reproduces_published_figures(shared_data, wflw303):
    """FACTS section 8: PFLD-GhostOne on the 303 WFLW faces with images: NME 5.56 %, failure 9.2 %."""
    df = read_manifest(wflw303)
    assert len(df) == 303
    model = load_model(shared_data / GHOSTONE, channel_order="bgr", mean=127.5, scale=1 / 127.5)
    res = evaluate_manifest(model, df, progress=False)
    s = res.summary
    assert s["faces_scored"] == 303
    assert abs(100 * s["overall"]["nme"] - 5.56) <= 0.05
    assert abs(100 * s["overall"]["failure_rate"] - 9.2) <= 0.05
    assert 0.4 < s["overall"]["auc"] < 0.55
    # The large-pose subset is the hardest.
    assert s["by_attribute"]["pose"]["nme"] > s["overall"]["nme"]
    assert set(s["by_attribute"]) == {"pose", "expression", "illumination", "makeup", "occlusion", "blur"}
    # Channel order matters (FACTS: RGB costs about one point).
    rgb = load_model(shared_data / GHOSTONE, channel_order="rgb", mean=127.5, scale=1 / 127.5)
    worse = evaluate_manifest(rgb, df.iloc[:80].reset_index(drop=True), progress=False).summary
    best = evaluate_manifest(model, df.iloc[:80].reset_index(drop=True), progress=False).summary
    assert worse["overall"]["nme"] > best["overall"]["nme"]


def test_sixty_eight_point_faces_scored_on_valid_points_only(shared_data, wflw303):
    df = read_manifest(wflw303).iloc[:12].reset_index(drop=True)
    model = load_model(shared_data / GHOSTONE, channel_order="bgr", mean=127.5, scale=1 / 127.5)
    gt = landmarks_array(df)
    valid = valid_array(df).copy()
    from landmark_unify.manifest import image_paths

    paths = image_paths(df)
    # Keep only the 68-point-like subset of points (brows' upper edges, nose, eye corners, lips).
    keep = np.zeros(98, bool)
    keep[[33, 34, 35, 36, 37, 42, 43, 44, 45, 46, *range(51, 60), 60, 64, 68, 72, *range(76, 96)]] = True
    v68 = valid & keep
    gt68 = np.where(v68[..., None], gt, np.nan)
    part = evaluate_faces(model, paths, gt68, v68, progress=False)
    assert np.isfinite(part.nme).all()
    # Scored on exactly the kept points of its own predictions.
    d = np.linalg.norm(gt[:, 60] - gt[:, 72], axis=-1)
    e68 = np.linalg.norm(part.pred - gt, axis=-1)
    np.testing.assert_allclose(part.nme, np.nanmean(np.where(v68, e68, np.nan), 1) / d, rtol=1e-5)


def test_rows_without_images_are_counted_not_dropped(shared_data, tmp_path):
    path = write_wflw_manifest(shared_data, tmp_path / "all.parquet", with_images=False, limit=60)
    df = read_manifest(path)
    model = load_model(shared_data / GHOSTONE, channel_order="bgr", mean=127.5, scale=1 / 127.5)
    s = evaluate_manifest(model, df, progress=False).summary
    assert s["faces_scored"] + s["skipped"]["image_not_found"] == 60
    assert s["skipped"]["image_not_found"] > 0


def test_our_checkpoint_and_pose_output(shared_data, wflw303, tmp_path):
    torch.manual_seed(0)
    ckpt = save_checkpoint({"model": PFPLD().state_dict(), "epoch": 0}, tmp_path / "c.pt")
    model = load_model(ckpt)
    assert isinstance(model, TorchLandmarkModel)
    df = read_manifest(wflw303).iloc[:6].reset_index(drop=True)
    df["pitch"] = np.float32(5.0)
    df["yaw"] = np.float32(-10.0)
    df["roll"] = np.float32(np.nan)
    df.loc[0, "roll"] = 2.0
    s = evaluate_manifest(model, df, progress=False).summary
    assert s["faces_scored"] == 6 and s["pose_mae"]["faces"] == 1


def test_onnx_option_errors(shared_data, tmp_path):
    with pytest.raises(EvaluationError, match="channel_order"):
        OnnxLandmarkModel(shared_data / GHOSTONE, channel_order="rbg")
    with pytest.raises(EvaluationError, match="out of range"):
        OnnxLandmarkModel(shared_data / GHOSTONE, output=3)
    with pytest.raises(EvaluationError, match="not found"):
        OnnxLandmarkModel(tmp_path / "none.onnx")
    for name in ("pfpld.onnx", "pfpld_int8_sim.onnx"):  # an NNIE package folder holds both
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(EvaluationError, match=r"found 2 \['pfpld.onnx', 'pfpld_int8_sim.onnx'\]; pass the file"):
        OnnxLandmarkModel(tmp_path)


def test_evaluate_command_prints_table_and_writes_json(shared_data, wflw303, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["evaluate", str(shared_data / GHOSTONE), str(wflw303), "--preset", "pfld_ghostone",
               "-o", str(out), "--quiet", "--save-predictions", str(tmp_path / "p.npz")])
    assert rc == 0
    captured = capsys.readouterr()
    assert "NME %" in captured.out and "occlusion" in captured.out and "warning" not in captured.err
    summary = json.loads(out.read_text())
    assert abs(100 * summary["overall"]["nme"] - 5.56) <= 0.05
    preds = np.load(tmp_path / "p.npz")
    assert preds["pred"].shape == (303, 98, 2)
    rc = main(["evaluate", str(tmp_path / "missing.pt"), str(wflw303), "--quiet"])
    assert rc == 1 and "not found" in capsys.readouterr().err


def test_our_onnx_export_scores_like_the_checkpoint(shared_data, wflw303, tmp_path):
    """Checkpoint and its ONNX export (preprocessing and pose units read from the metadata) agree."""
    export = pytest.importorskip("pfpld_train.export.onnx.export")
    torch.manual_seed(1)
    net = PFPLD().eval()
    ckpt = save_checkpoint({"model": net.state_dict()}, tmp_path / "m.pt")
    export.export_onnx(net, tmp_path / "m.onnx")
    df = read_manifest(wflw303).iloc[:8].reset_index(drop=True)
    df["pitch"], df["yaw"], df["roll"] = np.float32(3.0), np.float32(-4.0), np.float32(5.0)
    a = evaluate_manifest(load_model(ckpt), df, progress=False)
    onnx_model = load_model(tmp_path / "m.onnx")
    assert onnx_model.channel_order == "rgb" and onnx_model.pose_units == "rad"
    b = evaluate_manifest(onnx_model, df, progress=False)
    np.testing.assert_allclose(a.nme, b.nme, rtol=1e-4)
    np.testing.assert_allclose(a.pose_deg, b.pose_deg, atol=1e-3)
    assert b.summary["pose_mae"]["faces"] == 8


def test_reference_figures_on_a_manifest_from_build_manifest(shared_data, tmp_path):
    """The same figures through the project's own WFLW reader (1966 faces, 303 with images)."""
    from landmark_unify.cli import main as lu_main

    path = tmp_path / "wflw.parquet"
    assert lu_main(["build-manifest", "--source", f"wflw={shared_data / 'WFLW'}", "-o", str(path),
                    "-q"]) == 0
    out = tmp_path / "r.json"
    assert main(["evaluate", str(shared_data / GHOSTONE), str(path), *GHOSTONE_ARGS, "-o", str(out),
                 "--quiet"]) == 0
    s = json.loads(out.read_text())
    assert s["faces_scored"] == 303 and s["skipped"]["image_not_found"] == 1966 - 303
    assert abs(100 * s["overall"]["nme"] - 5.56) <= 0.05
    assert abs(100 * s["overall"]["failure_rate"] - 9.2) <= 0.05


def test_onnx_model_without_input_convention_warns(shared_data, tmp_path, capsys):
    """A public ONNX model states no preprocessing: evaluate says what it assumed and how to pass it."""
    small = write_wflw_manifest(shared_data, tmp_path / "five.parquet", limit=5)
    assert main(["evaluate", str(shared_data / GHOSTONE), str(small), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "--preset" in err and "pfld_ghostone" in err
    assert main(["evaluate", str(shared_data / GHOSTONE), str(small), "--quiet", *GHOSTONE_ARGS]) == 0
    assert "warning" not in capsys.readouterr().err


def test_run_folder_without_best_checkpoint_says_what_to_pass(tmp_path):
    """A run stopped by --max-steps inside its first epoch has last.pt but no best.pt yet."""
    save_checkpoint({"model": PFPLD().state_dict()}, tmp_path / "run" / "last.pt")
    with pytest.raises(EvaluationError, match="without best.pt.*last.pt is there: pass it"):
        load_model(tmp_path / "run")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda_is_a_clear_error(tmp_path, capsys):
    ckpt = save_checkpoint({"model": PFPLD().state_dict()}, tmp_path / "m.pt")
    with pytest.raises(EvaluationError, match="CUDA is not available"):
        load_model(ckpt, device="cuda")
    assert main(["predict", str(ckpt), str(tmp_path / "none.jpg"), "-o", str(tmp_path / "o"), "--device", "cuda"]) == 1
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"threshold": 0.0}, {"threshold": float("nan")}])
def test_evaluate_faces_refuses_bad_batch_or_threshold(kwargs):
    with pytest.raises(EvaluationError, match="batch_size must be >= 1"):
        evaluate_faces(lambda c: (np.zeros((len(c), 98, 2)), None), [None], np.zeros((1, 98, 2), np.float32),
                       np.ones((1, 98), bool), progress=False, **kwargs)
