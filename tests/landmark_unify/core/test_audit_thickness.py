"""Thickness across outlines (``core.audit.facing_points``, ``thickness``, ``part_thickness_z``) on real faces: a
brow's edges face each other, the two lip outlines face each other half by half; a part pushed out along its
normal is thicker than the model's faces, one slid along its outline is not."""
from __future__ import annotations

import numpy as np
import pytest

import landmark_unify as lu
from landmark_unify.core import audit as ca
from landmark_unify.core.inject import inject
from landmark_unify.manifest import landmarks_array, valid_array

LAY = lu.get_layout("wflw98")


@pytest.fixture(scope="module")
def wflw(shared_manifest):
    df = lu.read_manifest(shared_manifest("wflw", "WFLW"))
    pts, val = landmarks_array(df).astype(np.float64), valid_array(df)
    return df, pts, val, ca.fit_shape_model(pts, val)


def _pairs(model):
    facing = model.extra["thickness"][0]
    return {LAY.names[i]: LAY.names[j] for i, j in enumerate(facing) if j >= 0}


def test_facing_points_come_from_the_layout(wflw):
    pairs = _pairs(wflw[3])
    assert pairs  # brows and lips
    for a, b in pairs.items():
        group_a, group_b = a.split("_")[0], b.split("_")[0]
        assert group_a == group_b and group_a in ("brow", "lip")
        if group_a == "brow":  # across the brow: the other edge of the same brow
            assert a[:6] == b[:6] and ("upper" in a) != ("upper" in b)
        else:  # across the lip: the other outline, the same half
            assert ("outer" in a) != ("outer" in b)
            for half in ("upper", "lower"):
                assert (half in a) == (half in b)
    assert pairs["lip_outer_upper_c"] == "lip_inner_upper_c" and pairs["lip_inner_lower_c"] == "lip_outer_lower_c"


def test_a_68_point_brow_faces_nothing(shared_manifest):
    """A strict 68-point face's brow is its upper edge alone: no solid to measure across; its lips have one."""
    df = lu.read_manifest(shared_manifest("hrnet-csv", "300W_hrnet_csv"))
    pairs = _pairs(ca.fit_shape_model(landmarks_array(df).astype(np.float64), valid_array(df)))
    assert not any(a.startswith("brow") for a in pairs)
    assert any(a.startswith("lip_outer") for a in pairs) and any(a.startswith("lip_inner") for a in pairs)


@pytest.mark.parametrize("part", ["brow_l", "lip_outer"])
def test_pushed_out_is_thicker_slid_is_not(wflw, part):
    df, pts, val, model = wflw
    parts = ca.model_parts(model, LAY)
    j = [p.name for p in parts].index(part)
    rows = np.random.default_rng(0).choice(len(df), 60, replace=False)

    def z(kind):
        if kind is None:
            p = pts[rows]
        else:
            p = np.stack([inject(pts[i], df.at[i, "bbox"], kind, part=part, size=0.1)[0] for i in rows])
        p = np.asarray(p, np.float64)
        return ca.part_thickness_z(ca._complex(p), val[rows] & np.isfinite(p).all(-1), model, parts)[:, j]

    untouched, pushed, slid = z(None), z("shift_normal"), z("shift_tangent")
    assert np.nanquantile(np.abs(untouched), 0.9) < 1.5
    assert np.nanmedian(pushed) > 3 and np.nanquantile(pushed, 0.1) > 2  # 0.1 IOD out on each side
    assert np.nanmedian(np.abs(slid)) < min(1.5, np.nanmedian(pushed) / 3)  # along the outline: ambiguity


def test_push_needs_both_views(wflw):
    """``push_z``: the geometric mean of a part's shift and the size of its thickness change, so one of them
    alone gives nothing and a part with neither gives nothing; a brow or lip pushed out 0.1 IOD shows both,
    the untouched faces rarely do."""
    shift = np.array([[4.0, 4.0, 0.0, 9.0, 3.0]])
    thick = np.array([[4.0, -4.0, 9.0, np.nan, 0.0]])
    np.testing.assert_allclose(ca.push_z(shift, thick), [[4.0, 4.0, 0.0, np.nan, 0.0]])
    df, pts, val, model = wflw
    parts = ca.model_parts(model, LAY)
    rows = np.random.default_rng(1).choice(len(df), 60, replace=False)
    for part in ("brow_r", "lip_outer"):
        j = [p.name for p in parts].index(part)
        pushed = np.stack([inject(pts[i], df.at[i, "bbox"], "shift_normal", part=part, size=0.1)[0] for i in rows])
        zs = {}
        for name, p in (("untouched", pts[rows]), ("pushed", np.asarray(pushed, np.float64))):
            sc = ca.score_shapes(p, val[rows] & np.isfinite(p).all(-1), model, try_repairs=False)
            zs[name] = ca.push_z(sc.part_shift_z, sc.part_thickness_z)[:, j]
        assert np.nanmedian(zs["pushed"]) > 2 * np.nanmedian(zs["untouched"]), part
        assert np.nanquantile(zs["untouched"], 0.9) < np.nanmedian(zs["pushed"]), part
