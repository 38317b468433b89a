"""Readers without surprises, on the real samples: hrnet-csv reads no face twice and says which files it
read; a COCO file whose coordinates look 1-based gets a note naming the option."""
from __future__ import annotations

import json

import numpy as np
import pytest

from landmark_unify.cli import main
from landmark_unify.manifest import landmarks_array, read_manifest, read_metadata
from landmark_unify.ops.build import build_manifest
from landmark_unify.readers import parse_source, source_notes
from landmark_unify.readers.coco import looks_one_based


def test_hrnet_csv_reads_no_face_twice_and_says_which_files(shared_data, tmp_path, capsys):
    out = tmp_path / "h.parquet"
    assert main(["build-manifest", "-o", str(out), "-q", "--source", f"hrnet-csv={shared_data / '300W_hrnet_csv'}"]) == 0
    text = capsys.readouterr().out
    df = read_manifest(out)
    # valid = valid_common + valid_challenge: read once, under the finer splits
    assert df["split"].value_counts().to_dict() == {"test": 600, "valid_common": 554, "valid_challenge": 135}
    lm = landmarks_array(df).reshape(len(df), -1)
    assert len(np.unique(lm, axis=0)) == len(df) == 1289
    notes = read_metadata(out)["reader_notes"]["hrnet-csv"]
    assert notes[0] == ("read 3 CSV file(s): face_landmarks_300w_test.csv, face_landmarks_300w_valid_challenge.csv, "
                        "face_landmarks_300w_valid_common.csv")
    assert notes[1].startswith("left out face_landmarks_300w_valid.csv: it holds the faces of valid_common + "
                               "valid_challenge again")
    assert "reader notes:" in text and f"hrnet-csv: {notes[1]}" in text
    # option splits reads exactly the named files
    src = parse_source(f"hrnet-csv[splits=valid+test]={shared_data / '300W_hrnet_csv'}")
    assert source_notes(src) == ["read 2 CSV file(s): face_landmarks_300w_test.csv, face_landmarks_300w_valid.csv"]
    build_manifest([src], tmp_path / "v.parquet", progress=False)
    assert read_manifest(tmp_path / "v.parquet")["split"].value_counts().to_dict() == {"valid": 689, "test": 600}


def test_one_based_coco_gets_a_note_naming_the_option(shared_data, tmp_path):
    """MMPose's 300W fixture holds the raw .pts values of two 300W faces that are also in the shared 300W
    folder: read with the default offset 0 it lands 1 px off and is flagged; with offset=1 it agrees
    with the .pts reader exactly and is not."""
    mm = shared_data / "mmpose_tests/300w"
    plain = parse_source(f"mm:coco={mm}")
    (note,) = source_notes(plain)
    assert note.startswith("test_300w.json: coordinates look 1-based (68 iBUG points in each of its 2 faces")
    assert "--source mm:coco[offset=1]=ROOT" in note
    fixed = parse_source(f"mm:coco[offset=1]={mm}")
    assert source_notes(fixed) == []

    build_manifest([fixed], tmp_path / "c.parquet", progress=False)
    build_manifest([f"ibug={shared_data / '300W/01_Indoor'}"], tmp_path / "p.parquet", progress=False)
    c, p = read_manifest(tmp_path / "c.parquet"), read_manifest(tmp_path / "p.parquet")
    names = lambda df: [s.rsplit("/", 1)[-1] for s in df["image_path"]]  # noqa: E731
    order = [names(c).index(n) for n in names(p)]
    np.testing.assert_array_equal(landmarks_array(c)[order], landmarks_array(p))
    build_manifest([plain], tmp_path / "off.parquet", progress=False)
    off = landmarks_array(read_manifest(tmp_path / "off.parquet"))[order] - landmarks_array(p)
    assert np.nanmax(np.abs(off - 1)) < 1e-4  # the default reads it 1 px off
    assert read_metadata(tmp_path / "off.parquet")["reader_notes"] == {"mm": [note]}


@pytest.mark.parametrize("name", ["wflw", "lapa", "cofw", "aflw", "coco_wholebody"])
def test_zero_based_fixtures_are_not_flagged(shared_data, name):
    doc = json.loads(next((shared_data / "mmpose_tests" / name).glob("*.json")).read_text())
    assert looks_one_based(doc) is None


def test_the_image_edge_test():
    def doc(xs):
        kp = [v for x in xs for v in (x, 10.0, 2)]
        return {"images": [{"id": 1, "width": 100, "height": 80}],
                "annotations": [{"image_id": 1, "keypoints": kp}]}

    assert "half pixel past the right or bottom edge" in looks_one_based(doc([5.0, 99.7]))
    assert looks_one_based(doc([0.2, 99.7])) is None  # a point below 0.5: a 1-based file has none there
    assert looks_one_based(doc([5.0, 99.4])) is None


def test_our_own_export_is_not_flagged(shared_data, tmp_path):
    from landmark_unify.ops.export import coco_document

    build_manifest([f"ibug={shared_data / '300W'}", f"lapa={shared_data / 'LaPa'}"], tmp_path / "m.parquet",
                   progress=False)
    doc, _ = coco_document(read_manifest(tmp_path / "m.parquet"))
    assert looks_one_based(doc) is None
