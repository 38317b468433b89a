"""Training data: standard crops, augmentation geometry, flip, seeding, workers, the crop cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pfpld_support import (
    single_thread,  # noqa: F401 (autouse: one torch/OpenCV thread)
    synthetic_manifest,
    write_wflw_manifest,
)

from landmark_unify.core.layouts import get_layout
from landmark_unify.images import read_image
from landmark_unify.manifest import read_manifest
from pfpld_train.cli import main
from pfpld_train.data.arrays import FaceArrays, split_by_image
from pfpld_train.data.augmentation import AugmentConfig
from pfpld_train.data.cache import CacheError, CropCache, build_cache
from pfpld_train.data.crop import crop_image, image_to_crop
from pfpld_train.data.dataset import FaceDataset
from pfpld_train.data.sampler import EpochSampler, make_loader

GEOMETRY_ONLY = AugmentConfig(rotation_p=1.0, jitter_p=0.0, grayscale_p=0.0, erase_p=0.0)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return synthetic_manifest(tmp_path_factory.mktemp("syn"), n_images=6, faces_per_image=2)


@pytest.fixture(scope="module")
def synthetic_cache(synthetic, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache") / "c"
    build_cache(read_manifest(synthetic), folder, workers=1, progress=False)
    return CropCache(folder)


def _faces(path) -> FaceArrays:
    return FaceArrays.from_manifest(read_manifest(path))


def test_unaugmented_sample_is_the_standard_crop(shared_data, tmp_path):
    path = write_wflw_manifest(shared_data, tmp_path / "w.parquet", limit=6)
    faces = _faces(path)
    ds = FaceDataset(faces, AugmentConfig.none())
    batch = ds.__getitems__([(0, i) for i in range(6)])
    assert batch["image"].shape == (6, 112, 112, 3) and str(batch["image"].dtype) == "torch.uint8"
    np.testing.assert_allclose(batch["landmarks"].numpy(), image_to_crop(faces.landmarks, ds.params), atol=1e-5)
    for j in range(6):
        ref = crop_image(read_image(faces.paths[j]), ds.params[j]).astype(int)
        assert np.abs(batch["image"][j].numpy() - ref).mean() < 0.5


def _brightness_at_points(batch, params) -> np.ndarray:
    """Fraction of valid points that sit on a bright pixel of the (augmented) crop."""
    hits = []
    for j in range(batch["image"].shape[0]):
        img = batch["image"][j].numpy().max(-1)
        k = 112 / params[j, 2]
        v = batch["valid"][j].numpy()
        u = batch["landmarks"][j].numpy()[v] * 112 - 0.5 + 0.5 * k
        inside = ((u > 1) & (u < 110)).all(1)
        for x, y in np.round(u[inside]).astype(int):
            hits.append(img[y - 1 : y + 2, x - 1 : x + 2].max() > 120)
    return np.asarray(hits)


@pytest.mark.parametrize("use_cache", [False, True])
def test_augmented_landmarks_follow_the_pixels(synthetic, synthetic_cache, use_cache):
    faces = _faces(synthetic)
    ds = FaceDataset(faces, GEOMETRY_ONLY, cache=synthetic_cache if use_cache else None, seed=7)
    batch = ds.__getitems__([(e, i) for e in range(3) for i in range(len(ds))])
    rows = batch["row"].numpy()
    assert _brightness_at_points(batch, ds.params[rows]).mean() > 0.95
    # The augmentation did something.
    plain = FaceDataset(faces, AugmentConfig.none()).__getitems__([(0, i) for i in range(len(ds))])
    assert not np.allclose(batch["landmarks"][: len(ds)].numpy(), plain["landmarks"].numpy(), equal_nan=True)


def test_flip_mirrors_pixels_points_mask_and_pose(synthetic):
    faces = _faces(synthetic)
    flip_only = AugmentConfig(rotation_p=0, scale=(1, 1), shift=0, flip_p=1.0, jitter_p=0, grayscale_p=0, erase_p=0)
    plain = FaceDataset(faces, AugmentConfig.none()).__getitems__([(0, i) for i in range(4)])
    ds = FaceDataset(faces, flip_only)
    flipped = ds.__getitems__([(0, i) for i in range(4)])
    perm = get_layout("wflw98").flip_indices
    np.testing.assert_array_equal(flipped["image"].numpy(), plain["image"].numpy()[:, :, ::-1])
    np.testing.assert_array_equal(flipped["valid"].numpy(), plain["valid"].numpy()[:, perm])
    side = ds.params[:4, 2].astype(np.float32)[:, None]
    exp_x = 1 - plain["landmarks"].numpy()[:, perm, 0] - 1 / side
    np.testing.assert_allclose(flipped["landmarks"].numpy()[..., 0], exp_x, atol=1e-5)
    np.testing.assert_allclose(flipped["landmarks"].numpy()[..., 1], plain["landmarks"].numpy()[:, perm, 1], atol=1e-5)
    p, f = plain["pose"].numpy(), flipped["pose"].numpy()
    np.testing.assert_allclose(f, p * [1, -1, -1])
    # Invalid points stay NaN after the permutation.
    assert np.isnan(flipped["landmarks"].numpy()[~flipped["valid"].numpy()]).all()


def test_colour_augmentation_changes_pixels_not_geometry(synthetic):
    faces = _faces(synthetic)
    colour = AugmentConfig(rotation_p=0, scale=(1, 1), shift=0, flip_p=0, jitter_p=1.0, grayscale_p=0.5, erase_p=1.0)
    a = FaceDataset(faces, colour, seed=3).__getitems__([(0, i) for i in range(8)])
    b = FaceDataset(faces, AugmentConfig.none()).__getitems__([(0, i) for i in range(8)])
    np.testing.assert_array_equal(a["landmarks"].numpy(), b["landmarks"].numpy())
    assert (a["image"] != b["image"]).any()


def test_seeded_reproducible_and_independent_of_workers(synthetic, synthetic_cache):
    faces = _faces(synthetic)
    ds = FaceDataset(faces, AugmentConfig(), cache=synthetic_cache, seed=11)
    keys = [(2, 5), (0, 1), (2, 5)]
    b = ds.__getitems__(keys)
    assert (b["image"][0] == b["image"][2]).all()
    assert not (b["image"][0] == ds.__getitems__([(3, 5)])["image"][0]).all()  # other epoch, other draw

    def run(workers):
        sampler = EpochSampler(len(ds), seed=5)
        loader = make_loader(ds, 5, sampler, workers=workers)
        out = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            out += [(x["row"].numpy().copy(), x["image"].numpy().copy(), x["landmarks"].numpy().copy()) for x in loader]
        return out

    a, c = run(0), run(2)
    assert len(a) == len(c) == 2 * 3
    for (ra, ia, la), (rc, ic, lc) in zip(a, c):
        np.testing.assert_array_equal(ra, rc)
        np.testing.assert_array_equal(ia, ic)
        np.testing.assert_array_equal(la, lc)
    # Each epoch visits every face once, in a different order.
    e0 = np.concatenate([r for r, _, _ in a[:3]])
    e1 = np.concatenate([r for r, _, _ in a[3:]])
    assert sorted(e0) == sorted(e1) == list(range(len(ds))) and not np.array_equal(e0, e1)


def test_sampler_resumes_mid_epoch():
    s = EpochSampler(10, seed=1)
    s.set_epoch(4)
    full = list(s)
    s.set_epoch(4, start=6)
    assert list(s) == full[6:] and len(s) == 4


def test_split_by_image_keeps_images_whole():
    keys = np.array(["a", "a", "b", "c", "c", "c", "d", "e"])
    tr, va = split_by_image(keys, 0.4, seed=0)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(8))
    assert not set(keys[tr]) & set(keys[va])
    assert len(set(keys[va])) == 2
    with pytest.raises(ValueError, match="fraction"):
        split_by_image(keys, 1.5)


def test_faces_without_valid_points_or_images_are_counted(synthetic, tmp_path):
    df = read_manifest(synthetic)
    faces = FaceArrays.from_manifest(df)
    faces.valid[0] = False
    faces.paths[1] = None
    faces.paths[2] = tmp_path / "missing.jpg"
    ds = FaceDataset(faces, AugmentConfig.none())
    assert ds.dropped == {"no_valid_point": 1, "no_image": 2}
    assert len(ds) == len(df) - 3 and not {0, 1, 2} & set(ds.rows.tolist())


def test_cache_command_and_errors(synthetic, tmp_path, capsys):
    out = tmp_path / "cache"
    assert main(["cache", str(synthetic), "-o", str(out), "--workers", "2", "--quiet"]) == 0
    assert "cached 12 of 12" in capsys.readouterr().out
    info = json.loads((out / "index.json").read_text())
    assert info["count"] == 12 and (out / "crops.u8").stat().st_size == 12 * 176 * 176 * 3
    assert main(["cache", str(synthetic), "-o", str(out), "--quiet"]) == 1  # exists
    assert "already exists" in capsys.readouterr().err
    cache = CropCache(out)
    with pytest.raises(CacheError, match="not in the cache"):
        cache.rows_for(["nope"])
    with open(out / "crops.u8", "r+b") as f:
        f.truncate(100)
    with pytest.raises(CacheError, match="incomplete"):
        CropCache(out)
    with pytest.raises(CacheError, match="not a crop cache"):
        CropCache(tmp_path)


@pytest.mark.parametrize("option, value", [("--enlarge", "nan"), ("--enlarge", "0.5"), ("--size", "8")])
def test_cache_refuses_bad_window_settings(synthetic, tmp_path, capsys, option, value):
    out = tmp_path / "cache"
    with pytest.raises(SystemExit) as got:  # the options' declared ranges
        main(["cache", str(synthetic), "-o", str(out), "--quiet", option, value])
    assert got.value.code == 2 and f"argument {option}" in capsys.readouterr().err and not out.exists()
    with pytest.raises(CacheError, match="enlarge 1 to 4"):  # and the library's own check
        build_cache(read_manifest(synthetic), out, **{option.lstrip("-"): float(value)})
