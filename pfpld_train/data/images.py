"""Reading images as RGB arrays (evaluation, prediction and export read faces through this)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from landmark_unify.errors import LandmarkUnifyError

__all__ = ["ImageError", "read_image_rgb"]


class ImageError(LandmarkUnifyError):
    """An image file is missing or cannot be decoded."""


def read_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB; :class:`ImageError` naming the file if it is missing or unreadable."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR) if Path(path).is_file() else None
    if img is None:
        raise ImageError(f"{path}: image not found or not decodable")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
