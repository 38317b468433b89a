"""Pose evaluation: angle errors wrap, and the AFLW2000-3D convention (faces with any |angle| > 99 degrees
counted and left out of the pose MAE) is the default, with an option to turn it off."""

from __future__ import annotations

import numpy as np
import pytest
from pfpld_support import single_thread  # noqa: F401 (autouse: one torch/OpenCV thread)

import landmark_unify as lu
from pfpld_train.evaluation.evaluate import evaluate_faces, format_table
from pfpld_train.evaluation.metrics import POSE_MAX_ANGLE, angle_error, pose_in_range, pose_mae


def test_angle_errors_wrap():
    assert angle_error(179.0, -179.0) == pytest.approx(2.0)
    assert angle_error(-170.0, 170.0) == pytest.approx(20.0)
    assert angle_error(10.0, 370.0) == pytest.approx(0.0)
    np.testing.assert_allclose(pose_mae([[179, 0, -90]], [[-179, 0, 270]]), [2.0, 0.0, 0.0])
    assert np.isnan(pose_mae(np.zeros((2, 3)), np.full((2, 3), np.nan))).all()


def test_pose_in_range_is_the_aflw2000_convention():
    g = np.array([[0, 99, 0], [0, -99.5, 0], [120, 0, 0], [np.nan, 0, 0]])
    assert POSE_MAX_ANGLE == 99.0
    assert pose_in_range(g).tolist() == [True, False, False, False]
    assert pose_in_range(g, None).tolist() == [True, True, True, True]


@pytest.fixture(scope="module")
def aflw16(shared_data):
    from scipy.io import loadmat

    files = sorted((shared_data / "AFLW2000").glob("image*.mat"))
    mats = [loadmat(f) for f in files]
    p98, v98 = lu.to_canonical(np.stack([m["pt3d_68"][:2].T for m in mats]) - 1.0, "ibug68_3d")
    pose = np.degrees(np.stack([m["Pose_Para"][0, :3] for m in mats]))
    return [f.with_suffix(".jpg") for f in files], p98, v98, pose


def test_evaluate_wraps_and_leaves_out_faces_beyond_99_degrees(aflw16):
    paths, p98, v98, pose = aflw16
    gt = pose.copy()
    gt[0, 1] = -179.0  # predicted 179: 2 degrees off, not 358
    gt[1, 0] = 120.0  # beyond 99: left out by default
    pred = np.array([0.0, 179.0, 0.0])

    def model(crops):
        return np.full((len(crops), 98, 2), 0.5, np.float32), np.tile(pred, (len(crops), 1)).astype(np.float32)

    res = evaluate_faces(model, paths, p98, v98, pose_deg=gt, progress=False)
    pm = res.summary["pose_mae"]
    keep = np.arange(16) > 1  # both faces have an angle beyond 99 degrees
    np.testing.assert_allclose([pm["pitch"], pm["yaw"], pm["roll"]], angle_error(pred, gt[keep]).mean(0), atol=1e-4)
    assert pm["faces"] == 14 and pm["left_out_beyond_max_angle"] == 2 and pm["max_angle"] == 99.0
    assert "left out" in format_table(res.summary)
    every = evaluate_faces(model, paths, p98, v98, pose_deg=gt, pose_max_angle=None, progress=False).summary["pose_mae"]
    assert every["faces"] == 16 and every["left_out_beyond_max_angle"] == 0
    err = angle_error(pred, gt)
    assert err[0, 1] == pytest.approx(2.0)  # 179 vs -179
    np.testing.assert_allclose([every["pitch"], every["yaw"], every["roll"]], err.mean(0), atol=1e-4)
    unwrapped = np.abs(pred - gt).mean(0)[1]
    assert every["yaw"] < unwrapped - 20  # 356 degrees less on one face of 16
    with pytest.raises(Exception, match="pose_max_angle"):
        evaluate_faces(model, paths, p98, v98, pose_deg=gt, pose_max_angle=-1, progress=False)


def test_pose_max_angle_option():
    import argparse

    from pfpld_train.commands import evaluate as cmd

    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    assert p.parse_args(["m.pt", "x.parquet"]).pose_max_angle == 99.0
    assert p.parse_args(["m.pt", "x.parquet", "--pose-max-angle", "none"]).pose_max_angle is None
    assert p.parse_args(["m.pt", "x.parquet", "--pose-max-angle", "90"]).pose_max_angle == 90.0
    with pytest.raises(SystemExit):
        p.parse_args(["m.pt", "x.parquet", "--pose-max-angle", "-5"])


def test_pose_errors_wrap_and_leave_out_what_does_not_count():
    from pfpld_train.evaluation.metrics import pose_error_mean, pose_error_summary, pose_errors

    gt = np.array([[0.0, -90.0, 0.0], [120.0, 0.0, 0.0], [np.nan, 0.0, 0.0], [10.0, 20.0, 30.0]])
    pred = np.array([[0.0, 185.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [np.nan, 0.0, 0.0]])
    err = pose_errors(pred, gt)
    np.testing.assert_allclose(err[0], [0.0, 85.0, 0.0])  # 275 degrees apart the short way round
    assert np.isnan(err[1:]).all()  # beyond 99 degrees, ground truth unknown, prediction unknown
    assert pose_errors(pred, gt, None)[1].tolist() == [120.0, 0.0, 0.0]
    assert pose_error_summary(err) == {"faces": 1, "pitch": 0.0, "yaw": pytest.approx(85.0), "roll": 0.0,
                                       "mean": pytest.approx(85 / 3)}
    assert pose_error_mean(err) == pytest.approx(85 / 3)
    assert np.isnan(pose_error_mean(err[1:])) and np.isnan(pose_error_mean([]))


def test_training_validation_counts_pose_error_as_evaluate_does(aflw16):
    """The training log's val_pose_mae and `pfpld_train evaluate` give the same figure on the same
    predictions: angles wrap and faces beyond 99 degrees are left out in both."""
    import math

    import torch

    from pfpld_train.train.loop import evaluate_dataset

    paths, p98, v98, pose = aflw16
    gt = pose.copy()
    gt[0, 1] = -179.0
    gt[1, 0] = 120.0
    gt[2] = np.nan
    pred = np.array([0.0, 179.0, 0.0], np.float32)

    def model(crops):
        return np.full((len(crops), 98, 2), 0.5, np.float32), np.tile(pred, (len(crops), 1))

    expected = evaluate_faces(model, paths, p98, v98, pose_deg=gt, progress=False).summary["pose_mae"]["mean"]

    class Net(torch.nn.Module):
        def forward(self, x):
            n = len(x)
            return torch.tensor(np.radians(pred)).float().repeat(n, 1), torch.full((n, 196), 0.5)

    class Faces:
        def __len__(self):
            return 16

        def __getitems__(self, keys):
            idx = [k[1] if isinstance(k, tuple) else k for k in keys]
            return {"image": torch.zeros((len(idx), 112, 112, 3), dtype=torch.uint8),
                    "landmarks": torch.tensor(np.full((len(idx), 98, 2), 0.5, np.float32)),
                    "valid": torch.ones((len(idx), 98), dtype=torch.bool),
                    "pose": torch.tensor(gt[idx].astype(np.float32))}

    got = evaluate_dataset(Net(), Faces(), torch.device("cpu"), batch_size=5)["pose_mae"]
    assert got == pytest.approx(expected, abs=1e-4)
    counted = np.isfinite(gt).all(1) & (np.abs(gt) <= 99).all(1)
    assert counted.sum() == 13 and not math.isclose(got, np.abs(pred - gt[np.isfinite(gt).all(1)]).mean(), abs_tol=1e-2)
