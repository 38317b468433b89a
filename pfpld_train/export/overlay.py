"""Landmarks drawn on face crops (OpenCV only), to look at what an exported model predicts; colours from
the project's one scheme (:mod:`landmark_unify.report.colors`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from landmark_unify.io import write_png_atomic
from landmark_unify.report.colors import group_legend_items, point_colours, with_legend

__all__ = ["draw_crops"]


def draw_crops(crops_rgb: np.ndarray, landmarks: np.ndarray, path: str | Path, *, truth: np.ndarray | None = None,
               zoom: int = 2, columns: int = 6, legend: bool = True) -> Path:
    """Write a PNG grid of crops with predicted points (filled dots) and optional ground truth (rings),
    both coloured by landmark group (the project's one scheme, :mod:`landmark_unify.report.colors`), with
    a legend band under the grid (``legend=False``: none).

    crops_rgb: ``(N, 112, 112, 3) uint8``; landmarks, truth: ``(N, 98, 2)`` or ``(N, 196)`` in crop units.
    """
    import cv2

    n = len(crops_rgb)
    pred = np.asarray(landmarks, np.float64).reshape(n, -1, 2)
    gt = None if truth is None else np.asarray(truth, np.float64).reshape(n, -1, 2)
    colours = point_colours("wflw98") if pred.shape[1] == 98 else np.full((pred.shape[1], 3), (0, 255, 0), np.uint8)
    tiles = []
    for i in range(n):
        side = crops_rgb.shape[1] * zoom
        tile = cv2.resize(cv2.cvtColor(crops_rgb[i], cv2.COLOR_RGB2BGR), (side, side), interpolation=cv2.INTER_LINEAR)
        for pts, ring in ((gt[i] if gt is not None else None, True), (pred[i], False)):
            if pts is None:
                continue
            for k in np.flatnonzero(np.isfinite(pts).all(1)):
                x, y = pts[k] * side
                cv2.circle(tile, (int(round(x)), int(round(y))), 3 if ring else 2, tuple(int(c) for c in colours[k]),
                           1 if ring else -1, cv2.LINE_AA)
        tiles.append(tile)
    cols = min(columns, n)
    rows = -(-n // cols)
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (rows * cols - n)
    grid = np.concatenate([np.concatenate(tiles[r * cols:(r + 1) * cols], 1) for r in range(rows)], 0)
    if legend:  # the marks as drawn: group-coloured dots (prediction) and rings (ground truth)
        rows = [("prediction:", group_legend_items(kind="dot"))]
        if gt is not None:
            rows.append(("ground truth:", group_legend_items(kind="ring")))
        grid = with_legend(grid, rows)
    return write_png_atomic(grid, path)
