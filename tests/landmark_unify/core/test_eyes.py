"""Eye aspect ratio and eye state: the FACTS formula on real WFLW faces, properties, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import landmark_unify as lu
from landmark_unify.core.eyes import CLOSED_THRESHOLD, closed_eye_mask, eye_columns, eye_state
from landmark_unify.core.maps import flip
from landmark_unify.errors import MappingError


def _wflw_faces(shared_data, limit=None):
    folder = shared_data / "WFLW/WFLW_annotations/list_98pt_test"
    seen = {}
    for path in sorted(folder.glob("list_98pt_test_*.txt")):
        for line in path.read_text().splitlines():
            t = line.split()
            if len(t) >= 197:
                seen.setdefault(tuple(t[:197]), np.array(t[:196], dtype=np.float64).reshape(98, 2))
    pts = np.stack(list(seen.values()))
    return pts if limit is None else pts[:limit]


def _formula(p):
    d = lambda a, b: np.hypot(*(p[a] - p[b]))  # noqa: E731
    left = (d(61, 67) + d(62, 66) + d(63, 65)) / (3 * d(60, 64))
    right = (d(69, 75) + d(70, 74) + d(71, 73)) / (3 * d(68, 72))
    return left, right


def test_ear_equals_the_facts_formula_on_real_wflw(shared_data):
    pts = _wflw_faces(shared_data)
    assert len(pts) == 1966
    ear = lu.eye_aspect_ratio(pts)
    assert ear.shape == (1966, 2) and ear.dtype == np.float32
    want = np.array([_formula(p) for p in pts[::7]])
    np.testing.assert_allclose(ear[::7], want, rtol=1e-5)


def test_eye_state_agrees_with_the_threshold_on_real_wflw(shared_data):
    pts = _wflw_faces(shared_data)
    cols = eye_columns(pts, np.ones(pts.shape[:2], bool))
    ear = np.stack([cols["ear_left"], cols["ear_right"]], 1)
    shut = (ear <= CLOSED_THRESHOLD).sum(1)
    assert set(cols["eye_state"]) <= {"open", "one_closed", "both_closed"}
    np.testing.assert_array_equal(cols["eye_state"] == "open", shut == 0)
    np.testing.assert_array_equal(cols["eye_state"] == "one_closed", shut == 1)
    np.testing.assert_array_equal(cols["eye_state"] == "both_closed", shut == 2)
    # Closed eyes are rare in WFLW: the measured share of faces with both eyes closed is about 4 %.
    assert 0.01 < (shut == 2).mean() < 0.08
    # A higher threshold only adds closed eyes.
    assert (eye_state(ear, closed=0.2) != "open").sum() >= (shut > 0).sum()


def test_flip_swaps_the_eyes(shared_data):
    pts = _wflw_faces(shared_data, 50)
    ear = lu.eye_aspect_ratio(pts)
    flipped = flip(pts, "wflw98", 1000)
    np.testing.assert_allclose(lu.eye_aspect_ratio(flipped), ear[:, ::-1], rtol=1e-4, atol=1e-5)


def test_invalid_eye_points_give_nan_and_unknown(shared_data):
    pts = _wflw_faces(shared_data, 3).astype(np.float32)
    valid = np.ones((3, 98), bool)
    valid[0, 62] = False  # left eye
    pts[1, 70] = np.nan  # right eye
    ear = lu.eye_aspect_ratio(pts, valid)
    assert np.isnan(ear[0, 0]) and np.isfinite(ear[0, 1])
    assert np.isnan(ear[1, 1]) and np.isfinite(ear[1, 0])
    assert np.isfinite(ear[2]).all()
    assert list(eye_state(ear)[:2]) == ["unknown", "unknown"]
    assert not closed_eye_mask(np.full((1, 2), np.nan)).any()


def test_68_point_data_under_strict_has_no_eye_state(shared_data):
    from scipy.io import loadmat

    mat = loadmat(shared_data / "AFLW2000/image00050.mat")
    p98, v98 = lu.to_canonical(mat["pt3d_68"][:2].T, "ibug68_3d")
    cols = eye_columns(p98[None], v98[None])
    assert cols["eye_state"][0] == "unknown" and np.isnan(cols["ear_left"][0])
    p98, v98 = lu.to_canonical(mat["pt3d_68"][:2].T, "ibug68_3d", policy="extended")
    # extended: lid midpoints exist, but WFLW points 61, 63, 65, 67 have no iBUG counterpart
    assert np.isnan(lu.eye_aspect_ratio(p98, v98)).all()


@settings(max_examples=50, deadline=None)
@given(
    st.floats(0.0, 0.6), st.floats(0.0, 0.6),
    st.floats(-np.pi, np.pi), st.floats(0.1, 50.0), st.floats(-500, 500), st.floats(-500, 500),
)
def test_ear_of_a_synthetic_eye_is_similarity_invariant(h_left, h_right, angle, scale, tx, ty):
    # Eyes of width 1 with all three lid gaps h: EAR == h, under any rotation, scale and shift.
    pts = np.zeros((98, 2))
    for base, h in ((60, h_left), (68, h_right)):
        xs = np.array([0, 0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25]) + (3 if base == 68 else 0)
        ys = np.array([0, -h / 2, -h / 2, -h / 2, 0, h / 2, h / 2, h / 2])
        pts[base:base + 8] = np.stack([xs, ys], 1)
    c, s = np.cos(angle), np.sin(angle)
    pts = scale * pts @ np.array([[c, -s], [s, c]]).T + [tx, ty]
    ear = lu.eye_aspect_ratio(pts)[0]
    np.testing.assert_allclose(ear, [h_left, h_right], atol=2e-4)
    state = eye_state(ear, closed=0.1)[0]
    n_closed = int(h_left <= 0.1) + int(h_right <= 0.1)
    if min(abs(h_left - 0.1), abs(h_right - 0.1)) > 1e-3:
        assert state == ("open", "one_closed", "both_closed")[n_closed]


def test_bad_input_is_rejected():
    with pytest.raises(MappingError, match="98, 2"):
        lu.eye_aspect_ratio(np.zeros((4, 68, 2)))
    with pytest.raises(MappingError, match="valid98"):
        lu.eye_aspect_ratio(np.zeros((4, 98, 2)), np.ones((3, 98), bool))
    with pytest.raises(MappingError, match="ear must be"):
        eye_state(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="mode"):
        closed_eye_mask(np.zeros((4, 2)), mode="any")


def wflw_manifest(shared_data, path, limit=200, source="wflw"):
    """A manifest of real WFLW test faces written straight from the list files (test helper)."""
    from landmark_unify.manifest import make_metadata, make_sample_id, write_manifest

    folder = shared_data / "WFLW/WFLW_annotations/list_98pt_test"
    rows = {}
    for f in sorted(folder.glob("list_98pt_test_*.txt")):
        for i, line in enumerate(f.read_text().splitlines(), 1):
            t = line.split()
            if len(t) >= 197 and tuple(t[:197]) not in rows:
                rows[tuple(t[:197])] = (np.array(t[:196], np.float32).reshape(98, 2), t[196], f.name, i)
    rows = list(rows.values())[:limit]
    pts = np.stack([r[0] for r in rows])
    n = len(rows)
    cols = {
        "sample_id": [make_sample_id(source, "test", r[2], r[3]) for r in rows],
        "source": [source] * n, "split": ["test"] * n,
        "image_path": [r[1] for r in rows],
        "landmarks": pts, "valid": np.ones((n, 98), bool),
        "bbox": np.concatenate([pts.min(1), pts.max(1)], 1),
        "source_schema": ["wflw98"] * n,
        "origin_file": [f"WFLW_annotations/list_98pt_test/{r[2]}" for r in rows],
        "origin_line": [r[3] for r in rows],
    }
    root = shared_data / "WFLW/WFLW_images"
    write_manifest(cols, path, make_metadata({source: str(root)}, command="test"))
    return path


def test_mine_closed_eyes_cli(shared_data, tmp_path):
    from landmark_unify.cli import main
    from landmark_unify.manifest import read_manifest, validate_manifest

    src = wflw_manifest(shared_data, tmp_path / "in" / "wflw.parquet", limit=400)
    out = tmp_path / "out" / "closed.parquet"
    assert main(["mine-closed-eyes", str(src), "-o", str(out)]) == 0
    assert validate_manifest(out) == []
    df_in, df = read_manifest(src), read_manifest(out)
    ear = lu.eye_aspect_ratio(lu.landmarks_array(df_in))
    want = (ear <= CLOSED_THRESHOLD).any(1)
    assert len(df) == want.sum() > 0
    assert set(df["sample_id"]) == set(df_in["sample_id"][want])
    assert (df["eye_state"] != "open").all()
    assert df.attrs["manifest"]["mined_closed_eyes"]["kept"] == len(df)
    first = df_in.index[want][0]
    assert lu.image_paths(df)[0] == lu.image_paths(df_in)[first]
    both = tmp_path / "both.parquet"
    assert main(["mine-closed-eyes", str(src), "-o", str(both), "--mode", "both", "--closed-threshold", "0.15"]) == 0
    d2 = read_manifest(both)
    assert (d2["ear_left"] <= 0.15).all() and (d2["ear_right"] <= 0.15).all()
    assert set(d2["eye_state"]) == {"both_closed"}
