"""The export overlay (overlay_caffe.png, overlay_nnie.png): its legend shows the marks as drawn."""
from __future__ import annotations

import cv2
import numpy as np

from landmark_unify.core.layouts import get_layout
from landmark_unify.report.colors import GROUP_COLOURS
from pfpld_train.export.overlay import draw_crops


def test_the_legend_shows_group_coloured_dots_and_rings(tmp_path):
    rng = np.random.default_rng(0)
    crops = np.zeros((2, 112, 112, 3), np.uint8)
    pred = rng.uniform(0.2, 0.8, (2, 98, 2))
    groups = [g for g in get_layout("wflw98").present_groups]
    for truth in (None, pred + 0.01):
        img = cv2.imread(str(draw_crops(crops, pred, tmp_path / "o.png", truth=truth)))
        band = img[2 * 112:]  # under the grid of 2 crops (zoom 2, one row)
        grey = np.all(img == (128, 128, 128), axis=-1).astype(np.uint8)
        assert not cv2.erode(grey, np.ones((3, 3), np.uint8)).any()  # no grey mark that matches nothing drawn
        for g in groups:
            assert np.all(band == GROUP_COLOURS[g], axis=-1).any(), g
        near_lip = np.abs(band.astype(int) - GROUP_COLOURS["lip"]).max(-1) < 90  # antialiased ring pixels too
        rows = np.flatnonzero(near_lip.any(1))
        lines = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
        assert len(lines) == (1 if truth is None else 2)  # prediction dots; and ground-truth rings
