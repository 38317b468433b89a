"""The left-right order check (``core.audit.out_of_order``) on real faces: the sides come from the layout's
parts and mirrors; on the WFLW test faces it names the faces whose brows lie the other way round from their
eyes, and a part exchanged with its mirror on any face that shows both halves; a whole face mirrored keeps
its order (the repairs find that one)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import landmark_unify as lu
from landmark_unify.core import audit as ca
from landmark_unify.core.inject import inject
from landmark_unify.manifest import landmarks_array, valid_array

LAY = lu.get_layout("wflw98")


@pytest.fixture(scope="module")
def faces(shared_manifest):
    df = lu.read_manifest(shared_manifest("wflw", "WFLW"))
    return landmarks_array(df).astype(np.float64), valid_array(df), df


def _x(pts, part):
    idx = [i for i, n in enumerate(LAY.names) if n.startswith(part + "_") or n == part]
    return pts[:, idx, 0].mean(1)


def test_sides_come_from_the_layout():
    sides = {s.name: s for s in ca.sides()}
    assert {"contour", "brow_l/brow_r", "eye_l/eye_r", "pupil_l/pupil_r", "lip_outer", "lip_inner",
            "nose_base"} == set(sides)
    flip = np.asarray(LAY.flip_indices)
    for s in sides.values():
        assert (flip[s.left] == s.right).all()
        assert not set(s.left) & set(s.right)


def test_names_the_faces_whose_brows_are_exchanged(faces):
    pts, val, _ = faces
    found = ca.out_of_order(pts, val)
    brows_crossed = np.flatnonzero((_x(pts, "brow_l") > _x(pts, "brow_r")) != (_x(pts, "eye_l") > _x(pts, "eye_r")))
    assert brows_crossed.size >= 1  # the WFLW test set has such faces (two)
    for i in brows_crossed:
        assert "brow_l/brow_r" in found[i]
    named = [i for i, f in enumerate(found) if f]
    assert len(named) <= 0.005 * len(pts)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.integers(0, 1965), part=st.sampled_from(["eye_l", "brow_l", "pupil_l"]))
def test_property_a_pair_exchanged_is_out_of_order(faces, row, part):
    pts, val, df = faces
    before = ca.out_of_order(pts[row:row + 1], val[row:row + 1])[0]
    p, _ = inject(df.at[row, "landmarks"], df.at[row, "bbox"], "swap_pair", part=part)
    after = ca.out_of_order(p[None], np.isfinite(p).all(1)[None])[0]
    side = {s.name: s for s in ca.sides()}[f"{part}/{part[:-2]}_r"]
    spread = np.linalg.norm(p[side.left].mean(0) - p[side.right].mean(0))
    iod = np.linalg.norm(pts[row, LAY.norm_indices[0]] - pts[row, LAY.norm_indices[1]])
    if not before and spread >= 0.5 * iod:  # a face that shows both halves apart
        assert side.name in after


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.integers(0, 1965))
def test_property_a_whole_face_mirrored_keeps_its_order(faces, row):
    pts, val, df = faces
    before = ca.out_of_order(pts[row:row + 1], val[row:row + 1])[0]
    p, _ = inject(df.at[row, "landmarks"], df.at[row, "bbox"], "swap_face")
    after = ca.out_of_order(p[None], np.isfinite(p).all(1)[None])[0]
    assert set(after) == set(before)


def test_invalid_points_do_not_vote(faces):
    pts, val, _ = faces
    i = int(np.flatnonzero(val.all(1))[0])
    brows = {s.name: s for s in ca.sides()}["brow_l/brow_r"]
    p = pts[i:i + 1].copy()
    p[0, brows.left] = p[0, brows.right]  # both brows on one spot: halves not apart, no vote
    assert "brow_l/brow_r" not in ca.out_of_order(p, val[i:i + 1])[0]
    crossed = pts[i:i + 1].copy()
    crossed[0, brows.left], crossed[0, brows.right] = pts[i, brows.right], pts[i, brows.left]
    assert "brow_l/brow_r" in ca.out_of_order(crossed, val[i:i + 1])[0]
    v = val[i:i + 1].copy()
    v[0, brows.left[0]] = False  # a side with an invalid point does not vote
    assert ca.out_of_order(crossed, v)[0] == []


@pytest.mark.parametrize("labels, kind", [("pts68_3d", "ibug68_3d"), ("pts68_2d_reannotated", "ibug68")])
def test_faces_turned_to_profile_are_not_named(shared_data, labels, kind):
    """The AFLW2000-3D dev faces (yaw up to 120 degrees, 68 points mapped strictly): a face turned far folds a
    side of its far half over the near one, and is not named for it."""
    d = np.load(shared_data / "AFLW2000-3D_dev/aflw2000_3d_dev.npz")
    pts, val = lu.to_canonical(d[labels][..., :2].astype(np.float32) - 1, kind, policy="strict")
    assert np.abs(d["yaw_deg"]).max() > 90
    assert not any(ca.out_of_order(np.asarray(pts, np.float64), np.asarray(val)))


def test_faces_without_a_frame_name_nothing():
    p = np.full((3, 98, 2), np.nan)
    v = np.zeros((3, 98), bool)
    p[1], v[1] = 0.0, True  # every point on one spot
    p[2], v[2] = np.random.default_rng(0).normal(size=(98, 2)), True
    p[2, LAY.norm_indices[1]] = p[2, LAY.norm_indices[0]]  # coincident eye corners: no IOD
    assert ca.out_of_order(p, v) == [[], [], []]
    assert ca.out_of_order(np.zeros((0, 98, 2)), np.zeros((0, 98), bool)) == []
