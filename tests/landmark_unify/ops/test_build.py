"""build_manifest end to end on the real samples: counts, coordinates, flags, determinism, units."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import landmark_unify as lu
from landmark_unify.manifest import SCHEMA, landmarks_array, read_manifest, valid_array, validate_manifest
from landmark_unify.ops.build import build_manifest, plan_units, process_unit, skipped_path_for

LAPA_DROPPED = [55, 56, 57, 63, 64, 65, 74, 83]
FLAGS = {"largepose": "attr_pose", "expression": "attr_expression", "illumination": "attr_illumination",
         "makeup": "attr_makeup", "occlusion": "attr_occlusion", "blur": "attr_blur"}


@pytest.fixture(scope="module")
def wflw_manifest(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("wflw") / "wflw.parquet"
    report = build_manifest([f"wflw={shared_data / 'WFLW'}"], out, command="test", progress=False)
    return out, report


def test_wflw_gives_1966_faces_equal_to_the_source(shared_data, wflw_manifest):
    out, report = wflw_manifest
    assert report.num_faces == 1966 and report.faces_per_source == {"wflw": 1966} and not report.skipped
    assert validate_manifest(out) == []
    df = read_manifest(out)
    lm = landmarks_array(df)
    assert valid_array(df).all()
    lists = sorted((shared_data / "WFLW/WFLW_annotations/list_98pt_test").glob("list_98pt_test_*.txt"))
    member: dict[tuple, set] = {}
    for p in lists:
        for ln in p.read_text().splitlines():
            tok = ln.split()
            member.setdefault((tok[-1], tuple(tok[:196])), set()).add(p.stem.split("_")[-1])
    cache = {}
    for i, row in enumerate(df.itertuples()):
        path = shared_data / "WFLW" / row.origin_file
        text = cache.setdefault(path, path.read_text().splitlines())
        tok = text[row.origin_line - 1].split()
        np.testing.assert_array_equal(lm[i].ravel(), np.array(tok[:196], dtype=np.float64).astype(np.float32))
        listed = member[(tok[-1], tuple(tok[:196]))]
        for name, col in FLAGS.items():
            assert bool(getattr(row, col)) == (name in listed)
    assert df["sample_id"].is_unique
    assert df["eye_state"].notna().all() and df["ear_left"].notna().all()
    assert (df["bbox_source"] == "landmarks").all() and df["pose_source"].isna().all()


def test_rebuild_is_byte_identical(shared_data, wflw_manifest, tmp_path):
    out, _ = wflw_manifest
    again = tmp_path / "again.parquet"
    build_manifest([f"wflw={shared_data / 'WFLW'}"], again, command="test", progress=False)
    assert again.read_bytes() == out.read_bytes()
    assert pq.read_table(again).equals(pq.read_table(out))


def test_lapa_keeps_98_of_106(shared_data, tmp_path):
    out = tmp_path / "lapa.parquet"
    build_manifest([f"lapa={shared_data / 'LaPa'}"], out, progress=False)
    df = read_manifest(out)
    lm = landmarks_array(df)
    for i, f in enumerate(df["origin_file"]):
        src = np.loadtxt(shared_data / "LaPa" / f, skiprows=1)
        np.testing.assert_array_equal(lm[i], np.delete(src, LAPA_DROPPED, axis=0).astype(np.float32))
    assert valid_array(df).all()


@pytest.mark.parametrize("policy", ["strict", "extended"])
def test_300w_is_file_minus_one_and_strict_has_43_points(shared_data, tmp_path, policy):
    out = tmp_path / "300w.parquet"
    build_manifest([f"ibug={shared_data / '300W'}"], out, policy=policy, progress=False)
    df = read_manifest(out)
    lm, valid = landmarks_array(df), valid_array(df)
    if policy == "strict":
        assert (valid.sum(1) == 43).all()
    else:
        assert (valid.sum(1) > 43).all()
    for i, f in enumerate(df["origin_file"]):
        body = (shared_data / "300W" / f).read_text().split("{")[1].split("}")[0]
        pts68 = np.array(body.split(), float).reshape(68, 2) - 1
        # every valid canonical point that is a single source point equals that point
        back, back_valid = lu.from_canonical(lm[i], "ibug68", policy="strict", valid98=valid[i])
        np.testing.assert_allclose(back[back_valid], pts68[back_valid].astype(np.float32), rtol=0, atol=1e-4)
        again, again_valid = lu.to_canonical(back, "ibug68", policy="strict")
        if policy == "strict":
            assert np.array_equal(again_valid, valid[i])
            np.testing.assert_array_equal(again[valid[i]], lm[i][valid[i]])


def test_dataset_pose_in_degrees(shared_data, tmp_path):
    from scipy.io import loadmat

    out = tmp_path / "pose.parquet"
    build_manifest([f"300wlp={shared_data / '300W_LP'}", f"aflw2000={shared_data / 'AFLW2000'}"], out, progress=False)
    df = read_manifest(out)
    assert len(df) == 17 and (df["pose_source"] == "dataset").all()
    for row in df.itertuples():
        m = loadmat(shared_data / ("300W_LP" if row.source == "300wlp" else "AFLW2000") / row.origin_file)
        expect = np.degrees(m["Pose_Para"][0, :3].astype(np.float64)).astype(np.float32)
        np.testing.assert_allclose([row.pitch, row.yaw, row.roll], expect, rtol=1e-6)
    assert (df["source_schema"] == "ibug68_3d").all()
    contour = lu.get_layout("wflw98").group_indices("contour")
    assert not valid_array(df)[:, contour].any()  # projected jaw: invalid by default


def test_units_are_deterministic_and_processing_is_pure(shared_data):
    sources = [f"ibug={shared_data / '300W'}", f"c:coco={shared_data / 'mmpose_tests/cofw'}"]
    a, b = plan_units(sources), plan_units(sources)
    assert a == b and [u.source for u in a] == ["ibug", "c"]
    t1, s1 = process_unit(a[0], "extended", "raise", False)
    t2, s2 = process_unit(a[0], "extended", "raise", False)
    assert _ipc_bytes(t1) == _ipc_bytes(t2) and s1 == s2 == [] and t1.num_rows == 7
    assert t1.schema.equals(SCHEMA, check_metadata=False)


def _ipc_bytes(table) -> bytes:
    """Tables compared byte for byte (``Table.equals`` treats NaN as unequal)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table.combine_chunks())
    return sink.getvalue().to_pybytes()


def test_check_images_fills_sizes_and_summary_lists_sources(repo_root, tmp_path):
    demo = repo_root / "landmark_unify/demo_data"
    out = tmp_path / "demo.parquet"
    report = build_manifest([f"ibug={demo / '300W'}", f"coco={demo / 'mmpose/wflw'}"], out, check_images=True, progress=False)
    df = read_manifest(out)
    assert report.num_faces == 9 and df["image_width"].notna().all()
    import cv2

    for p, w, h in zip(lu.image_paths(df), df["image_width"], df["image_height"]):
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img.shape[:2] == (h, w)
    assert "faces per source" in report.summary and "coverage" in report.summary
    assert not skipped_path_for(out).exists()
    meta = df.attrs["manifest"]
    assert set(meta["source_roots"]) == {"ibug", "coco"} and meta["policy"] == "strict"


def test_chunking_does_not_change_the_manifest_and_bad_lines_are_located(shared_data, tmp_path):
    """A rect_attr list cut into many byte ranges: same rows as one range; corrupt lines in two ranges are
    skipped with their own line numbers while the rest of each range goes through."""
    src = (shared_data / "WFLW/WFLW_annotations/list_98pt_test/list_98pt_test_makeup.txt").read_text().splitlines()
    rows = [ln.split() for ln in src[:150]]
    lines = [" ".join(t[:196] + ["1", "2", "300", "400", "0", "1", "0", "1", "0", "0", t[196]]) for t in rows]
    root = tmp_path / "WFLW"
    path = root / "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n")
    one = build_manifest([f"wflw={root}"], tmp_path / "one.parquet", progress=False)
    many = build_manifest([f"wflw={root}"], tmp_path / "many.parquet", chunk_bytes=20_000, progress=False)
    assert many.units > 10 and one.units == 1
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "many.parquet").read_bytes()
    df = read_manifest(tmp_path / "one.parquet")
    assert df["origin_line"].tolist() == list(range(1, 151)) and (df["split"] == "train").all()
    assert (df["bbox_source"] == "given").all() and df["attr_expression"].all() and not df["attr_pose"].any()

    bad = list(lines)
    bad[20] = bad[20].replace(rows[20][5], "x5x", 1)
    bad[120] = " ".join(bad[120].split()[:-3])
    path.write_text("\n".join(bad) + "\n")
    rep = build_manifest([f"wflw={root}"], tmp_path / "skip.parquet", on_error="skip", chunk_bytes=20_000, progress=False)
    assert rep.num_faces == 148
    assert [(r["line"], r["field"]) for r in rep.skipped] == [(21, "y2"), (121, "attr_occlusion")]
    got = read_manifest(tmp_path / "skip.parquet")
    assert got["origin_line"].tolist() == [i for i in range(1, 151) if i not in (21, 121)]
    assert set(got["sample_id"]) <= set(df["sample_id"])


def test_per_source_weights_by_label_or_kind(shared_data, tmp_path, capsys):
    from landmark_unify.cli import main
    from landmark_unify.errors import LandmarkUnifyError

    out = tmp_path / "w.parquet"
    rc = main(["build-manifest", "-o", str(out), "--source", f"ibug={shared_data / '300W'}",
               "--source", f"lp:lapa={shared_data / 'LaPa'}", "--weight", "lapa=2.5", "--no-progress"])
    assert rc == 0
    assert "weight 2.5" in capsys.readouterr().out
    df = read_manifest(out)
    assert validate_manifest(out) == []
    assert df.groupby("source")["weight"].unique().map(list).to_dict() == {"ibug": [1.0], "lp": [2.5]}
    assert df.attrs["manifest"]["source_weights"] == {"ibug": 1.0, "lp": 2.5}
    assert pq.read_schema(out).field("weight").nullable is False
    # a label beats its kind; without --weight the column stays 1 and the metadata has no weights
    build_manifest([f"ibug={shared_data / '300W'}", f"lp:lapa={shared_data / 'LaPa'}"], out,
                   weights={"lapa": 2.0, "lp": 3.0}, progress=False)
    assert set(read_manifest(out).query("source == 'lp'")["weight"]) == {3.0}
    build_manifest([f"ibug={shared_data / '300W'}"], out, progress=False)
    assert (read_manifest(out)["weight"] == 1.0).all() and "source_weights" not in read_manifest(out).attrs["manifest"]
    for bad, match in [(["wflw=2"], "not sources of this build"), (["ibug=-1"], ">= 0"), (["ibug"], "SOURCE=WEIGHT")]:
        with pytest.raises(LandmarkUnifyError, match=match):
            build_manifest([f"ibug={shared_data / '300W'}"], tmp_path / "bad.parquet", weights=bad, progress=False)
    assert not list(tmp_path.glob("bad*"))
    # weights work on every engine: a dataset output on the local engine carries the same weights
    build_manifest([f"ibug={shared_data / '300W'}", f"lp:lapa={shared_data / 'LaPa'}"], tmp_path / "w_ds",
                   weights={"lapa": 2.0, "lp": 3.0}, progress=False)
    assert set(read_manifest(tmp_path / "w_ds").query("source == 'lp'")["weight"]) == {3.0}


def test_sample_ids_are_make_sample_id_for_lists_and_arrow_columns():
    """The build's batched ids (one SHA-1 a face, hex written at once) are make_sample_id's, for lists
    and Arrow columns (sliced too), one split or several, any UTF-8 identity."""
    import random

    import pyarrow as pa

    from landmark_unify.manifest import make_sample_id
    from landmark_unify.ops.build import sample_id_array, sample_ids
    from landmark_unify.readers import ArrowColumn

    rng = random.Random(1)
    idents = ["".join(rng.choice("ab:/é漢 0") for _ in range(rng.randint(0, 30))) for _ in range(300)]
    splits = [rng.choice(["train", "test", "x"]) for _ in idents]
    want = [make_sample_id("src", s, k) for s, k in zip(splits, idents)]
    assert sample_ids("src", splits, idents) == want
    got = sample_id_array("src", ArrowColumn(pa.array(splits)), ArrowColumn(pa.array(idents)))
    assert got.to_pylist() == want
    assert sample_id_array("src", splits[100:], ArrowColumn(pa.array(idents).slice(100))).to_pylist() == want[100:]
    assert sample_ids("src", ["t"] * 3, idents[:3]) == [make_sample_id("src", "t", k) for k in idents[:3]]
