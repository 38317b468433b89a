"""Pose labels follow the geometric augmentation, and the crop frames a face the same way whatever points
its source layout left valid (real faces: the 16 AFLW2000-3D files, the 7 300W faces)."""

from __future__ import annotations

import numpy as np
import pytest
from pfpld_support import single_thread  # noqa: F401 (autouse: one torch/OpenCV thread)

import landmark_unify as lu
from landmark_unify.core.pose import euler_from_matrix, matrix_from_euler
from pfpld_train.data.arrays import FaceArrays
from pfpld_train.data.augmentation import AugmentConfig, inplane_rotation, rotate_pose
from pfpld_train.data.crop import CROP_SIZE, complete_points, face_crop_params, standard_crop_params
from pfpld_train.data.dataset import FaceDataset


@pytest.fixture(scope="module")
def aflw16(shared_data):
    from scipy.io import loadmat

    files = sorted((shared_data / "AFLW2000").glob("image*.mat"))
    mats = [loadmat(f) for f in files]
    p68 = np.stack([m["pt3d_68"][:2].T for m in mats]) - 1.0
    pose = np.degrees(np.stack([m["Pose_Para"][0, :3] for m in mats])).astype(np.float32)
    p98, v98 = lu.to_canonical(p68, "ibug68_3d")  # strict: 43 points
    n = len(files)
    faces = FaceArrays(landmarks=p98, valid=v98, pose=pose, weight=np.ones(n, np.float32),
                       paths=[f.with_suffix(".jpg") for f in files], sample_ids=np.array([f.stem for f in files]),
                       image_keys=np.array([f.stem for f in files]))
    bfm = lu.load_face_model(shared_data / "mean3d_68/mean3d_68.npz")  # the model that made these points
    return faces, bfm


def _label_vs_fit(ds, bfm, epochs):
    """Mean |label - estimate_pose(augmented landmarks)| per angle over the faces and epochs."""
    errs = []
    for epoch in range(epochs):
        b = ds.__getitems__([(epoch, i) for i in range(len(ds))])
        pts = b["landmarks"].numpy().astype(np.float64) * CROP_SIZE
        fit = lu.estimate_pose(pts, b["valid"].numpy(), model=bfm)
        errs.append(np.abs((fit - b["pose"].numpy() + 180) % 360 - 180))
    return np.concatenate(errs).mean(0)


def test_rotation_keeps_the_pose_label_true(aflw16):
    """Rotation forced on (up to 30 degrees, flips too): the label still agrees with the pose fitted to the
    augmented landmarks about as well as without augmentation (roll was 11.45 degrees off before)."""
    faces, bfm = aflw16
    plain = _label_vs_fit(FaceDataset(faces, AugmentConfig.none()), bfm, 1)
    rotated = AugmentConfig(rotation=30.0, rotation_p=1.0, flip_p=0.5, jitter_p=0, grayscale_p=0, erase_p=0)
    ds = FaceDataset(faces, rotated)
    aug = _label_vs_fit(ds, bfm, 3)
    assert plain.mean() < 1.3, plain  # 1.14 (pitch 1.45, yaw 1.14, roll 0.82)
    assert aug.mean() < plain.mean() + 0.3 and aug[2] < plain[2] + 0.4, (plain, aug)
    # the rotation did happen and the label changed with it
    b = ds.__getitems__([(0, i) for i in range(len(ds))])
    assert np.abs(b["pose"].numpy()[:, 2] - faces.pose[:, 2] * np.where(_flipped(ds, 0), -1, 1)).mean() > 5


def _flipped(ds, epoch):
    out = []
    for i in range(len(ds)):
        rng = np.random.default_rng([ds.seed, epoch, i])
        out.append(ds._geometry(rng, i)[1])
    return np.array(out)


def test_rotate_pose_composes_with_the_rotation():
    # a frontal face rotated clockwise (as displayed) by 20 degrees gains 20 degrees of roll
    np.testing.assert_allclose(rotate_pose([0.0, 0.0, 5.0], 20.0), [0.0, 0.0, 25.0], atol=1e-9)
    pose = np.array([10.0, 40.0, -15.0])
    back = rotate_pose(rotate_pose(pose, 17.0), -17.0)
    np.testing.assert_allclose(back, pose, atol=1e-9)
    a = np.radians(17.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    np.testing.assert_allclose(rotate_pose(pose, 17.0), euler_from_matrix(matrix_from_euler(pose) @ rz)[0])
    assert np.isnan(rotate_pose([np.nan, np.nan, np.nan], 10.0)).all()
    np.testing.assert_array_equal(rotate_pose(pose, 0.0), pose)


def test_inplane_rotation_is_read_back_from_the_affine():
    from pfpld_train.data.augmentation import geometry

    params = np.array([10, 20, 200])
    cfg = AugmentConfig(rotation=30.0, rotation_p=1.0, flip_p=0.5)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        m, flipped = geometry(rng, params, cfg)
        rng = np.random.default_rng(seed)
        rng.random()  # geometry() draws whether to rotate, then the angle
        theta = np.degrees(np.radians(rng.uniform(-30, 30)))
        assert inplane_rotation(m, flipped) == pytest.approx(theta, abs=1e-9)


def _300w(shared_data):
    files = sorted((shared_data / "300W").rglob("*.pts"))
    pts = []
    for f in files:
        body = f.read_text().split("{")[1].split("}")[0].split()
        pts.append(np.array(body, float).reshape(68, 2) - 1.0)  # .pts is 1-based
    return np.stack(pts)


def test_the_crop_frames_the_same_face_whatever_the_policy(shared_data):
    """A strict 68-point face (43 points, no jaw) gets the crop of the same face with its jaw: before,
    0.72-0.87 of the side and the chin outside on 6 of the 7 faces."""
    p68 = _300w(shared_data)
    assert len(p68) == 7
    s98, sv = lu.to_canonical(p68, "ibug68")
    e98, ev = lu.to_canonical(p68, "ibug68", "extended")
    full = standard_crop_params(p68)  # the extent of all 68 points
    strict, extended = face_crop_params(s98, sv), face_crop_params(e98, ev)
    np.testing.assert_array_equal(extended, full)  # the jaw's odd points are filled between its even ones
    ratio = strict[:, 2] / extended[:, 2]
    assert ((ratio > 0.95) & (ratio < 1.12)).all(), ratio  # 0.97-1.09
    shift = np.abs(strict[:, :2] + strict[:, 2:] / 2 - extended[:, :2] - extended[:, 2:] / 2).max(1) / extended[:, 2]
    assert (shift < 0.08).all(), shift  # 0.004-0.046
    inside = (p68 >= strict[:, None, :2]) & (p68 < strict[:, None, :2] + strict[:, None, 2:])
    assert inside.all()  # chin and every jaw point inside the strict face's crop
    old = standard_crop_params(s98, sv)
    assert (old[:, 2] / extended[:, 2] < 0.9).all()  # what it was


def test_complete_points_keeps_usable_points_and_leaves_full_faces_alone(shared_data):
    p68 = _300w(shared_data)
    s98, sv = lu.to_canonical(p68, "ibug68")
    done, known = complete_points(s98, sv)
    np.testing.assert_array_equal(done[sv], s98[sv].astype(np.float64))
    assert known[:, :33].all() and not known[:, 96:].any()  # contour filled, pupils have no model point
    full = np.concatenate([done[:, :96], np.zeros((7, 2, 2))], 1)
    again, k2 = complete_points(full)
    np.testing.assert_array_equal(again, full)
