"""Augmentation of the standard crop: an affine perturbation in the 112-pixel output space (rotation,
scale, shift, horizontal flip) plus colour changes (jitter, grayscale, random erasing).

The random numbers of a sample come from a ``numpy.random.Generator`` seeded by ``(seed, epoch, row)``
(see :mod:`pfpld_train.data.dataset`); :func:`geometry` and :func:`colour` draw from it in a fixed order.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from landmark_unify.core.pose import euler_from_matrix, matrix_from_euler

from .crop import CROP_SIZE, resize_matrix

__all__ = ["AugmentConfig", "colour", "geometry", "inplane_rotation", "rotate_pose"]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (probabilities in [0, 1]; angles in degrees; shift as a fraction of 112)."""

    rotation: float = 30.0
    rotation_p: float = 0.6
    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.08
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    grayscale_p: float = 0.1
    erase_p: float = 0.25
    erase_area: tuple[float, float] = (0.02, 0.15)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(rotation_p=0.0, scale=(1.0, 1.0), shift=0.0, flip_p=0.0, jitter_p=0.0, grayscale_p=0.0,
                   erase_p=0.0)




def geometry(rng: np.random.Generator, params: np.ndarray, augment: AugmentConfig) -> tuple[np.ndarray, bool]:
    """``(3, 3)`` affine image -> 112 output pixels for one face with standard crop ``params``
    (``x0, y0, side``), and whether the sample is flipped."""
    a = augment
    base = np.vstack([resize_matrix(params), [0.0, 0.0, 1.0]])
    c = (CROP_SIZE - 1) / 2
    theta = math.radians(rng.uniform(-a.rotation, a.rotation)) if rng.random() < a.rotation_p else 0.0
    s = rng.uniform(*a.scale)
    tx, ty = rng.uniform(-a.shift, a.shift, 2) * CROP_SIZE
    flipped = bool(rng.random() < a.flip_p)
    cos, sin = math.cos(theta) * s, math.sin(theta) * s
    t = np.array([[cos, -sin, c + tx - cos * c + sin * c], [sin, cos, c + ty - sin * c - cos * c], [0, 0, 1]])
    if flipped:
        t = np.array([[-1.0, 0, CROP_SIZE - 1], [0, 1, 0], [0, 0, 1]]) @ t
    return t @ base, flipped


def inplane_rotation(m: np.ndarray, flipped: bool) -> float:
    """The in-plane rotation (degrees, clockwise as displayed, image y down) of an image -> output affine
    ``m`` (3x3) from :func:`geometry`, before its horizontal flip (if ``flipped``)."""
    if flipped:  # geometry() applies the flip last: undo it (the flip is its own inverse)
        m = np.array([[-1.0, 0, CROP_SIZE - 1], [0, 1, 0], [0, 0, 1]]) @ m
    return math.degrees(math.atan2(m[1, 0], m[0, 0]))


def rotate_pose(pose: np.ndarray, degrees: float) -> np.ndarray:
    """Pose label ``(pitch, yaw, roll)`` degrees (Pose_Para convention, docs/guides/pose.md) of a face whose image
    is rotated in-plane by ``degrees`` clockwise as displayed: ``R' = R @ Rz(degrees)``, angles recomputed.
    Unknown (NaN) stays unknown; 0 degrees returns the label unchanged."""
    pose = np.asarray(pose, dtype=np.float64)
    if degrees == 0.0 or not np.isfinite(pose).all():
        return pose.copy()
    a = math.radians(degrees)
    rz = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    return euler_from_matrix(matrix_from_euler(pose) @ rz)[0]


def colour(imgs: np.ndarray, rngs: list, augment: AugmentConfig) -> np.ndarray:
    """Colour jitter, grayscale and random erasing, in place on the uint8 batch (one generator per image).

    Brightness ``b``, contrast ``c`` (around the image's mean grey ``m``) and saturation ``s`` (blend
    with the grey image ``g``) compose to one affine map per image, applied in a single saturating
    OpenCV call: ``out = s*c*b * x + (1 - s)*c*b * g + (1 - c)*b*m``.
    """
    import cv2

    a = augment
    if a.jitter_p <= 0 and a.grayscale_p <= 0 and a.erase_p <= 0:
        return imgs
    for j, r in enumerate(rngs):
        jitter = r.random() < a.jitter_p
        fb, fc, fs = r.uniform(-1, 1, 3) * (a.brightness, a.contrast, a.saturation)
        gray_on = r.random() < a.grayscale_p
        erase_on = r.random() < a.erase_p
        area, aspect, pos, fill = r.uniform(*a.erase_area), r.uniform(0.5, 2.0), r.random(2), r.integers(0, 256, 3)
        img = imgs[j]
        if jitter:
            b, c, s = 1 + fb, 1 + fc, 1 + fs
            g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
            m = float(g.mean())
            g3 = cv2.cvtColor(g, cv2.COLOR_GRAY2RGB)
            cv2.addWeighted(img, s * c * b, g3, (1 - s) * c * b, (1 - c) * b * m, dst=img)
        if gray_on:
            cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB, dst=img)
        if erase_on:
            h = min(max(int(round(math.sqrt(area * aspect) * CROP_SIZE)), 1), CROP_SIZE)
            w = min(max(int(round(math.sqrt(area / aspect) * CROP_SIZE)), 1), CROP_SIZE)
            y0 = int(pos[0] * (CROP_SIZE - h + 1))
            x0 = int(pos[1] * (CROP_SIZE - w + 1))
            img[y0 : y0 + h, x0 : x0 + w] = fill
    return imgs
