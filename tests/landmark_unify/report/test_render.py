"""Pictures: landmarks land on the right pixel, crops map points exactly, the render command works."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import landmark_unify as lu
from landmark_unify.ops.build import build_manifest
from landmark_unify.report.render import (
    GROUP_COLOURS,
    crop_box,
    crop_tile,
    draw_landmarks,
    draw_pose_axes,
    render_face,
    select_rows,
    to_tile,
)


@pytest.fixture(scope="module")
def wflw(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "wflw.parquet"
    return build_manifest([f"wflw={shared_data / 'WFLW'}"], out, progress=False).out


def test_a_drawn_landmark_lands_on_its_pixel():
    img = np.zeros((40, 60, 3), np.uint8)
    pts = np.full((98, 2), np.nan)
    pts[54] = (10.4, 20.6)  # nose -> pixel (10, 21)
    pts[96] = (30.0, 5.0)  # pupil, marked invalid below
    valid = np.zeros(98, bool)
    valid[54] = True
    draw_landmarks(img, pts, valid, radius=0)
    assert tuple(img[21, 10]) == GROUP_COLOURS["nose"]
    assert np.count_nonzero(img.any(-1)) == 1  # nothing else, the invalid pupil neither
    valid[96] = True
    draw_landmarks(img, pts, valid, radius=0)
    assert tuple(img[5, 30]) == GROUP_COLOURS["pupil"]


@pytest.mark.parametrize("size_factor", [1, 3])
def test_crop_maps_points_onto_the_image_content(size_factor):
    img = np.zeros((200, 300, 3), np.uint8)
    pts = np.full((98, 2), np.nan)
    pts[60:76] = np.stack([np.linspace(100, 180, 16), np.full(16, 90.0)], 1)
    pts[54] = (140.0, 120.0)
    valid = np.isfinite(pts).all(1)
    img[120, 140] = 255  # the nose tip's pixel
    x0, y0, side = crop_box(pts, valid, [0, 0, 1, 1])
    tile = crop_tile(img, x0, y0, side, side * size_factor)
    tp = to_tile(pts[54], x0, y0, side, side * size_factor)
    peak = np.unravel_index(np.argmax(tile[..., 0]), tile.shape[:2])
    assert np.allclose(peak[::-1], tp, atol=0.5 * size_factor)
    if size_factor == 1:
        assert tile[int(tp[1]), int(tp[0]), 0] == 255


def test_pose_axes_point_the_right_way():
    img = np.zeros((100, 100, 3), np.uint8)
    draw_pose_axes(img, np.array([50.0, 50.0]), [0.0, 60.0, 0.0], 40)
    # positive yaw turns the face toward image-left (Pose_Para convention): the z axis points left
    from landmark_unify.report.colors import AXIS_COLOURS

    z = np.argwhere(np.all(img == AXIS_COLOURS[2], axis=-1))
    assert z[:, 1].min() < 25 and z[:, 1].max() <= 52
    img[:] = 0
    draw_pose_axes(img, np.array([50.0, 50.0]), [np.nan, 0, 0], 40)
    assert not img.any()


def test_render_command_on_real_faces(wflw, tmp_path):
    from landmark_unify.cli import main

    out = tmp_path / "sheet.png"
    df = lu.read_manifest(wflw)
    have = [p for p, f in zip(df["image_path"], lu.image_paths(df)) if f.exists()][:4]
    where = f"image_path in {have!r}"
    assert main(["render", str(wflw), "-o", str(out), "--where", where, "--n", "4", "--size", "160", "--cols", "2"]) == 0
    sheet = cv2.imread(str(out))
    assert sheet.shape[1] == 2 + 2 * 162 and sheet.shape[0] > 2 + 2 * 162  # the legend is stacked under the tiles
    band = sheet[2 + 2 * 162:]
    for colour in GROUP_COLOURS.values():  # every group present in the layout has its swatch (no ears in WFLW)
        if colour != GROUP_COLOURS["ear"]:
            assert np.all(band == colour, axis=-1).any(), colour
    df = select_rows(lu.read_manifest(wflw), where, 4)
    row = df.iloc[0]
    x0, y0, side = crop_box(row["landmarks"], row["valid"], row["bbox"])
    tp = to_tile(row["landmarks"], x0, y0, side, 160)
    x, y = np.floor(tp[96] + 0.5).astype(int)
    assert tuple(sheet[2 + y, 2 + x]) == GROUP_COLOURS["pupil"]  # pupils are drawn last
    assert lu.image_paths(df)[0].exists()  # a real photo under the points
    assert main(["render", str(wflw), "-o", str(out), "--where", "nope ==="]) == 1


def test_a_face_without_its_image_still_shows_its_points(shared_data):
    pts = np.full((98, 2), np.nan)
    pts[51:60] = np.stack([np.linspace(50, 70, 9), np.linspace(40, 60, 9)], 1)
    valid = np.isfinite(pts).all(1)
    tile = render_face(None, pts, valid, [50, 40, 70, 60], [0.0, 0.0, 0.0], size=96, caption="x")
    assert (np.all(tile == GROUP_COLOURS["nose"], axis=-1)).sum() > 5


def test_the_crop_holds_the_face_box_when_the_jaw_is_invalid(shared_data, tmp_path):
    """A 300W face under strict has no valid contour point; its box (the extent of all 68 source points)
    still decides the crop, so the chin is in the tile."""
    out = tmp_path / "300w.parquet"
    build_manifest([f"ibug={shared_data / '300W/menpo'}"], out, progress=False)
    row = lu.read_manifest(out).iloc[0]
    assert not row["valid"][:33].any()
    x0, y0, side = crop_box(row["landmarks"], row["valid"], row["bbox"])
    lo, hi = row["bbox"][:2], row["bbox"][2:]
    assert x0 <= lo[0] and y0 <= lo[1] and x0 + side >= hi[0] and y0 + side >= hi[1]
    assert crop_box(np.full((98, 2), np.nan), np.zeros(98, bool), [np.nan] * 4)[2] > 0  # nothing known: no crash


def test_render_counts_faces_without_their_image(wflw, tmp_path, capsys):
    """The shared WFLW lists name many images that are not here: the sheet draws them as grey tiles, and
    the command and the legend say how many."""
    from landmark_unify.cli import main
    from landmark_unify.report.render import render_manifest

    df = lu.read_manifest(wflw).head(12)
    missing = sum(not f.exists() for f in lu.image_paths(df))
    assert 0 < missing < 12
    res = render_manifest(wflw, tmp_path / "a.png", n=12, size=96)
    assert (res.faces, res.missing_images) == (12, missing)
    out, n, miss = res  # a plain tuple too
    assert main(["render", str(wflw), "-o", str(tmp_path / "b.png"), "--n", "12", "--size", "96"]) == 0
    assert f"12 faces; {missing} without an image file (grey tiles)" in capsys.readouterr().out
    with_band = cv2.imread(str(tmp_path / "b.png"))
    assert main(["render", str(wflw), "-o", str(tmp_path / "c.png"), "--n", "12", "--size", "96", "--no-legend"]) == 0
    assert cv2.imread(str(tmp_path / "c.png")).shape[0] < with_band.shape[0]


def test_tile_headers_are_plain_words():
    import pandas as pd

    from landmark_unify.report.render import _caption

    row = pd.Series({"source": "wflw", "yaw": 12.4, "pitch": -3.0, "roll": 1.0, "eye_state": "both_closed"})
    assert _caption(row) == "wflw, both eyes closed\nyaw 12 pitch -3 roll 1"
    row = pd.Series({"source": "lapa", "yaw": np.nan, "pitch": np.nan, "roll": np.nan, "eye_state": "open"})
    assert _caption(row) == "lapa"
