"""Merging manifests: per-source weights, duplicates by sample_id and by image content + landmarks."""
from __future__ import annotations

import shutil

import pytest

import landmark_unify as lu
from landmark_unify.errors import ManifestError
from landmark_unify.ops.build import build_manifest
from landmark_unify.ops.merge import merge_manifests, parse_weights


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("merge")
    out = {}
    for spec in ("wflw=WFLW", "lapa=LaPa", "aflw2000=AFLW2000"):
        label = spec.split("=")[0]
        root = shared_data / spec.split("=")[1]
        out[label] = build_manifest([f"{label}={root}"], d / f"{label}.parquet", progress=False).out
    # LaPa again from a copy of its folder: same image bytes at other paths; one face moved far away
    copy = d / "lapa_copy"
    shutil.copytree(shared_data / "LaPa", copy)
    txt = sorted((copy / "test/landmarks").glob("*.txt"))[1]
    lines = txt.read_text().splitlines()
    moved = [lines[0]] + [" ".join(str(float(v) + 300.0) for v in ln.split()) for ln in lines[1:]]
    txt.write_text("\n".join(moved) + "\n")
    out["lapa2"] = build_manifest([f"lapa2:lapa={copy}"], d / "lapa2.parquet", progress=False).out
    out["dir"] = d
    return out


def test_merge_with_weights(built, tmp_path):
    from landmark_unify.cli import main

    out = tmp_path / "m" / "merged.parquet"
    rc = main(["merge", str(built["wflw"]), str(built["lapa"]), str(built["aflw2000"]), "-o", str(out),
               "--weight", "lapa=4", "--weight", "aflw2000=0.5", "--no-progress"])
    assert rc == 0 and lu.validate_manifest(out) == []
    df = lu.read_manifest(out)
    assert df["source"].value_counts().to_dict() == {"wflw": 1966, "lapa": 2, "aflw2000": 16}
    w = df.groupby("source")["weight"].unique()
    assert [list(w[s]) for s in ("wflw", "lapa", "aflw2000")] == [[1.0], [4.0], [0.5]]
    meta = df.attrs["manifest"]
    assert meta["source_weights"] == {"aflw2000": 0.5, "lapa": 4.0, "wflw": 1.0}
    assert set(meta["source_roots"]) == {"wflw", "lapa", "aflw2000"}
    assert all(p.exists() for p in lu.image_paths(df[df["source"] != "wflw"]))
    assert not (tmp_path / "m" / "merged.duplicates.jsonl").exists()


def test_the_same_manifest_twice_is_merged_once(built):
    report = merge_manifests([built["lapa"], built["wflw"], built["lapa"]], built["dir"] / "x.parquet", progress=False)
    df = lu.read_manifest(built["dir"] / "x.parquet")
    assert len(df) == 1968 and df["sample_id"].is_unique
    assert len(report.duplicates) == 2 and {d["reason"] for d in report.duplicates} == {"sample_id"}
    assert report.summary.splitlines()[-1] == "duplicates dropped: 2 (2 by sample_id)"


def test_duplicates_by_image_content_and_landmarks(built, tmp_path):
    from landmark_unify.ops.merge import merge_manifests

    out = tmp_path / "dup.parquet"
    report = merge_manifests([built["lapa"], built["lapa2"]], out)
    df = lu.read_manifest(out)
    # one copy has the same image bytes and the same points: dropped; the moved face is another face
    assert report.rows_out == {"lapa": 2, "lapa2": 1}
    assert [d["reason"] for d in report.duplicates] == ["image content and landmarks"]
    assert report.duplicates[0]["kept"]["source"] == "lapa"
    assert (tmp_path / "dup.duplicates.jsonl").read_text().count("\n") == 1
    assert len(df) == 3
    # without hashing images, nothing ties the copies together
    rep2 = merge_manifests([built["lapa"], built["lapa2"]], tmp_path / "nohash.parquet", hash_images=False)
    df2 = lu.read_manifest(tmp_path / "nohash.parquet")
    assert len(df2) == 4 and not rep2.duplicates


def test_faces_sharing_an_image_are_kept(built, tmp_path):
    # WFLW has several faces on some images: merging must not collapse them
    df = lu.read_manifest(built["wflw"])
    assert df["image_path"].duplicated().any()
    report = merge_manifests([built["wflw"]], tmp_path / "w.parquet")
    merged = lu.read_manifest(tmp_path / "w.parquet")
    assert len(merged) == len(df) and not report.duplicates


def test_a_source_label_with_two_roots_is_an_error(built, tmp_path):
    other = build_manifest([f"lapa={built['dir'] / 'lapa_copy'}"], tmp_path / "l.parquet", progress=False).out
    with pytest.raises(ManifestError, match="root"):
        merge_manifests([built["lapa"], other], tmp_path / "x.parquet")


def test_bad_weights():
    assert parse_weights(["a=1", "b=0.25"]) == {"a": 1.0, "b": 0.25}
    for bad in (["a"], ["a=x"], ["a=-1"], ["=2"], ["a=nan"]):
        with pytest.raises(ManifestError):
            parse_weights(bad)


def test_weight_for_an_unknown_source(built, tmp_path):
    with pytest.raises(ManifestError, match="no input holds"):
        merge_manifests([built["lapa"]], tmp_path / "x.parquet", ["nope=2"])
    assert not (tmp_path / "x.parquet").exists()
