"""The standard crop: window rule, round trip, padding, warp equivalence, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pfpld_train.data.crop import (
    CropError,
    box_crop_params,
    crop_image,
    crop_to_image,
    image_to_crop,
    resize_matrix,
    standard_crop_params,
    warp_crop,
)


def test_window_rule_on_a_worked_example():
    # x in [10.7, 50.2] -> xy=10, zz=50, w=41; y in [20.0, 80.9] -> 20, 80, h=61.
    pts = np.array([[[10.7, 20.0], [50.2, 80.9], [30.0, 40.0]]])
    prm = standard_crop_params(pts)
    # centre = int(10 + 20.5) = 30, int(20 + 30.5) = 50; S = int(1.2 * 61) = 73; top-left = c - 36.
    assert prm.tolist() == [[30 - 36, 50 - 36, 73]]
    assert prm.dtype == np.int64


def test_invalid_and_nan_points_are_ignored():
    pts = np.array([[[10.0, 10.0], [20.0, 20.0], [np.nan, np.nan], [500.0, 500.0]]])
    valid = np.array([[True, True, False, False]])
    expected = standard_crop_params(pts[:, :2])
    assert np.array_equal(standard_crop_params(pts, valid), expected)


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, (3, 7, 2), elements=st.floats(-200, 2000)),
    arrays(np.float64, (3, 7, 2), elements=st.floats(-0.5, 1.5)),
)
def test_round_trip_image_crop_image(pts, probe):
    prm = standard_crop_params(pts)
    back = crop_to_image(image_to_crop(pts, prm), prm)
    np.testing.assert_allclose(back, pts, atol=1e-3)
    np.testing.assert_allclose(image_to_crop(crop_to_image(probe, prm), prm), probe, atol=1e-4)
    # The window holds every point: crop units stay inside [0, 1] up to the pixel floor.
    c = image_to_crop(pts, prm)
    side = prm[:, 2].astype(float)[:, None, None]
    assert (c >= -1.0 / side).all() and (c <= 1 + 1.0 / side).all()


def test_box_params_use_the_same_rule():
    pts = np.array([[[10.7, 20.0], [50.2, 80.9]]])
    assert np.array_equal(box_crop_params(np.array([[10.7, 20.0, 50.2, 80.9]])), standard_crop_params(pts))


def test_crop_zero_pads_outside_the_image():
    img = np.full((50, 60, 3), 200, np.uint8)
    out = crop_image(img, np.array([-50, -50, 100]), size=100)
    assert out.shape == (100, 100, 3) and out.dtype == np.uint8
    assert (out[:45, :45] == 0).all() and (out[55:, 55:] == 200).all()
    # Entirely outside: all zeros.
    assert (crop_image(img, np.array([1000, 1000, 30])) == 0).all()
    # Grey images keep their rank.
    assert crop_image(img[..., 0], np.array([0, 0, 40])).shape == (112, 112)


def test_warp_matches_resize_on_a_real_image(shared_data):
    import cv2

    path = next((shared_data / "WFLW" / "WFLW_images").rglob("*.jpg"))
    img = cv2.imread(str(path))
    h, w = img.shape[:2]
    for prm in ([w // 4, h // 4, min(h, w) // 2], [-20, -30, 150], [w - 80, h - 60, 120]):
        a = crop_image(img, np.array(prm)).astype(np.int16)
        b = warp_crop(img, resize_matrix(np.array(prm))).astype(np.int16)
        assert np.abs(a - b).mean() < 0.5
        assert np.abs(a - b).max() <= 8


def test_bad_inputs_raise_typed_errors():
    with pytest.raises(CropError, match=r"\(N, K, 2\)"):
        standard_crop_params(np.zeros((5, 2)))
    with pytest.raises(CropError, match="no valid landmark"):
        standard_crop_params(np.full((1, 3, 2), np.nan))
    with pytest.raises(CropError, match="valid must have shape"):
        standard_crop_params(np.zeros((1, 3, 2)), np.ones((1, 4), bool))
    with pytest.raises(CropError, match="x_max >= x_min"):
        box_crop_params(np.array([[10, 10, 5, 20]]))
    with pytest.raises(CropError, match="non-empty"):
        crop_image(np.zeros((0, 5, 3), np.uint8), np.array([0, 0, 4]))
    with pytest.raises(CropError, match="side"):
        crop_image(np.zeros((5, 5, 3), np.uint8), np.array([0, 0, 0]))
