"""Landmarks drawn on face crops (OpenCV only), to look at what an exported model predicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from landmark_unify.io import write_png_atomic

__all__ = ["draw_crops"]


def draw_crops(crops_rgb: np.ndarray, landmarks: np.ndarray, path: str | Path, *, truth: np.ndarray | None = None,
               zoom: int = 2, columns: int = 6) -> Path:
    """Write a PNG grid of crops with predicted points (green) and optional ground truth (red).

    crops_rgb: ``(N, 112, 112, 3) uint8``; landmarks, truth: ``(N, 98, 2)`` or ``(N, 196)`` in crop units.
    """
    import cv2

    n = len(crops_rgb)
    pred = np.asarray(landmarks, np.float64).reshape(n, -1, 2)
    gt = None if truth is None else np.asarray(truth, np.float64).reshape(n, -1, 2)
    tiles = []
    for i in range(n):
        side = crops_rgb.shape[1] * zoom
        tile = cv2.resize(cv2.cvtColor(crops_rgb[i], cv2.COLOR_RGB2BGR), (side, side), interpolation=cv2.INTER_LINEAR)
        for pts, colour in ((gt[i] if gt is not None else None, (0, 0, 255)), (pred[i], (0, 255, 0))):
            if pts is None:
                continue
            for x, y in pts[np.isfinite(pts).all(1)] * side:
                cv2.circle(tile, (int(round(x)), int(round(y))), 2, colour, -1, cv2.LINE_AA)
        tiles.append(tile)
    cols = min(columns, n)
    rows = -(-n // cols)
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (rows * cols - n)
    grid = np.concatenate([np.concatenate(tiles[r * cols:(r + 1) * cols], 1) for r in range(rows)], 0)
    return write_png_atomic(grid, path)
