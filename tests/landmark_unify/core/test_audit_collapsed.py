"""Collapsed loop ends (``core.audit.collapsed_ends``) on real faces: the WFLW test set has faces whose two lip
corners are labelled together inside the mouth (the real corners labelled as lip points); the rule names them
and nothing else there, and names nothing on 300W or on AFLW2000-3D (to 120 degrees of yaw)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import landmark_unify as lu
from landmark_unify.core import audit as ca
from landmark_unify.core.inject import iod
from landmark_unify.core.pose import estimate_pose, faces_camera
from landmark_unify.face_models import load_face_model
from landmark_unify.manifest import landmarks_array, valid_array

LAY = lu.get_layout("wflw98")
LOOPS = {p.name: p for p in ca.outline_parts() if p.closed}


def _yaw(pts, val, projected=False):
    pose = estimate_pose(pts, val, model=load_face_model(), projected=np.full(len(pts), projected))
    pose[~faces_camera(pose)] = np.nan
    return pose[:, 1]


@pytest.fixture(scope="module")
def wflw(shared_manifest):
    df = lu.read_manifest(shared_manifest("wflw", "WFLW"))
    pts, val = landmarks_array(df).astype(np.float64), valid_array(df)
    return pts, val, _yaw(pts, val)


def test_loops_and_their_ends_come_from_the_layout():
    assert set(LOOPS) == {"brow_l", "brow_r", "eye_l", "eye_r", "lip_outer", "lip_inner"}
    names = {n: [LAY.names[i] for i in ca.loop_ends(p)] for n, p in LOOPS.items()}
    assert names["lip_outer"] == ["lip_outer_l", "lip_outer_r"]
    assert names["lip_inner"] == ["lip_inner_l", "lip_inner_r"]
    assert names["eye_l"] == ["eye_l_outer", "eye_l_inner"]


def test_names_the_wflw_mouths_whose_corners_lie_inside_them(wflw):
    pts, val, yaw = wflw
    found = ca.collapsed_ends(pts, val, yaw)
    named = {part: np.array([i for i, f in enumerate(found) if part in f]) for part in LOOPS}
    # 61 outer lips and 16 inner lips of the 1966 test faces; no eye and no brow
    assert len(named["lip_outer"]) == 61 and len(named["lip_inner"]) == 16
    assert all(len(named[p]) == 0 for p in ("eye_l", "eye_r", "brow_l", "brow_r"))
    for part in ("lip_outer", "lip_inner"):
        a, b = ca.loop_ends(LOOPS[part])
        i = named[part]
        # the two corners together (most within 0.02 IOD), inside the mouth: another point of the loop lies
        # farther out on each side of them along the mouth
        gap = np.linalg.norm(pts[i, a] - pts[i, b], axis=-1) / iod(pts[i])
        assert (gap < 0.3).all() and np.median(gap) < 0.02
        q = pts[i][:, LOOPS[part].indices]
        centre = (pts[i, a] + pts[i, b]) / 2
        assert (q[..., 0].min(1) < centre[:, 0] - 0.05 * iod(pts[i])).all()
        assert (q[..., 0].max(1) > centre[:, 0] + 0.05 * iod(pts[i])).all()


def test_names_nothing_on_300w_and_on_aflw2000_3d(shared_manifest, shared_data):
    df = lu.read_manifest(shared_manifest("hrnet-csv", "300W_hrnet_csv"))
    pts, val = landmarks_array(df).astype(np.float64), valid_array(df)
    assert not any(ca.collapsed_ends(pts, val, _yaw(pts, val)))
    d = np.load(shared_data / "AFLW2000-3D_dev/aflw2000_3d_dev.npz")
    for key, layout in (("pts68_2d_reannotated", "ibug68"), ("pts68_3d", "ibug68_3d")):
        p, v = lu.to_canonical(d[key][..., :2].astype(np.float32) - 1, layout, policy="strict")
        p, v = np.asarray(p, np.float64), np.asarray(v)
        assert not any(ca.collapsed_ends(p, v, _yaw(p, v, projected=layout == "ibug68_3d")))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.integers(0, 1965), part=st.sampled_from(["lip_outer", "lip_inner", "eye_l", "eye_r", "brow_l"]),
       yaw=st.floats(-59, 59))
def test_property_ends_moved_to_the_centre_are_named(wflw, row, part, yaw):
    pts, val, _ = wflw
    loop = LOOPS[part]
    p = pts[row].copy()
    if np.ptp(p[loop.indices], 0).max() <= 0:  # a hidden brow drawn as one spot: no loop to collapse
        return
    a, b = ca.loop_ends(loop)
    p[[a, b]] = p[loop.indices].mean(0)
    assert part in ca.collapsed_ends(p[None], val[row:row + 1], np.array([yaw]))[0]
    # ends together at the loop's edge (a mouth seen edge-on) are not collapsed: both on the end farther from
    # the loop's centre
    edge = pts[row].copy()
    centre = edge[loop.indices].mean(0)
    far, near = (a, b) if np.linalg.norm(edge[a] - centre) >= np.linalg.norm(edge[b] - centre) else (b, a)
    edge[near] = edge[far]
    extent = np.linalg.norm(edge[loop.indices, None] - edge[None, loop.indices], axis=-1).max()
    if np.linalg.norm(edge[far] - edge[loop.indices].mean(0)) >= ca.COLLAPSE_SHARE * extent:
        assert part not in ca.collapsed_ends(edge[None], val[row:row + 1], np.array([yaw]))[0]
    # not checked: a face turned past the limit, a face without a pose, a loop with a point missing
    assert not ca.collapsed_ends(p[None], val[row:row + 1], np.array([ca.MAX_COLLAPSE_YAW + 1]))[0]
    assert not ca.collapsed_ends(p[None], val[row:row + 1], np.array([np.nan]))[0]
    v = val[row].copy()
    v[loop.indices[1]] = False
    assert part not in ca.collapsed_ends(p[None], v[None], np.array([yaw]))[0]
