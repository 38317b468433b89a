"""Machine labels: rows marked as a model's, any layout mapped onto the canonical one, poses kept or fitted,
and the second-opinion comparison against existing labels."""
from __future__ import annotations

import numpy as np
import pytest

import landmark_unify as lu
from landmark_unify.core.maps import from_canonical
from landmark_unify.errors import LandmarkUnifyError
from landmark_unify.manifest import LABEL_SOURCES, validate
from landmark_unify.ops.build import build_manifest
from landmark_unify.ops.label import LabelledFace, compare_labels, write_machine_labels


@pytest.fixture(scope="module")
def wflw(shared_data, tmp_path_factory):
    """The shared WFLW faces whose image is here."""
    out = tmp_path_factory.mktemp("label") / "wflw.parquet"
    build_manifest([f"wflw={shared_data / 'WFLW'}"], out, check_images=True, on_error="skip", progress=False)
    return lu.read_manifest(out)


def _faces(df, schema="wflw98", pose=None):
    files = lu.image_paths(df)
    pts = lu.landmarks_array(df)
    if schema != "wflw98":
        pts, _ = from_canonical(pts, schema)
    return [LabelledFace(f, 0, p, schema, pose=pose, width=640, height=480) for f, p in zip(files, pts)]


def test_machine_labels_are_marked_and_valid(wflw, tmp_path):
    df = wflw.head(6)
    faces = _faces(df)
    faces[0].pose = np.array([5.0, -20.0, 3.0])
    out = write_machine_labels(faces, tmp_path / "m.parquet", model="my-model.onnx")
    assert validate(out) == []
    m = lu.read_manifest(out)
    assert set(m["label_source"]) == {"machine"} and set(m["label_model"]) == {"my-model.onnx"}
    assert m.attrs["manifest"]["machine_labels"]["model"] == "my-model.onnx"
    # the root is the deepest folder holding every image, the source its name; paths resolve to the images
    assert [str(p) for p in lu.image_paths(m)] == [str(f.image.resolve()) for f in faces]
    # the model's pose is kept (fit beside it), the others are fitted
    assert m["pose_source"].tolist() == ["model"] + ["fit"] * 5
    assert (m.loc[0, "pitch"], m.loc[0, "yaw"], m.loc[0, "roll"]) == (5.0, -20.0, 3.0)
    assert np.isfinite(m.loc[0, "fit_yaw"]) and np.isnan(m.loc[1:, "fit_yaw"].astype(float)).all()
    np.testing.assert_allclose(lu.landmarks_array(m), lu.landmarks_array(df), atol=1e-4)
    assert m["eye_state"].tolist() == df["eye_state"].tolist()
    assert m["sample_id"].is_unique


def test_dataset_labels_say_so_and_older_manifests_read_as_unknown(wflw, tmp_path):
    assert set(wflw["label_source"]) == {"dataset"} and wflw["label_model"].isna().all()
    assert LABEL_SOURCES == ("dataset", "machine")
    # a manifest of format 1.1 (before the columns) reads with them null and still validates
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "new.parquet"
    lu.write_manifest(wflw.head(3), src, dict(wflw.attrs["manifest"]))
    t = pq.read_table(src)
    import json

    meta = json.loads(t.schema.metadata[b"landmark_unify"])
    meta["format_version"] = "1.1"
    old = t.drop_columns(["label_source", "label_model"])
    old = old.replace_schema_metadata({b"landmark_unify": json.dumps(meta).encode()})
    pq.write_table(old, tmp_path / "old.parquet")
    back = lu.read_manifest(tmp_path / "old.parquet")
    assert back["label_source"].isna().all() and back["label_model"].isna().all()
    assert validate(tmp_path / "old.parquet") == []
    assert isinstance(old, pa.Table)


def test_a_68_point_model_maps_onto_the_canonical_layout(wflw, tmp_path):
    df = wflw.head(3)
    out = write_machine_labels(_faces(df, "ibug68"), tmp_path / "m68.parquet", model="fan2d", policy="strict")
    m = lu.read_manifest(out)
    assert set(m["source_schema"]) == {"ibug68"} and validate(out) == []
    v = lu.valid_array(m)
    assert not v[:, :33].any() and v[:, [60, 64, 68, 72]].all()  # strict: no 2D jaw on the contour; eye corners exact


def test_validate_requires_the_model_name_of_machine_labels(wflw, tmp_path):
    out = write_machine_labels(_faces(wflw.head(2)), tmp_path / "m.parquet", model="x")
    df = lu.read_manifest(out)
    df["label_model"] = None
    lu.write_manifest(df, tmp_path / "bad.parquet", dict(df.attrs["manifest"]))
    assert any("label_model" in p for p in validate(tmp_path / "bad.parquet"))


def test_compare_labels_pairs_faces_and_scores_them(wflw, tmp_path):
    df = wflw.head(20)
    faces = _faces(df)
    rng = np.random.default_rng(0)
    for f in faces:  # a model 2 pixels off on every point
        f.points = f.points + rng.normal(0, 2.0, f.points.shape)
    out = write_machine_labels(faces[:15], tmp_path / "m.parquet", model="noisy")  # 5 faces not found
    r = compare_labels(lu.read_manifest(out), df)
    assert (r["faces"], r["matched"], r["missed"]) == (20, 15, 5)
    iod = np.linalg.norm(lu.landmarks_array(df)[:15, 60] - lu.landmarks_array(df)[:15, 72], axis=-1)
    expected = (2.0 * np.sqrt(np.pi / 2) / iod).mean()  # mean of a 2D Gaussian's norm, over the eye distance
    assert r["nme_mean"] == pytest.approx(expected, rel=0.15)
    assert np.isnan(r["nme"][15:]).all()
    same = compare_labels(df, df)
    assert same["matched"] == 20 and same["nme_mean"] == 0.0


def test_images_outside_the_root_are_refused(wflw, tmp_path):
    with pytest.raises(LandmarkUnifyError, match="not under the source root"):
        write_machine_labels(_faces(wflw.head(1)), tmp_path / "m.parquet", model="x", root=tmp_path)
