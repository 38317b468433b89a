"""Layouts and maps: structural checks on every registered map, properties, and real-data facts."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import landmark_unify as lu
from landmark_unify.core.layouts import Layout, Point, get_layout, list_layouts
from landmark_unify.core.maps import compile_map, compile_reverse_map, registered_maps, schema_layout
from landmark_unify.errors import MappingError, SchemaError


def test_registry_lists_the_layouts():
    assert set(list_layouts()) >= {"wflw98", "lapa106", "ibug68", "cofw29", "aflw19"}
    assert set(lu.list_schemas()) >= {"wflw98", "lapa106", "ibug68", "ibug68_3d", "cofw29", "aflw19"}
    assert [len(get_layout(n)) for n in ("wflw98", "lapa106", "ibug68", "cofw29", "aflw19", "aflw21")] == [98, 106, 68, 29, 19, 21]


@pytest.mark.parametrize("name", list_layouts())
def test_mirror_is_an_involution(name):
    f = get_layout(name).flip_indices
    assert np.array_equal(f[f], np.arange(len(f)))


def test_wflw_mirror_matches_the_official_file(shared_data):
    text = (shared_data / "WFLW/WFLW_annotations/Mirror98.txt").read_text()
    official = np.array([int(v) for v in text.replace("\n", ",").split(",") if v.strip()])
    assert np.array_equal(get_layout("wflw98").flip_indices, official)


def test_ibug_mirror_matches_mmpose_dataset_info(shared_data):
    import re

    text = (shared_data / "mmpose_tests/300w_dataset_info_mmpose.py").read_text()
    swaps = re.findall(r"name='kpt-(\d+)'.*?swap='(?:kpt-)?(\d*)'", text, flags=re.S)
    official = np.array([int(s) if s else int(i) for i, s in swaps[:68]])
    assert np.array_equal(get_layout("ibug68").flip_indices, official)


def test_bad_layouts_are_rejected():
    with pytest.raises(SchemaError, match="involution"):
        Layout("bad", (Point("a", "eye", "b"), Point("b", "eye", "c"), Point("c", "eye", "a")), ("a", "b"))
    with pytest.raises(SchemaError, match="duplicate"):
        Layout("bad", (Point("a", "eye", "a"), Point("a", "eye", "a")), ("a", "a"))
    with pytest.raises(SchemaError, match="unknown layout"):
        get_layout("nope")
    with pytest.raises(SchemaError, match="valid:"):
        lu.to_canonical(np.zeros((68, 2)), "ibug68", policy="loose")


@pytest.mark.parametrize("pmap", registered_maps(), ids=lambda m: m.name)
def test_every_map_preserves_mirror_pairs(pmap):
    """Mapping then flipping equals flipping then mapping: a map must send mirror pairs to mirror pairs."""
    for policy in ("strict", "extended"):
        c = pmap.compile(policy, True)
        src, dst = c.source, c.target
        for i in np.flatnonzero(c.valid):
            j = dst.flip_indices[i]
            assert c.valid[j], (pmap.name, dst.names[i])
            assert {src.flip_indices[c.a[i]], src.flip_indices[c.b[i]]} == {c.a[j], c.b[j]}, (pmap.name, dst.names[i])


def test_ibug68_strict_is_the_43_identical_points():
    c = compile_map("ibug68", "strict")
    assert c.valid.sum() == 43
    names = get_layout("wflw98").names
    expected = {*range(33, 38), *range(42, 47), *range(51, 60), 60, 64, 68, 72, *range(76, 96)}
    assert set(np.flatnonzero(c.valid)) == expected, [names[i] for i in np.flatnonzero(c.valid)]
    # the original PFPLD table for these 43
    table = {**{17 + k: 33 + k for k in range(5)}, **{22 + k: 42 + k for k in range(5)}, **{27 + k: 51 + k for k in range(9)},
             36: 60, 39: 64, 42: 68, 45: 72, **{48 + k: 76 + k for k in range(20)}}
    for src, dst in table.items():
        assert c.a[dst] == c.b[dst] == src


def test_projected_contour_is_invalid_by_default():
    jaw = np.arange(0, 33, 2)
    assert compile_map("ibug68", "extended").valid[jaw].all()
    assert not compile_map("ibug68_3d", "extended").valid[jaw].any()
    assert compile_map("ibug68_3d", "extended", projected_contour=True).valid[jaw].all()
    assert not compile_map("ibug68", "extended").valid[1:33:2].any()


def test_lapa_drops_the_eight_extra_points():
    c = compile_map("lapa106", "strict")
    assert c.valid.all() and np.array_equal(c.a, c.b)
    assert np.array_equal(np.setdiff1d(np.arange(106), c.a), [55, 56, 57, 63, 64, 65, 74, 83])


finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, (3, 68, 2), elements=finite))
def test_ibug_round_trip_keeps_strict_points(points):
    p98, v98 = lu.to_canonical(points, "ibug68", "strict")
    back, vb = lu.from_canonical(p98, "ibug68", "strict", valid98=v98)
    again, va = lu.to_canonical(back, "ibug68", "strict", source_valid=vb)
    assert np.array_equal(va, v98)
    np.testing.assert_array_equal(again[va], p98[v98])
    assert v98.sum(1).tolist() == [43, 43, 43]


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(sorted(lu.list_schemas())), st.integers(1, 4), st.integers(64, 2000), st.data())
def test_flip_commutes_with_to_canonical(schema, n, width, data):
    k = schema_layout(schema).num_points
    pts = data.draw(arrays(np.float32, (n, k, 2), elements=st.floats(0, 1000, width=32)))
    a, va = lu.to_canonical(lu.flip(pts, schema, width), schema, "extended")
    b, vb = lu.to_canonical(pts, schema, "extended")
    b, vb = lu.flip(b, "wflw98", width, valid=vb)
    assert np.array_equal(va, vb)
    np.testing.assert_allclose(a[va], b[vb], atol=1e-3)


def test_flip_twice_is_identity_and_nan_marks_invalid():
    pts = np.random.default_rng(0).uniform(0, 200, (5, 98, 2)).astype(np.float32)
    np.testing.assert_allclose(lu.flip(lu.flip(pts, "wflw98", 201), "wflw98", 201), pts, atol=1e-4)
    pts[1, 60] = np.nan
    out, valid = lu.to_canonical(pts, "wflw98")
    assert not valid[1, 60] and np.isnan(out[1, 60]).all() and valid.sum() == 5 * 98 - 1


def test_shapes_are_checked():
    with pytest.raises(MappingError, match=r"\(N, 68, 2\)"):
        lu.to_canonical(np.zeros((5, 67, 2)), "ibug68")
    single, valid = lu.to_canonical(np.zeros((68, 2)), "ibug68")
    assert single.shape == (98, 2) and valid.shape == (98,) and single.dtype == np.float32


def test_reverse_maps_cover_the_68_points_under_extended():
    c = compile_reverse_map("ibug68", "extended")
    assert c.valid.all()
    assert compile_reverse_map("ibug68", "strict").valid.sum() == 43
