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
from landmark_unify.core.inject import CUSP_RATIO, inject, iod, part_frame
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


def _cusps(pts: np.ndarray, part: str) -> np.ndarray:
    """``(N, n)`` bool: the part's points whose neighbours lie closer together than CUSP_RATIO of the path
    through the point (the loop turns back there)."""
    q = pts[:, PARTS[part].indices]
    nxt, prv = np.roll(q, -1, 1), np.roll(q, 1, 1)
    path = np.linalg.norm(nxt - q, axis=-1) + np.linalg.norm(q - prv, axis=-1)
    return np.linalg.norm(nxt - prv, axis=-1) <= CUSP_RATIO * path


@pytest.mark.parametrize("kind", ["stacked", "nearly closed"])
def test_a_closed_inner_lip_has_no_direction_where_it_folds(shared_manifest, kind):
    """WFLW faces whose inner lip is closed: at its corners the neighbours on the upper and lower halves lie
    together (on one spot, or a few hundredths of a pixel apart, whose difference points anywhere). There
    the normal is the outward direction and a slide along the outline leaves the corner in place; the
    points between the corners slide the full size."""
    df = lu.read_manifest(shared_manifest("wflw", "WFLW"))
    pts = landmarks_array(df).astype(np.float64)
    idx = PARTS["lip_inner"].indices
    q = pts[:, idx]
    gap = np.linalg.norm(np.roll(q, -1, 1) - np.roll(q, 1, 1), axis=-1) / iod(pts)[:, None]
    cusp = _cusps(pts, "lip_inner")
    pick = (gap < 1e-4) if kind == "stacked" else (cusp & (gap > 1e-4))
    row = int(np.flatnonzero(pick.any(1))[0])
    flat = cusp[row]
    assert flat.sum() >= 1 and not flat.all()
    nrm, tan = part_frame(pts[row], "lip_inner")
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0, atol=1e-6)
    assert (tan[flat] == 0).all() and np.allclose(np.linalg.norm(tan[~flat], axis=1), 1.0)
    outward = pts[row][idx[flat]] - pts[row][idx].mean(0)
    assert ((nrm[flat] * outward).sum(1) > 0.99 * np.linalg.norm(outward, axis=1)).all()
    p, _ = inject(pts[row], np.zeros(4), "shift_tangent", part="lip_inner", size=0.1)
    np.testing.assert_allclose(p[idx[flat]], pts[row][idx[flat]], atol=1e-4)
    moved = np.linalg.norm(p[idx[~flat]] - pts[row][idx[~flat]], axis=1)
    np.testing.assert_allclose(moved, 0.1 * iod(pts[row]), rtol=1e-4)


def test_cusps_are_where_a_loop_turns_back(shared_manifest):
    """On the WFLW faces a loop's cusps are its ends where it is closed (a third of the inner lips' corners,
    a twentieth of the eyes'); between the ends a point is a cusp only on the rare part drawn on one spot
    (a hidden brow), at most 1 % of the faces. A brow's ends and an open lip's corners keep their direction."""
    df = lu.read_manifest(shared_manifest("wflw", "WFLW"))
    pts = landmarks_array(df).astype(np.float64)
    for part in ("brow_l", "brow_r", "eye_l", "eye_r", "lip_outer", "lip_inner"):
        cusp = _cusps(pts, part)
        n = len(PARTS[part].indices)
        ends = np.isin(np.arange(n), [0, n // 2])
        assert cusp[:, ~ends].mean(0).max() < 0.015, part
        if part.startswith(("eye", "lip_inner")):
            assert cusp[:, ends].mean() > 0.03, part
        else:
            assert cusp[:, ends].mean() < 0.01, part


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
