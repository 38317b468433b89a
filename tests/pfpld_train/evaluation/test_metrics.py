"""Metrics: NME with the ground-truth 60-72 normalisation, failure rate, AUC, pose MAE."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pfpld_train.evaluation.metrics import MetricsError, auc, failure_rate, nme, point_errors, pose_mae, summarize_nme


def _face(rng: np.random.Generator, n: int = 4) -> np.ndarray:
    gt = rng.uniform(0, 200, (n, 98, 2))
    gt[:, 60] = [50, 100]
    gt[:, 72] = [150, 100]  # inter-ocular distance 100
    return gt


def test_nme_is_normalised_by_ground_truth_outer_eye_corners():
    rng = np.random.default_rng(0)
    gt = _face(rng)
    pred = gt + np.array([3.0, 4.0])  # every point off by 5 px
    np.testing.assert_allclose(nme(pred, gt), 0.05)
    # Moving the predicted eye corners does not change the normaliser.
    pred2 = pred.copy()
    pred2[:, 72] = [1000, 1000]
    assert (nme(pred2, gt) > 0.05).all()


def test_only_valid_points_are_scored():
    rng = np.random.default_rng(1)
    gt = _face(rng, 2)
    valid = np.zeros((2, 98), bool)
    valid[:, [60, 72, 30]] = True
    pred = gt.copy()
    pred[:, 30] += [10, 0]
    pred[:, 5] += [1e6, 0]  # invalid point, ignored
    gt_nan = np.where(valid[..., None], gt, np.nan)
    np.testing.assert_allclose(nme(pred, gt_nan, valid), 10 / 3 / 100)
    err = point_errors(pred, gt_nan, valid)
    assert np.isnan(err[:, 5]).all() and np.allclose(err[:, 30], 10)


def test_faces_without_normalisation_pair_are_nan_not_dropped():
    rng = np.random.default_rng(2)
    gt = _face(rng, 3)
    valid = np.ones((3, 98), bool)
    valid[1, 72] = False
    out = nme(gt, gt, valid)
    assert out.shape == (3,) and np.isnan(out[1]) and (out[[0, 2]] == 0).all()
    s = summarize_nme(out)
    assert s["faces"] == 2 and s["unscored"] == 1


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (3, 98, 2), elements=st.floats(-5, 5)), st.floats(0.1, 10), st.floats(-3.1, 3.1))
def test_nme_is_invariant_to_similarity_transforms(noise, s, theta):
    rng = np.random.default_rng(3)
    gt = _face(rng, 3)
    pred = gt + noise
    r = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    t = np.array([17.0, -4.0])
    np.testing.assert_allclose(nme(s * pred @ r.T + t, s * gt @ r.T + t), nme(pred, gt), rtol=1e-6, atol=1e-12)


def test_failure_rate_and_auc():
    v = np.array([0.0, 0.05, 0.1, 0.2, np.nan])
    assert failure_rate(v) == pytest.approx(0.25)  # 0.2 only; 0.1 is not a failure
    # exact CED integral: mean(max(0, 0.1 - nme)) / 0.1 = (1 + 0.5 + 0 + 0) / 4
    assert auc(v) == pytest.approx(0.375)
    # agrees with the usual discretised curve
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 0.15, 500)
    grid = np.arange(0, 0.1 + 1e-4, 1e-4)
    ced = (x[None, :] <= grid[:, None]).mean(1)
    assert auc(x) == pytest.approx(np.trapezoid(ced, grid) / 0.1, abs=2e-3)
    assert np.isnan(auc(np.array([np.nan]))) and np.isnan(failure_rate(np.array([])))


def test_pose_mae_only_where_known():
    gt = np.array([[10.0, 20.0, 30.0], [np.nan, np.nan, np.nan], [0.0, 0.0, 0.0]])
    pred = np.array([[11.0, 18.0, 30.0], [99.0, 99.0, 99.0], [1.0, 0.0, -3.0]])
    np.testing.assert_allclose(pose_mae(pred, gt), [1.0, 1.0, 1.5])
    assert np.isnan(pose_mae(pred[1:2], gt[1:2])).all()


def test_bad_shapes_raise():
    with pytest.raises(MetricsError, match=r"\(N, K, 2\)"):
        nme(np.zeros((2, 98)), np.zeros((2, 98)))
    with pytest.raises(MetricsError, match="valid must be"):
        nme(np.zeros((2, 98, 2)), np.zeros((2, 98, 2)), np.ones((2, 97), bool))
    with pytest.raises(MetricsError, match=r"\(N, 3\)"):
        pose_mae(np.zeros((2, 2)), np.zeros((2, 2)))


def test_nme_normalised_by_other_points():
    """Drift of one prediction against another, normalised by the ground truth's eye corners."""
    rng = np.random.default_rng(7)
    gt = rng.uniform(0, 100, (5, 98, 2))
    a, b = gt + rng.normal(0, 1, gt.shape), gt + rng.normal(0, 1, gt.shape)
    d = np.linalg.norm(gt[:, 60] - gt[:, 72], axis=-1)
    expected = np.linalg.norm(a - b, axis=-1).mean(1) / d
    np.testing.assert_allclose(nme(a, b, norm_points=gt), expected)
    gt[1, 60] = np.nan  # unknown normalisation: not scored
    assert np.isnan(nme(a, b, norm_points=gt)[1]) and np.isfinite(nme(a, b, norm_points=gt)[[0, 2]]).all()
    with pytest.raises(MetricsError):
        nme(a, b, norm_points=gt[:, :10])
