"""Machine labels for photos: the label command with a real ONNX model on real faces (through both CLIs),
the pose of 3D points, and the face-alignment plumbing on randomly initialised networks."""
from __future__ import annotations

import numpy as np
import pytest

import landmark_unify as lu
from landmark_unify.manifest import validate
from landmark_unify.ops.build import build_manifest
from pfpld_train.inference.label import (
    FAN_FILES,
    LabelError,
    fan_weight_paths,
    find_images,
    load_labeller,
    pose_from_points3d,
)

GHOSTONE = "reference_models/pfld_ghostone/PFLD_GhostOne_112_1_opt_sim.onnx"


@pytest.fixture(scope="module")
def few_wflw(shared_data, tmp_path_factory):
    """Twelve WFLW photos with one or two annotated faces, and the manifest of their annotations."""
    tmp = tmp_path_factory.mktemp("label")
    build_manifest([f"wflw={shared_data / 'WFLW'}"], tmp / "all.parquet", check_images=True, on_error="skip",
                   progress=False)
    df = lu.read_manifest(tmp / "all.parquet")
    counts = df["image_path"].value_counts()
    keep = sorted(counts[counts <= 2].index)[:12]
    truth = df[df["image_path"].isin(keep)]
    lu.write_manifest(truth, tmp / "truth.parquet", dict(df.attrs["manifest"]))
    images = sorted({str(p) for p in lu.image_paths(truth)})
    return images, tmp / "truth.parquet", len(truth)


@pytest.mark.parametrize("cli", ["pfpld_train", "landmark_unify"])
def test_label_command_writes_machine_labels(cli, few_wflw, shared_data, tmp_path, capsys):
    """The reference PFLD-GhostOne behind the bundled detector: faces found, rows marked as the model's,
    and close to the human labels. These are WFLW's hard, attribute-flagged faces: on all 303 here the
    labels score 5.9 % NME against evaluate's 5.3 % on the same faces with the ground-truth crop
    (docs/guides/curation.md); a couple of them, blurred and dark, are far off, hence the median here."""
    if cli == "pfpld_train":
        from pfpld_train.cli import main
    else:  # the same command, offered by landmark_unify through its entry point (no import of the trainer)
        from landmark_unify.cli import main
    images, truth, n_truth = few_wflw
    out = tmp_path / "labels.parquet"
    assert main(["label", *images, "-o", str(out), "--model", str(shared_data / GHOSTONE), "--preset",
                 "pfld_ghostone", "--source-label", "mine", "--compare", str(truth), "-q"]) == 0
    text = capsys.readouterr().out
    assert "machine labels of PFLD_GhostOne_112_1_opt_sim.onnx" in text and "NME mean" in text
    assert validate(out) == []
    m = lu.read_manifest(out)
    assert len(m) >= n_truth and set(m["source"]) == {"mine"}
    assert set(m["label_source"]) == {"machine"} and set(m["label_model"]) == {"PFLD_GhostOne_112_1_opt_sim.onnx"}
    assert set(m["pose_source"]) <= {"fit", None}  # this model has no pose output: the landmark fit
    assert lu.valid_array(m).all() and m.attrs["manifest"]["machine_labels"]["images"] == len(images)
    from landmark_unify.ops.label import compare_labels

    r = compare_labels(m, lu.read_manifest(truth))
    assert r["matched"] >= n_truth - 1 and r["nme_median"] < 0.06, r


def test_label_refuses_what_it_cannot_use(tmp_path, capsys):
    from pfpld_train.cli import main

    assert main(["label", str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "x.parquet"), "--model", "fan2d"]) == 1
    assert "no such image or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert find_images([tmp_path / "empty"]) == []


def test_pose_from_3d_points_recovers_the_rotation():
    """Points of the shipped 3D face turned by known angles and seen as image x, y (down) and depth come
    back as those angles (the project's convention), whichever way the depth points."""
    from landmark_unify.core.maps import from_canonical
    from landmark_unify.core.pose import matrix_from_euler
    from landmark_unify.face_models import load_face_model

    model = load_face_model()
    angles = np.array([[10.0, -35.0, 5.0], [-20.0, 50.0, -10.0], [0.0, 0.0, 0.0]])
    pts = []
    for a in angles:
        cam = 80.0 * model.points @ matrix_from_euler(a[None])[0]  # rows: (R^T X)^T, x right, y up, z at camera
        pts.append(np.stack([200 + cam[:, 0], 150 - cam[:, 1], cam[:, 2]], 1))
    p98 = np.stack(pts)
    xy, _ = from_canonical(p98[..., :2], "ibug68_3d")
    z, _ = from_canonical(np.stack([p98[..., 2], np.zeros_like(p98[..., 2])], -1), "ibug68_3d")
    p68 = np.concatenate([xy, z[..., :1]], -1)
    np.testing.assert_allclose(pose_from_points3d(p68, "ibug68_3d"), angles, atol=1.0)
    p68[..., 2] *= -1  # depth away from the camera
    np.testing.assert_allclose(pose_from_points3d(p68, "ibug68_3d"), angles, atol=1.0)


def test_fan_weights_are_never_downloaded(tmp_path):
    with pytest.raises(LabelError) as err:
        fan_weight_paths("fan3d", tmp_path)
    for name in FAN_FILES["fan3d"]:
        assert name in str(err.value)
    assert str(tmp_path) in str(err.value) and "--fan-weights" in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fan2d", "fan3d"])
def test_fan_plumbing_with_random_networks(kind, shared_data, tmp_path, monkeypatch):
    """face-alignment's FAN runs on our detector's boxes and its points reach the manifest. The networks
    are RANDOMLY INITIALISED and saved under the real file names (the real weights are downloaded at run
    time by face-alignment, which cannot happen here), made small so the test is quick: this checks the
    plumbing (loading, crop, heatmap decoding, depth, pose, layout map), not the accuracy."""
    fa = pytest.importorskip("face_alignment", reason="the optional face-alignment package is not installed "
                                                      "(pip install -e \".[face-alignment]\")")
    import torch
    from face_alignment import models

    from pfpld_train.cli import main

    fan, depth = models.FAN, models.ResNetDepth
    small_fan, small_depth = (lambda n=4: fan(1)), (lambda: depth(layers=[1, 1, 1, 1]))
    monkeypatch.setattr(models, "FAN", small_fan)
    monkeypatch.setattr(models, "ResNetDepth", small_depth)
    torch.manual_seed(0)
    torch.save(small_fan().state_dict(), tmp_path / FAN_FILES[kind][0])
    if kind == "fan3d":
        torch.save({"state_dict": small_depth().state_dict()}, tmp_path / FAN_FILES[kind][1])
    lab = load_labeller(kind, weights_dir=tmp_path)
    assert lab.name == f"face-alignment {fa.__version__} {FAN_FILES[kind][0].split('-')[0]}"
    out = tmp_path / "fan.parquet"
    image = shared_data / "upstream_pfpld" / "test.jpg"
    assert main(["label", str(image), "-o", str(out), "--model", kind, "--fan-weights", str(tmp_path), "-q"]) == 0
    m = lu.read_manifest(out)
    assert len(m) == 1 and m.loc[0, "label_source"] == "machine" and m.loc[0, "label_model"] == lab.name
    assert m.loc[0, "source_schema"] == ("ibug68" if kind == "fan2d" else "ibug68_3d")
    assert m.loc[0, "pose_source"] == ("fit" if kind == "fan2d" else "model")  # fan3d: from its 3D points
    assert validate(out) == []


def test_label_reports_a_truncated_image(shared_data, tmp_path, capsys):
    """label reads through the one image reader: a truncated photo is named; exit 1 under --on-error raise,
    counted as unreadable in the summary under skip."""
    from pfpld_train.cli import main

    good = shared_data / "upstream_pfpld" / "test.jpg"
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:20000])
    out = tmp_path / "l.parquet"
    args = ["label", str(good), str(cut), "-o", str(out), "--model", str(shared_data / GHOSTONE), "--preset",
            "pfld_ghostone", "-q"]
    assert main(args) == 1
    assert f"{cut}: truncated JPEG" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert f"skipped: {cut}: truncated JPEG" in captured.err and "1 unreadable" in captured.out
    assert lu.read_manifest(out).attrs["manifest"]["machine_labels"]["images_unreadable"] == 1
