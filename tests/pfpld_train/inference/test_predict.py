"""Prediction: the bundled RetinaFace detector, box and detector pipelines, JSON and overlays."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pfpld_support import (
    single_thread,  # noqa: F401 (autouse: one torch/OpenCV thread)
    write_wflw_manifest,
)

from landmark_unify.images import read_image
from landmark_unify.manifest import image_paths, landmarks_array, read_manifest
from pfpld_train.cli import main
from pfpld_train.evaluation.evaluate import load_model
from pfpld_train.evaluation.metrics import nme
from pfpld_train.inference.predict import DETECTOR_DIR, RetinaFaceDetector, draw_overlay, pose_axes, predict_image
from pfpld_train.models.checkpoint import save_checkpoint
from pfpld_train.models.pfpld import PFPLD

GHOSTONE = ["--channel-order", "bgr", "--mean", "127.5", "--scale", str(1 / 127.5)]


def test_detector_is_bundled_with_its_licence():
    for name in ("mnet.prototxt", "mnet.caffemodel", "LICENSE"):
        assert (DETECTOR_DIR / name).is_file()
    assert "BSD 2-Clause" in (DETECTOR_DIR / "LICENSE").read_text()


def test_detector_finds_the_faces_of_a_group_photo(shared_data):
    img = read_image(shared_data / "upstream_pfpld" / "sample.jpg")
    boxes, scores, kps = RetinaFaceDetector().detect(img)
    assert len(boxes) == 8 and (scores > 0.9).all() and np.all(np.diff(scores) <= 0)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert ((w > 60) & (w < 250) & (h > 60) & (h < 250)).all()
    # The five keypoints (eyes, nose, mouth corners) lie inside their box, left eye left of the right eye.
    inside = (kps[..., 0] >= boxes[:, None, 0]) & (kps[..., 0] <= boxes[:, None, 2])
    assert inside.all() and (kps[:, 0, 0] < kps[:, 1, 0]).all()
    assert len(RetinaFaceDetector(threshold=0.999).detect(np.zeros((200, 300, 3), np.uint8))[0]) == 0


def test_detector_pipeline_matches_ground_truth_crops(shared_data, tmp_path):
    """Detector box -> crop -> refine on the standard crop: close to scoring from ground-truth crops."""
    df = read_manifest(write_wflw_manifest(shared_data, tmp_path / "w.parquet", limit=40))
    model = load_model(shared_data / "reference_models" / "pfld_ghostone", channel_order="bgr", mean=127.5,
                       scale=1 / 127.5)
    gt = landmarks_array(df)
    det = RetinaFaceDetector()
    errors = []
    for path, pts in zip(image_paths(df)[::4], gt[::4]):
        img = read_image(path)
        faces = predict_image(model, img, detector=det, refine=1)
        if not faces:
            continue
        # The detected face whose landmarks are closest to this ground truth.
        best = min(faces, key=lambda f: np.linalg.norm(f.landmarks - pts, axis=1).mean())
        errors.append(nme(best.landmarks[None], pts[None])[0])
    assert len(errors) >= 7
    assert np.median(errors) < 0.08


def test_predict_command_with_box_and_our_checkpoint(shared_data, tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = save_checkpoint({"model": PFPLD().state_dict()}, tmp_path / "m.pt")
    image = shared_data / "upstream_pfpld" / "test.jpg"
    out = tmp_path / "out"
    assert main(["predict", str(ckpt), str(image), "-o", str(out), "--box", "330,100,520,380"]) == 0
    res = json.loads((out / "predictions.json").read_text())
    face = res[0]["faces"][0]
    assert len(face["landmarks"]) == 98 and set(face["pose"]) == {"pitch", "yaw", "roll"}
    assert face["score"] is None and (out / "test_overlay.png").is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit) as got:  # four numbers, by the option's declared type
        main(["predict", str(ckpt), str(image), "-o", str(out), "--box", "1,2,3"])
    assert got.value.code == 2 and "--box" in capsys.readouterr().err
    # Boxes per image from a JSON file, keyed by file name; an image not in it gets no face.
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"test.jpg": [[330, 100, 520, 380], [10, 10, 80, 90]]}))
    other = shared_data / "upstream_pfpld" / "sample.jpg"
    assert main(["predict", str(ckpt), str(image), str(other), "-o", str(out), "--boxes", str(boxes),
                 "--no-overlay", "--overwrite"]) == 0  # an earlier output folder is replaced only with --overwrite
    res = json.loads((out / "predictions.json").read_text())
    assert [len(r["faces"]) for r in res] == [2, 0]


def test_predict_command_with_detector_and_onnx(shared_data, tmp_path):
    out = tmp_path / "o"
    images = [str(shared_data / "upstream_pfpld" / n) for n in ("test.jpg", "sample.jpg")]
    assert main(["predict", str(shared_data / "reference_models" / "pfld_ghostone"), *images, "-o", str(out),
                 "--preset", "pfld_ghostone"]) == 0
    res = json.loads((out / "predictions.json").read_text())
    assert [len(r["faces"]) for r in res] == [1, 8]
    assert res[0]["faces"][0]["pose"] is None  # this model has no pose output
    import cv2

    overlay = cv2.imread(str(out / "sample_overlay.png"))
    h, w = res[1]["height"], res[1]["width"]
    assert overlay.shape[1] == w and overlay.shape[0] > h  # the photo, then the legend band under it
    from landmark_unify.report.colors import GROUP_COLOURS

    band = overlay[h:]
    for g in ("contour", "brow", "nose", "eye", "lip"):  # the legend names the groups in the shared colours
        assert np.all(band == GROUP_COLOURS[g], axis=-1).any(), g
    photo = overlay[:h]
    for g in ("contour", "lip"):  # and the points are drawn in them
        assert np.all(photo == GROUP_COLOURS[g], axis=-1).sum() > 20, g


def test_pose_axes_convention():
    a = pose_axes([0, 0, 0], 10)
    np.testing.assert_allclose(a, [[10, 0], [0, -10], [0, 0]], atol=1e-9)  # x right, y up, z at the camera
    # Positive yaw turns the face toward image-left: its z axis points left.
    assert pose_axes([0, 40, 0], 10)[2, 0] < 0
    # Positive pitch (looking up): z points up in the image.
    assert pose_axes([30, 0, 0], 10)[2, 1] < 0


def test_overlay_without_faces_is_the_image():
    img = np.random.default_rng(0).integers(0, 255, (50, 60, 3), dtype=np.uint8)
    np.testing.assert_array_equal(draw_overlay(img, []), img[..., ::-1])


def test_overlay_points_and_axes_use_the_shared_scheme():
    """The same colours as landmark_unify render: one point per group lands in its group's colour."""
    from landmark_unify.core.layouts import get_layout
    from landmark_unify.report.colors import AXIS_COLOURS, GROUP_COLOURS
    from pfpld_train.inference.predict import Face

    lay = get_layout("wflw98")
    pts = np.full((98, 2), 5.0)
    for g, x in (("contour", 10), ("nose", 30), ("eye", 50), ("lip", 70)):
        pts[lay.group_indices(g)] = (x, 20)
    img = np.zeros((100, 120, 3), np.uint8)
    face = Face(np.array([0, 0, 119, 99.0]), 0.9, pts, None, np.zeros(3))
    out = draw_overlay(img, [face], legend=False)
    assert out.shape == (100, 120, 3)
    for g, x in (("contour", 10), ("nose", 30), ("eye", 50), ("lip", 70)):
        assert tuple(out[20, x]) == GROUP_COLOURS[g], g
    face.pose = np.zeros(3)
    out = draw_overlay(img, [face], legend=False)
    assert np.all(out == AXIS_COLOURS[0], axis=-1).any()  # x axis, from the nose tip


@pytest.mark.parametrize("bad", [np.zeros((1, 3)), np.array([[10.0, 10.0, 5.0, 20.0]])])
def test_bad_boxes(bad):
    from landmark_unify.errors import LandmarkUnifyError

    with pytest.raises(LandmarkUnifyError, match="x_max|M, 4"):
        predict_image(lambda c: (np.zeros((len(c), 98, 2)), None), np.zeros((10, 10, 3), np.uint8), boxes=bad)


def test_pose_label_is_placed_clear_of_the_axes():
    """The angles' label goes above the box unless an axis crosses it there, then below, and so on."""
    from pfpld_train.inference.predict import label_position

    box, size, hw = (100, 100, 200, 220), (90, 14), (400, 400)
    assert label_position(size, box, [((150, 160), (180, 190))], hw) == (100, 82)  # above the box
    up = [((150, 160), (150, 40))]  # the y axis of a face looking up runs through the place above the box
    x, y = label_position(size, box, up, hw)
    assert (x, y) == (100, 224)  # below the box
    x, y = label_position(size, (100, 100, 200, 390), up, hw)  # no room below: the nearest place inside
    assert (x, y) == (100, 386) and y + size[1] <= hw[0]
    corner = label_position(size, (0, 0, 60, 60), [], hw)
    assert corner[0] >= 0 and corner[1] >= 0


def test_overlay_label_is_not_crossed_by_the_y_axis():
    from landmark_unify.core.layouts import get_layout
    from pfpld_train.inference.predict import Face

    lay = get_layout("wflw98")
    pts = np.full((98, 2), 150.0)
    pts[:, 1] = 160.0  # every point at the nose tip, where the axes start
    pts[lay.index("contour_00")] = (50, 160)
    pts[lay.index("contour_32")] = (250, 160)  # the face's width sets the axes' length: y reaches y = 73
    face = Face(np.array([100, 100, 200, 220.0]), 0.9, pts, np.array([-30.0, 0.0, 0.0]), np.zeros(3))
    out = draw_overlay(np.zeros((400, 400, 3), np.uint8), [face], legend=False)
    text = np.argwhere(np.all(out >= 245, axis=-1))  # the white letters (the axes' halo is darker)
    assert text.size and text[:, 0].min() > 220  # written below the box, clear of the y axis
def test_predict_names_a_truncated_image_and_stops_under_raise(shared_data, tmp_path, capsys):
    """A truncated JPEG was predicted on with exit 0 (only libjpeg's stderr line said so): now the image reader
    refuses it; --on-error raise (default) exits 1 naming it before anything is written, skip leaves it out and
    names it in the summary."""
    torch.manual_seed(0)
    ckpt = save_checkpoint({"model": PFPLD().state_dict()}, tmp_path / "m.pt")
    good = shared_data / "upstream_pfpld" / "test.jpg"
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:20000])
    out = tmp_path / "out"
    args = ["predict", str(ckpt), str(good), str(cut), "-o", str(out), "--box", "330,100,520,380"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{cut}: truncated JPEG" in err and "Traceback" not in err
    assert not out.exists()
    assert main([*args, "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert "1 unreadable image(s) skipped" in captured.err and f"{cut}: truncated JPEG" in captured.err
    res = json.loads((out / "predictions.json").read_text())
    assert [r["image"] for r in res] == [str(good)]
