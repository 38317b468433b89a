"""The landmark models pfpld_train offers to ``landmark_unify audit --model`` (entry point
``landmark_unify.landmark_models``): a reference ONNX model with its preset predicts real WFLW faces."""
from __future__ import annotations

import configparser

import numpy as np
import pytest

import landmark_unify as lu
from landmark_unify.errors import LandmarkUnifyError
from landmark_unify.ops.audit import MODEL_GROUP, check_model_layout, model_points
from pfpld_train.inference.audit import load_audit_model

GHOSTONE = "reference_models/pfld_ghostone/PFLD_GhostOne_112_1_opt_sim.onnx"


def test_entry_point_is_declared(repo_root):
    cfg = configparser.ConfigParser()
    cfg.read(repo_root / "setup.cfg")
    eps = cfg["options.entry_points"][MODEL_GROUP]
    assert "pfpld_train.inference.audit:load_audit_model" in eps


@pytest.fixture(scope="module")
def wflw_with_photos(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit_model") / "wflw.parquet"
    lu.build_manifest([f"wflw={shared_data / 'WFLW'}"], out, progress=False)
    df = lu.read_manifest(out)
    paths = lu.image_paths(df)
    keep = [i for i, p in enumerate(paths) if p is not None and p.is_file()][:6]
    return df.iloc[keep].reset_index(drop=True), [paths[i] for i in keep]


def test_onnx_with_preset_predicts_the_labelled_faces(shared_data, wflw_with_photos):
    df, paths = wflw_with_photos
    model = load_audit_model(f"{shared_data / GHOSTONE}@pfld_ghostone")
    check_model_layout(model, "ghostone")
    assert model.schema == "wflw98"
    pts = lu.landmarks_array(df).astype(np.float64)
    boxes = lu.manifest.bbox_array(df)
    nme = []
    for i, p in enumerate(paths):
        pred = model_points(model, "ghostone", p, boxes[i:i + 1])
        assert pred.shape == (1, 98, 2)
        iod = np.linalg.norm(pts[i, 60] - pts[i, 72])
        nme.append(np.linalg.norm(pred[0] - pts[i], axis=-1).mean() / iod)
    # the model agrees with the labels (about 5.6 % mean NME over the 303 faces with photos, FACTS 8; these six
    # include hard ones), and a face shifted by 0.3 IOD would be far off
    assert np.median(nme) < 0.15


def test_unknown_preset_and_missing_image(shared_data, tmp_path):
    with pytest.raises(LandmarkUnifyError, match="unknown preset"):
        load_audit_model(f"{shared_data / GHOSTONE}@nope")
    model = load_audit_model(f"{shared_data / GHOSTONE}@pfld_ghostone")
    with pytest.raises(LandmarkUnifyError):
        model.predict_file(tmp_path / "missing.jpg", np.array([[0, 0, 10, 10]]))
