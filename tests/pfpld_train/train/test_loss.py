"""Masked wing loss: values, masking properties, eye weight, pose and sample weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pfpld_support import single_thread  # noqa: F401 (autouse: one torch/OpenCV thread)

from pfpld_train.train.loss import LossConfig, landmark_loss, pfpld_loss, point_weights, pose_loss, wing

CFG = LossConfig()


def test_wing_values_and_continuity():
    w, e = 10.0, 2.0
    x = torch.tensor([0.0, 2.0, -2.0, 10.0 - 1e-6, 10.0, 25.0])
    y = wing(x, w, e)
    c = w - w * math.log(1 + w / e)
    expected = [0.0, 10 * math.log(2), 10 * math.log(2), 10 * math.log(6), 10 - c, 25 - c]
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5)
    assert abs(10 - c - 10 * math.log(6)) < 1e-9  # continuous at w


def _batch(seed: int, b: int = 4):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(b, 98, 2, generator=g)
    pred = (target + 0.03 * torch.randn(b, 98, 2, generator=g)).reshape(b, 196).requires_grad_(True)
    valid = torch.rand(b, 98, generator=g) > 0.3
    return pred, target, valid


def test_landmark_loss_is_the_mean_over_valid_points_in_pixels():
    target = torch.zeros(1, 98, 2)
    pred = torch.zeros(1, 196)
    pred[0, 0] = 1 / 112  # point 0 off by 1 px in x
    valid = torch.zeros(1, 98, dtype=torch.bool)
    valid[0, :4] = True
    got = landmark_loss(pred, target, valid, torch.ones(98), CFG)
    np.testing.assert_allclose(got.numpy(), [10 * math.log(1.5) / 4], rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([float("nan"), float("inf"), 1e6, -3.0]))
def test_invalid_points_affect_neither_loss_nor_gradient(seed, junk):
    pred, target, valid = _batch(seed)
    pose_t = torch.full((4, 3), float("nan"))
    pose_p = torch.zeros(4, 3, requires_grad=True)
    sw = torch.ones(4)
    loss_a, _ = pfpld_loss(pred, pose_p, target, valid, pose_t, sw, CFG)
    (ga,) = torch.autograd.grad(loss_a, pred)
    target_b = torch.where(valid[..., None], target, torch.tensor(junk))
    pred_b = pred.detach().clone()
    inv = ~valid.reshape(4, 98, 1).expand(4, 98, 2).reshape(4, 196)
    pred_b[inv] += 7.0  # invalid predictions moved too
    pred_b.requires_grad_(True)
    loss_b, _ = pfpld_loss(pred_b, pose_p, target_b, valid, pose_t, sw, CFG)
    (gb,) = torch.autograd.grad(loss_b, pred_b)
    assert torch.isfinite(loss_b) and torch.isfinite(gb).all()
    torch.testing.assert_close(loss_a, loss_b)
    torch.testing.assert_close(ga, gb)
    assert (gb[inv] == 0).all()


def test_normalised_by_number_of_valid_points():
    # A sample with 10 valid points, each off by 2 px, scores the same as one with 80 such points.
    target = torch.zeros(2, 98, 2)
    pred = torch.full((2, 196), 2 / 112)
    valid = torch.zeros(2, 98, dtype=torch.bool)
    valid[0, :10] = True
    valid[1, :80] = True
    per = landmark_loss(pred, target, valid, torch.ones(98), CFG)
    torch.testing.assert_close(per[0], per[1])
    none = landmark_loss(pred[:1], target[:1], torch.zeros(1, 98, dtype=torch.bool), torch.ones(98), CFG)
    assert none.item() == 0.0


def test_eye_weight_scales_outside_the_log():
    w = point_weights(CFG)
    assert w[60] == CFG.eye_weight and w[75] == CFG.eye_weight and w[30] == 1.0 and w[96] == 1.0
    target = torch.zeros(1, 98, 2)
    pred = torch.full((1, 196), 3 / 112)
    eye = torch.zeros(1, 98, dtype=torch.bool)
    eye[0, 60] = True
    other = torch.zeros(1, 98, dtype=torch.bool)
    other[0, 30] = True
    ratio = landmark_loss(pred, target, eye, w, CFG) / landmark_loss(pred, target, other, w, CFG)
    assert ratio.item() == pytest.approx(CFG.eye_weight)


def test_pose_loss_only_where_known_and_in_degrees():
    pred = torch.tensor([[0.0, math.pi / 18, 0.0], [1.0, 1.0, 1.0]], requires_grad=True)  # 10 deg yaw
    target = torch.tensor([[0.0, 0.0, 0.0], [float("nan"), 5.0, 5.0]])
    per, known = pose_loss(pred, target)
    assert known.tolist() == [True, False]
    np.testing.assert_allclose(per.detach().numpy(), [10 / 3, 0.0], rtol=1e-5)
    per.sum().backward()
    assert (pred.grad[1] == 0).all() and torch.isfinite(pred.grad).all()


def test_sample_weights_weight_the_batch_mean():
    pred, target, valid = _batch(3, b=2)
    pose_p = torch.zeros(2, 3)
    pose_t = torch.full((2, 3), float("nan"))
    per = landmark_loss(pred, target, valid, point_weights(CFG), CFG).detach()
    loss, parts = pfpld_loss(pred, pose_p, target, valid, pose_t, torch.tensor([3.0, 1.0]), CFG)
    torch.testing.assert_close(loss.detach(), (3 * per[0] + per[1]) / 4)
    assert math.isnan(parts["pose"]) and parts["pose_faces"] == 0
    zero, _ = pfpld_loss(pred, pose_p, target, valid, pose_t, torch.tensor([0.0, 1.0]), CFG)
    torch.testing.assert_close(zero.detach(), per[1])
