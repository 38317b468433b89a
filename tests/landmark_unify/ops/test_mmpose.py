"""The COCO export in MMPose (1.x), where MMPose is installed (not in the dev extra: the recipe is in
docs/guides/ecosystem.md): WFLWDataset reads the file, its flip indices are ours, the top-down training
pipeline runs on a real face, and 68-point faces carry weights on their 43 valid points only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import landmark_unify as lu

pytest.importorskip("mmpose", reason="MMPose is not installed (optional; recipe in docs/guides/ecosystem.md)")


def _dataset(ann: Path):
    from mmpose.datasets import WFLWDataset

    return WFLWDataset(ann_file=str(ann), data_root="", data_mode="topdown", data_prefix=dict(img=""), pipeline=[])


@pytest.fixture(scope="module")
def exported(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mmpose")
    out = {}
    for kind, root in (("wflw", shared_data / "WFLW"), ("ibug", shared_data / "300W")):
        man = tmp / f"{kind}.parquet"
        lu.build_manifest([f"{kind}={root}"], man, progress=False)
        out[kind] = (lu.read_manifest(man), tmp / f"{kind}.json")
        lu.export_coco(out[kind][0], out[kind][1])
    return out


def test_wflw_dataset_reads_the_export_with_our_flip_indices(exported):
    df, ann = exported["wflw"]
    ds = _dataset(ann)
    assert len(ds) == len(df)
    assert list(ds.metainfo["flip_indices"]) == lu.get_layout("wflw98").flip_indices.tolist()
    first = ds[0]
    np.testing.assert_allclose(first["keypoints"][0], lu.landmarks_array(df)[0], atol=1e-3)


def test_topdown_training_pipeline_runs_on_a_real_face(exported):
    from mmpose.datasets.transforms import (
        GenerateTarget,
        GetBBoxCenterScale,
        LoadImage,
        PackPoseInputs,
        RandomFlip,
        TopdownAffine,
    )

    _, ann = exported["wflw"]
    ds = _dataset(ann)
    idx = next(i for i in range(len(ds)) if Path(ds.get_data_info(i)["img_path"]).is_file())
    steps = [LoadImage(), GetBBoxCenterScale(), RandomFlip(direction="horizontal"), TopdownAffine(input_size=(256, 256)),
             GenerateTarget(encoder=dict(type="MSRAHeatmap", input_size=(256, 256), heatmap_size=(64, 64), sigma=2)),
             PackPoseInputs()]
    r = ds.get_data_info(idx)
    for step in steps:
        r = step(r)
    assert tuple(r["inputs"].shape) == (3, 256, 256)
    assert r["data_samples"].gt_instances.keypoints.shape == (1, 98, 2)


def test_68_point_faces_weigh_only_their_valid_points(exported):
    from mmpose.datasets.transforms import GenerateTarget, GetBBoxCenterScale, TopdownAffine

    df, ann = exported["ibug"]
    ds = _dataset(ann)
    valid = lu.valid_array(df)
    assert (valid.sum(1) == 43).all()  # strict policy: the 43 exact points of a 68-point face
    for i in range(len(ds)):
        r = ds.get_data_info(i)
        np.testing.assert_array_equal(r["keypoints_visible"][0] > 0, valid[i])
        r["img"] = np.zeros((int(r["bbox"][0, 3]) + 10, int(r["bbox"][0, 2]) + 10, 3), np.uint8)
        r["img_shape"] = r["img"].shape[:2]
        for step in (GetBBoxCenterScale(), TopdownAffine(input_size=(256, 256)),
                     GenerateTarget(encoder=dict(type="MSRAHeatmap", input_size=(256, 256), heatmap_size=(64, 64),
                                                 sigma=2))):
            r = step(r)
        assert int((r["keypoint_weights"][0] > 0).sum()) == 43
