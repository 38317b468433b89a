"""Injected errors on faces mapped from another layout (the 300W 68-point faces of the HRNet CSV, strict:
43 of the 98 canonical points valid): the valid points stay valid, invalid ones stay NaN, and each error has
the size asked for, measured on the valid points alone."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import landmark_unify as lu
from landmark_unify.core.audit import outline_parts
from landmark_unify.core.inject import inject, iod, part_frame
from landmark_unify.manifest import landmarks_array, valid_array

PARTS = {p.name: p for p in outline_parts()}


@pytest.fixture(scope="module")
def mapped(shared_manifest):
    df = lu.read_manifest(shared_manifest("hrnet-csv", "300W_hrnet_csv"))
    pts, val = landmarks_array(df).astype(np.float64), valid_array(df)
    assert not val.all() and np.isnan(pts[~val]).all()  # the premise: invalid points are NaN
    return pts, val


def test_partly_valid_parts_exist(mapped):
    """The brows and eyes of a strict 68-point face are partly valid: the cases the frame must handle."""
    _, val = mapped
    partial = [n for n, p in PARTS.items() if 0 < val[0, p.indices].sum() < len(p.indices)]
    assert {"brow_l", "eye_l"} <= set(partial)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.integers(0, 1288), kind=st.sampled_from(["shift_normal", "shift_tangent"]),
       part=st.sampled_from(["brow_l", "brow_r", "lip_outer", "lip_inner", "nose_base", "eye_l"]),
       size=st.floats(0.02, 0.3))
def test_property_shift_moves_each_valid_point_by_size(mapped, row, kind, part, size):
    pts, val = mapped
    p, _ = inject(pts[row], np.zeros(4), kind, part=part, size=size)
    idx = PARTS[part].indices
    assert np.array_equal(np.isfinite(p).all(1), val[row])
    moved = np.linalg.norm(p[idx] - pts[row][idx], axis=1)[val[row, idx]]
    want = np.full(moved.shape, size * iod(pts[row]))
    if kind == "shift_tangent":  # a point whose neighbours coincide has no direction along the outline: it stays
        _, tan = part_frame(pts[row], part)
        want[np.linalg.norm(tan[val[row, idx]], axis=1) == 0] = 0.0
    np.testing.assert_allclose(moved, want, rtol=1e-4, atol=1e-3)
    rest = np.setdiff1d(np.flatnonzero(val[row]), idx)
    np.testing.assert_allclose(p[rest], pts[row][rest], atol=1e-4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.integers(0, 1288),
       kind=st.sampled_from(["reverse", "swap_face", "swap_pair", "swap_ends", "swap_points"]),
       part=st.sampled_from(["brow_l", "lip_outer", "lip_inner", "nose_base", "eye_l"]))
def test_property_relabelling_keeps_the_valid_set(mapped, row, kind, part):
    """A relabelling moves valid points among valid labels: the same points, in other slots."""
    pts, val = mapped
    if kind == "swap_ends" and not PARTS[part].closed:
        part = "lip_outer"
    p, _ = inject(pts[row], np.zeros(4), kind, part=part, point=int(PARTS[part].indices[1]))
    assert np.array_equal(np.isfinite(p).all(1), val[row])
    a = np.sort(np.round(p[val[row]], 3), axis=0)
    b = np.sort(np.round(pts[row][val[row]], 3), axis=0)
    np.testing.assert_allclose(a, b, atol=2e-3)


def test_reverse_of_a_valid_run(mapped):
    """A strict face's left brow has its upper run valid: reversed, that run is reversed among itself."""
    pts, val = mapped
    idx = PARTS["brow_l"].indices
    run = idx[val[0, idx]]
    p, _ = inject(pts[0], np.zeros(4), "reverse", part="brow_l")
    np.testing.assert_allclose(p[run], pts[0][run[::-1]], atol=1e-4)


def test_frame_of_a_valid_run_is_finite_where_valid(mapped):
    pts, val = mapped
    for part in ("brow_l", "eye_l", "lip_outer"):
        nrm, tan = part_frame(pts[0], part)
        ok = val[0, PARTS[part].indices]
        assert np.isfinite(nrm[ok]).all() and np.isnan(nrm[~ok]).all()
        np.testing.assert_allclose(np.linalg.norm(tan[ok], axis=1), 1.0, atol=1e-6)


def test_a_closed_inner_lip_has_no_direction_where_it_folds(shared_manifest):
    """A WFLW face whose inner lip has points stacked on one spot: where a point's neighbours coincide the
    normal is the outward direction and a slide along the outline leaves the point in place."""
    df = lu.read_manifest(shared_manifest("wflw", "WFLW"))
    pts = landmarks_array(df).astype(np.float64)
    idx = PARTS["lip_inner"].indices
    q = pts[:, idx]
    gap = np.linalg.norm(np.roll(q, -1, 1) - np.roll(q, 1, 1), axis=-1) / iod(pts)[:, None]
    row = int(np.flatnonzero((gap < 1e-4).any(1))[0])
    nrm, tan = part_frame(pts[row], "lip_inner")
    flat = gap[row] < 1e-4
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0, atol=1e-6)
    assert (tan[flat] == 0).all() and np.allclose(np.linalg.norm(tan[~flat], axis=1), 1.0)
    p, _ = inject(pts[row], np.zeros(4), "shift_tangent", part="lip_inner", size=0.1)
    np.testing.assert_allclose(p[idx[flat]], pts[row][idx[flat]], atol=1e-4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.integers(0, 1288), kind=st.sampled_from(["move_part", "rotate_part", "scale_part"]),
       part=st.sampled_from(["brow_l", "brow_r", "lip_outer", "lip_inner", "nose_base", "nose_bridge", "eye_l"]),
       size=st.floats(0.02, 0.3), sign=st.sampled_from([-1, 1]), angle=st.floats(0, 2 * np.pi))
def test_property_part_transform_moves_its_farthest_point_by_size(mapped, row, kind, part, size, sign, angle):
    """A part moved, rotated or scaled: its farthest valid point moves the size asked for, a rigid move or a
    rotation keeps the part's own distances, and nothing else moves."""
    pts, val = mapped
    p, b = inject(pts[row], np.arange(4.0), kind, part=part, size=sign * size, angle=angle)
    np.testing.assert_array_equal(b, np.arange(4.0))  # the box stays
    assert np.array_equal(np.isfinite(p).all(1), val[row])
    idx = PARTS[part].indices
    idx = idx[val[row, idx]]
    moved = np.linalg.norm(p[idx] - pts[row][idx], axis=1)
    want = size * iod(pts[row])
    reach = np.linalg.norm(pts[row][idx] - pts[row][idx].mean(0), axis=1).max()
    if kind == "scale_part" and sign < 0:
        want = min(want, 0.9 * reach)  # scaled down to a tenth at most
    if kind == "rotate_part":
        want = min(want, 2 * reach)  # a half turn at most
    assert moved.max() == pytest.approx(want, rel=1e-3, abs=1e-3)
    if kind != "scale_part":
        before = np.linalg.norm(pts[row][idx, None] - pts[row][None, idx], axis=-1)
        after = np.linalg.norm(p[idx, None] - p[None, idx], axis=-1)
        np.testing.assert_allclose(after, before, atol=1e-3)
    rest = np.setdiff1d(np.flatnonzero(val[row]), idx)
    np.testing.assert_allclose(p[rest], pts[row][rest], atol=1e-4)


def test_swap_points_exchanges_two_neighbours(mapped):
    pts, val = mapped
    idx = PARTS["lip_outer"].indices
    p, b = inject(pts[0], np.arange(4.0), "swap_points", part="lip_outer", point=int(idx[3]))
    np.testing.assert_array_equal(b, np.arange(4.0))
    np.testing.assert_allclose(p[idx[3]], pts[0][idx[4]], atol=1e-4)
    np.testing.assert_allclose(p[idx[4]], pts[0][idx[3]], atol=1e-4)
    others = np.setdiff1d(np.arange(98), idx[3:5])
    np.testing.assert_allclose(p[others], pts[0][others], atol=1e-4, equal_nan=True)
