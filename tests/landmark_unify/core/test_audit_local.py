"""The audit's local point model on the real WFLW test faces: each point predicted from its neighbours,
the regressors the layout implies, and the face-level point signal."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import landmark_unify as lu
from landmark_unify.core import audit as ca
from landmark_unify.core.inject import inject
from landmark_unify.manifest import landmarks_array, valid_array


@pytest.fixture(scope="module")
def faces(shared_manifest):
    df = lu.read_manifest(shared_manifest("wflw", "WFLW"))
    pts, val = landmarks_array(df).astype(np.float64), valid_array(df)
    return pts, val, ca.fit_shape_model(pts, val)


def test_outline_points_are_predicted_from_their_own_part():
    lay = lu.get_layout("wflw98")
    parts = ca.outline_parts(lay)
    mean = np.array([complex(i % 10, i // 10) for i in range(lay.num_points)])
    nb = ca.local_neighbours(mean, np.ones(lay.num_points, bool), parts)
    part_of = {int(i): p for p in parts for i in p.indices}
    for i in range(lay.num_points):
        regs = nb[i][nb[i] >= 0]
        assert i not in regs and len(set(regs)) == len(regs)
        if part_of[i].outline:
            assert set(regs) <= set(part_of[i].indices.tolist()), lay.names[i]
            assert len(regs) == min(ca.LOCAL_NEIGHBOURS, len(part_of[i].indices) - 1)
        else:
            assert len(regs) == ca.LOCAL_NEIGHBOURS


def test_points_the_model_lacks_are_never_regressors():
    lay = lu.get_layout("wflw98")
    have = np.ones(lay.num_points, bool)
    have[::3] = False
    mean = np.array([complex(i % 10, i // 10) for i in range(lay.num_points)])
    nb = ca.local_neighbours(mean, have, ca.outline_parts(lay))
    assert (nb[~have] == -1).all()
    regs = nb[nb >= 0]
    assert have[regs].all()


def test_local_model_is_calibrated_on_real_faces(faces):
    pts, val, model = faces
    lm = model.extra["local"]
    assert lm.usable.all() and (lm.tail >= 1).all()
    z = pts[..., 0] + 1j * pts[..., 1]
    _, _, w = ca.fit_faces(z, val, model)
    lz = ca.local_z(ca.similarity_align(z, np.where(val, w, 0), model.mean), val, lm)
    # each point's z-scores have a normal vector's 90th percentile before the tail factor
    q90 = np.nanquantile(lz * lm.tail, 0.9, axis=0)
    np.testing.assert_allclose(q90, ca.CHI2_Q90, rtol=0.02)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.filter_too_much])
@given(row=st.integers(0, 1965), point=st.integers(0, 97), angle=st.floats(0, 2 * np.pi))
@example(row=198, point=82, angle=0.0)  # a mouth corner: the tail factor once hid it
@example(row=198, point=82, angle=2.75)  # ... and along the mouth: the lip points next to it stray with it
def test_a_point_moved_far_leads_its_face(faces, row, point, angle):
    """A point moved 0.5 IOD on a real face none of whose points stands out yet (on one that already has
    worse points, five contour points of a misdrawn chin, it may rank behind them): its z-score rises, it
    is among the worst points the audit names, and the face's point signal rises."""
    from landmark_unify.ops.audit import POINT_FLAG, WORST_POINTS

    pts, val, model = faces
    bad, _ = inject(pts[row], np.zeros(4), "move_point", point=point, size=0.5, angle=angle)
    s = ca.score_shapes(np.stack([pts[row], bad]), np.stack([val[row], val[row]]), model)
    assume(np.nanmax(s.point_z[0]) < POINT_FLAG)
    z = s.point_z[1]
    assert z[point] > s.point_z[0, point]
    named = [k for k in np.argsort(-np.nan_to_num(z, nan=-1))[:WORST_POINTS]
             if z[k] >= max(POINT_FLAG, 0.5 * np.nanmax(z))]
    assert point in named
    sig = ca.point_signal(s.point_z)
    assert sig[1] > sig[0]


@given(z=st.lists(st.floats(0, 50), min_size=3, max_size=98), factor=st.floats(1, 10))
def test_point_signal_reads_the_largest_point_against_the_face_level(z, factor):
    z = np.array([z])
    one = ca.point_signal(z)[0]
    assert one <= np.max(z) + 1e-9
    # a face whose every point strays `factor` times more is no more suspect by its largest point alone
    level = np.median(z) / ca.CHI2_MEDIAN
    if level >= 1:
        assert ca.point_signal(z * factor)[0] == pytest.approx(one, rel=1e-9)
    assert np.isnan(ca.point_signal(np.full((1, 5), np.nan))[0])
